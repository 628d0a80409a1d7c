//! Registry push notifications: which image repository got which tag.
//!
//! One module per sender, each a pure function from the parsed JSON to pushes. Auto-detection
//! keys on members only one format has, so formats that share members (`target` in ACR and
//! registry v2 events, `push_data` in Docker Hub and Alibaba) are never confused.
//!
//! A recognized event that is not an image push (a pull, a delete, an npm package, a
//! manifest the registry marks untagged) is `Ok` with no push, so the caller answers
//! "skipped" and the sender does not retry. A body that lacks what its format requires,
//! a tag included, is an error.

mod alicloud;
mod azure;
mod dockerhub;
mod github;
mod harbor;
mod native;
mod quay;
#[cfg(test)]
mod tests;
mod v2;

use serde_json::{Map, Value};

use crate::domain::image::{valid_digest, valid_tag, ImageRef};

/// Most pushes read from one body (a registry v2 envelope or a Quay tag list).
const MAX_PUSHES: usize = 1000;
/// Longest excerpt of a sender's input quoted back in an error.
const EXCERPT_CHARS: usize = 40;

/// One tagged image pushed to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The registry host as the payload names it (`registry.example.com:5000`), if it does.
    pub registry: Option<String>,
    /// As the registry sent it (`library/test`, `acme/web`), without the registry.
    pub repository: String,
    pub tag: String,
    pub digest: Option<String>,
    /// The sender's id for this event or delivery, when the body carries one.
    pub event_id: Option<String>,
}

impl Push {
    /// The pushed repository as an image reference (Docker Hub when no registry is named).
    pub fn image(&self) -> Option<ImageRef> {
        match &self.registry {
            Some(r) => ImageRef::parse(&format!("{r}/{}", self.repository)),
            None => ImageRef::parse(&self.repository),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    DockerHub,
    Alicloud,
    Azure,
    RegistryV2,
    Harbor,
    Github,
    Quay,
    Native,
}

impl PayloadFormat {
    pub const ALL: [PayloadFormat; 8] = [
        PayloadFormat::DockerHub,
        PayloadFormat::Alicloud,
        PayloadFormat::Azure,
        PayloadFormat::RegistryV2,
        PayloadFormat::Harbor,
        PayloadFormat::Github,
        PayloadFormat::Quay,
        PayloadFormat::Native,
    ];

    /// A format is detected only if none before it matched: Alibaba's bodies are Docker
    /// Hub's plus a region, and the native shape is the loosest.
    const DETECTION: [PayloadFormat; 8] = [
        PayloadFormat::RegistryV2,
        PayloadFormat::Alicloud,
        PayloadFormat::DockerHub,
        PayloadFormat::Harbor,
        PayloadFormat::Github,
        PayloadFormat::Azure,
        PayloadFormat::Quay,
        PayloadFormat::Native,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::DockerHub => "dockerhub",
            PayloadFormat::Alicloud => "alicloud",
            PayloadFormat::Azure => "azure",
            PayloadFormat::RegistryV2 => "registry",
            PayloadFormat::Harbor => "harbor",
            PayloadFormat::Github => "github",
            PayloadFormat::Quay => "quay",
            PayloadFormat::Native => "native",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The sender's name, for sentences.
    fn label(self) -> &'static str {
        match self {
            PayloadFormat::DockerHub => "Docker Hub",
            PayloadFormat::Alicloud => "Alibaba Cloud Container Registry",
            PayloadFormat::Azure => "Azure Container Registry",
            PayloadFormat::RegistryV2 => "Docker Registry v2",
            PayloadFormat::Harbor => "Harbor",
            PayloadFormat::Github => "GitHub package",
            PayloadFormat::Quay => "Quay",
            PayloadFormat::Native => "hookd native",
        }
    }

    /// The label with its article: "a Harbor", "an Azure Container Registry".
    fn a_label(self) -> String {
        let label = self.label();
        let article = if label.starts_with(['A', 'E', 'I', 'O', 'U']) { "an" } else { "a" };
        format!("{article} {label}")
    }

    fn looks_like(self, body: &Map<String, Value>) -> bool {
        match self {
            PayloadFormat::DockerHub => dockerhub::looks_like(body),
            PayloadFormat::Alicloud => alicloud::looks_like(body),
            PayloadFormat::Azure => azure::looks_like(body),
            PayloadFormat::RegistryV2 => v2::looks_like(body),
            PayloadFormat::Harbor => harbor::looks_like(body),
            PayloadFormat::Github => github::looks_like(body),
            PayloadFormat::Quay => quay::looks_like(body),
            PayloadFormat::Native => native::looks_like(body),
        }
    }

    fn read(self, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
        let r = Reader { format: self, prefix: String::new() };
        match self {
            PayloadFormat::DockerHub => dockerhub::parse(&r, body),
            PayloadFormat::Alicloud => alicloud::parse(&r, body),
            PayloadFormat::Azure => azure::parse(&r, body),
            PayloadFormat::RegistryV2 => v2::parse(&r, body),
            PayloadFormat::Harbor => harbor::parse(&r, body),
            PayloadFormat::Github => github::parse(&r, body),
            PayloadFormat::Quay => quay::parse(&r, body),
            PayloadFormat::Native => native::parse(&r, body),
        }
    }
}

/// Why a body is not a push hookd can act on: a sentence for people, quoting at most a
/// short excerpt of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PushError(pub String);

/// Detects the format unless `format` pins one; returns the format used and every push of
/// a tagged image in the body. A body with no such push (a registry v2 envelope of pulls
/// and layer pushes, a Harbor pull) is `Ok` with an empty `Vec`, for the caller to skip.
pub fn parse(body: &[u8], format: Option<PayloadFormat>) -> Result<(PayloadFormat, Vec<Push>), PushError> {
    let body = body.trim_ascii();
    if body.is_empty() {
        return Err(PushError("the body is empty: a registry push notification is a JSON object".into()));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        PushError(match e.classify() {
            serde_json::error::Category::Eof => "the body is not valid JSON: it ends too early".to_owned(),
            _ => format!("the body is not valid JSON (line {}, column {})", e.line(), e.column()),
        })
    })?;
    let Value::Object(object) = &value else {
        return Err(PushError(format!(
            "the body is JSON {}, not an object: not a registry push notification",
            kind(&value)
        )));
    };
    let detected = PayloadFormat::DETECTION.into_iter().find(|f| f.looks_like(object));
    let Some(format) = format.or(detected) else {
        return Err(PushError(
            "the body is not a push notification hookd recognizes (Docker Hub, Alibaba Cloud, Azure, registry v2, \
             Harbor, GitHub, Quay, or native {\"image\": ...}); set payloadFormat to name its sender"
                .into(),
        ));
    };
    let pushes = format.read(object).map_err(|PushError(mut m)| {
        if let Some(other) = detected.filter(|d| *d != format) {
            m.push_str(&format!(
                " (it looks like {} notification, payloadFormat {:?})",
                other.a_label(),
                other.as_str()
            ));
        }
        PushError(m)
    })?;
    if pushes.len() > MAX_PUSHES {
        return Err(PushError(format!(
            "the notification carries {} pushes; hookd reads at most {MAX_PUSHES}",
            pushes.len()
        )));
    }
    Ok((format, pushes))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` quoted, cut to a few characters, so an error never echoes a whole input.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{:?}…", &s[..at]),
        None => format!("{s:?}"),
    }
}

/// Reads members by dotted path, with errors that name the format and the path.
struct Reader {
    format: PayloadFormat,
    /// Where in the body the values read live (`events[2].`), for messages.
    prefix: String,
}

impl Reader {
    fn within(&self, prefix: String) -> Reader {
        Reader { format: self.format, prefix: format!("{}{prefix}", self.prefix) }
    }

    fn error(&self, path: &str, problem: &str) -> PushError {
        let at = format!("{}{path}", self.prefix);
        PushError(format!(
            "the body is not {} push notification: {} {problem}",
            self.format.a_label(),
            at.trim_end_matches('.')
        ))
    }

    /// The member at `path`; `None` when it (or an object on the way) is absent or null.
    fn opt<'a>(&self, v: &'a Map<String, Value>, path: &str) -> Result<Option<&'a Value>, PushError> {
        let mut object = v;
        let mut end = 0;
        let mut segments = path.split('.').peekable();
        while let Some(segment) = segments.next() {
            end += segment.len() + usize::from(end > 0);
            let value = match object.get(segment) {
                None | Some(Value::Null) => return Ok(None),
                Some(value) => value,
            };
            match value {
                _ if segments.peek().is_none() => return Ok(Some(value)),
                Value::Object(o) => object = o,
                other => return Err(self.error(&path[..end], &format!("is {}, not an object", kind(other)))),
            }
        }
        Ok(None)
    }

    fn opt_str<'a>(&self, v: &'a Map<String, Value>, path: &str) -> Result<Option<&'a str>, PushError> {
        match self.opt(v, path)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
            Some(other) => Err(self.error(path, &format!("is {}, not a string", kind(other)))),
        }
    }

    /// A string that must be there and not empty.
    fn str<'a>(&self, v: &'a Map<String, Value>, path: &str) -> Result<&'a str, PushError> {
        self.opt_str(v, path)?.ok_or_else(|| self.error(path, "is missing"))
    }

    fn object<'a>(&self, v: &'a Map<String, Value>, path: &str) -> Result<&'a Map<String, Value>, PushError> {
        match self.opt(v, path)? {
            None => Err(self.error(path, "is missing")),
            Some(Value::Object(o)) => Ok(o),
            Some(other) => Err(self.error(path, &format!("is {}, not an object", kind(other)))),
        }
    }

    /// Builds a push after checking each part against Docker's grammar, so what reaches a
    /// deploy is a reference Docker reads as meant.
    fn push(
        &self,
        registry: Option<&str>,
        repository: &str,
        tag: &str,
        digest: Option<&str>,
        event_id: Option<&str>,
    ) -> Result<Push, PushError> {
        let sentence = |what: String| PushError(format!("the {} push {what}", self.format.label()));
        if !valid_tag(tag) {
            return Err(sentence(format!("has tag {}, which is not a valid Docker tag", excerpt(tag))));
        }
        if let Some(d) = digest.filter(|d| !valid_digest(d)) {
            return Err(sentence(format!("has digest {}, which is not a valid digest", excerpt(d))));
        }
        let named = match registry {
            Some(r) => format!("{r}/{repository}"),
            None => repository.to_owned(),
        };
        // A registry must parse as the registry, not as the first part of a path.
        let parsed = ImageRef::parse(&named).filter(|p| {
            registry.is_none_or(|r| match r.to_ascii_lowercase().as_str() {
                "index.docker.io" => p.registry == "docker.io",
                r => p.registry == r,
            })
        });
        if parsed.is_none() {
            return Err(sentence(format!(
                "names repository {}, which is not a valid image repository",
                excerpt(&named)
            )));
        }
        Ok(Push {
            registry: registry.map(str::to_owned),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            digest: digest.map(str::to_owned),
            event_id: event_id.map(str::to_owned),
        })
    }
}

/// The host of `https://host[:port]/path`, or of `host[:port]/path`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    Some(host).filter(|h| !h.is_empty())
}
