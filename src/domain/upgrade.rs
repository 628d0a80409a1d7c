//! The `serviceUpgrade` driver's configuration and its matching rules: which services a
//! registry push upgrades, and to what.
//!
//! Rancher upgraded every service with the selector's labels to whatever repository was
//! pushed (rancher/rancher#8463). Here a service is upgraded only if it runs the pushed
//! repository (or the receiver pins one), and the pushed tag passes the receiver's policy.

use std::collections::BTreeMap;

use super::{image::ImageRef, ValidationError};

/// Most replicas replaced at once, and the longest pause between batches.
pub const MAX_BATCH_SIZE: u32 = 1000;
pub const MAX_INTERVAL_SECONDS: u32 = 3600;

/// Which pushed tags a receiver acts on.
#[derive(Debug, Clone)]
pub enum TagPolicy {
    /// The pushed tag is exactly `tag` (Rancher's rule).
    Exact,
    /// `tag` is a pattern with `*` and `?`.
    Glob(regex::Regex),
    /// `tag` is a regular expression the whole pushed tag must match.
    Regex(regex::Regex),
    /// The pushed tag is a semantic version above the service's, within `bound`; `tag`,
    /// when set, is a requirement it must meet too (`>=1.4, <2`).
    Semver { bound: SemverBound, requirement: Option<semver::VersionReq> },
}

/// How far a semver upgrade may go from the running version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemverBound {
    Major,
    Minor,
    Patch,
}

impl SemverBound {
    pub fn as_str(self) -> &'static str {
        match self {
            SemverBound::Major => "major",
            SemverBound::Minor => "minor",
            SemverBound::Patch => "patch",
        }
    }
}

impl TagPolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            TagPolicy::Exact => "exact",
            TagPolicy::Glob(_) => "glob",
            TagPolicy::Regex(_) => "regex",
            TagPolicy::Semver { .. } => "semver",
        }
    }

    pub fn bound(&self) -> Option<SemverBound> {
        match self {
            TagPolicy::Semver { bound, .. } => Some(*bound),
            _ => None,
        }
    }

    /// Builds the policy `kind` for `tag`; `bound` applies to `semver` only.
    pub fn new(kind: &str, tag: &str, bound: Option<&str>) -> Result<Self, ValidationError> {
        let field = "serviceUpgradeConfig.tag";
        let anchored = |pattern: String| {
            regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| ValidationError::new(field, format!("tag is not a valid pattern: {e}")))
        };
        let needs_tag = |policy: &str| {
            ValidationError::new(field, format!("tag is required with tagPolicy {policy:?}: the tag to act on"))
        };
        match kind {
            "exact" if tag.is_empty() => Err(needs_tag("exact")),
            "exact" if !super::image::valid_tag(tag) => Err(ValidationError::new(
                field,
                format!("Invalid tag {tag:?}: a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"),
            )),
            "exact" => Ok(TagPolicy::Exact),
            "glob" if tag.is_empty() => Err(needs_tag("glob")),
            "glob" => {
                let pattern = regex::escape(tag).replace(r"\*", ".*").replace(r"\?", ".");
                Ok(TagPolicy::Glob(anchored(pattern)?))
            }
            "regex" if tag.is_empty() => Err(needs_tag("regex")),
            "regex" => {
                // On its own first: `a)|(.*` compiles only inside the anchoring group, where
                // it would match anything.
                regex::Regex::new(tag)
                    .map_err(|e| ValidationError::new(field, format!("tag is not a valid pattern: {e}")))?;
                Ok(TagPolicy::Regex(anchored(tag.to_owned())?))
            }
            "semver" => {
                let bound = match bound.unwrap_or("minor") {
                    "major" => SemverBound::Major,
                    "minor" => SemverBound::Minor,
                    "patch" => SemverBound::Patch,
                    other => {
                        return Err(ValidationError::new(
                            "serviceUpgradeConfig.semverBound",
                            format!("semverBound must be \"major\", \"minor\" or \"patch\", not {other:?}"),
                        ))
                    }
                };
                let requirement = match tag {
                    "" => None,
                    req => Some(semver::VersionReq::parse(req).map_err(|e| {
                        ValidationError::new(field, format!("with tagPolicy \"semver\", tag is a version requirement such as \">=1.4, <2\": {e}"))
                    })?),
                };
                Ok(TagPolicy::Semver { bound, requirement })
            }
            other => Err(ValidationError::new(
                "serviceUpgradeConfig.tagPolicy",
                format!("tagPolicy must be \"exact\", \"glob\", \"regex\" or \"semver\", not {other:?}"),
            )),
        }
    }
}

/// A validated `serviceUpgradeConfig`.
#[derive(Debug, Clone)]
pub struct ServiceUpgradeConfig {
    /// Labels a service must all carry (AND over the pairs); never empty.
    pub selector: BTreeMap<String, String>,
    pub tag: String,
    pub tag_policy: TagPolicy,
    /// Only this repository's pushes act; `None`: a service is upgraded only by pushes of
    /// the repository it runs.
    pub repository: Option<String>,
    /// A pinned payload format (`dockerhub`, `registry`, ...); `None`: detected.
    pub payload_format: Option<String>,
    pub batch_size: u32,
    pub interval_seconds: u32,
    pub start_first: bool,
}

impl PartialEq for ServiceUpgradeConfig {
    fn eq(&self, other: &Self) -> bool {
        (&self.selector, &self.tag, self.tag_policy.as_str(), self.tag_policy.bound(), &self.repository)
            == (&other.selector, &other.tag, other.tag_policy.as_str(), other.tag_policy.bound(), &other.repository)
            && (&self.payload_format, self.batch_size, self.interval_seconds, self.start_first)
                == (&other.payload_format, other.batch_size, other.interval_seconds, other.start_first)
    }
}

impl Eq for ServiceUpgradeConfig {}

/// Why a pushed image does not upgrade a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Selector,
    Repository(String),
    Tag(String),
    /// The service already runs this very image.
    Current,
}

impl ServiceUpgradeConfig {
    pub fn validate(self) -> Result<Self, ValidationError> {
        if self.selector.is_empty() {
            return Err(ValidationError::new(
                "serviceUpgradeConfig.serviceSelector",
                "serviceSelector is required: the labels (all of them) a service must carry to be upgraded",
            ));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(ValidationError::new(
                "serviceUpgradeConfig.batchSize",
                format!("Invalid batchSize {}: between 1 and {MAX_BATCH_SIZE} replicas at a time", self.batch_size),
            ));
        }
        if !(1..=MAX_INTERVAL_SECONDS).contains(&self.interval_seconds) {
            return Err(ValidationError::new(
                "serviceUpgradeConfig.intervalMillis",
                format!(
                    "Invalid intervalMillis {}: seconds between batches (Rancher's name, Rancher's meaning), 1 to {MAX_INTERVAL_SECONDS}",
                    self.interval_seconds
                ),
            ));
        }
        if let Some(repository) = &self.repository {
            if ImageRef::parse(repository).is_none_or(|r| r.tag.is_some() || r.digest.is_some()) {
                return Err(ValidationError::new(
                    "serviceUpgradeConfig.repository",
                    format!("repository {repository:?} is not an image repository (no tag or digest)"),
                ));
            }
        }
        Ok(self)
    }

    pub fn describe(&self) -> String {
        let labels: Vec<String> = self.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "Upgrade services labelled {} on a push of tag {} ({})",
            labels.join(","),
            self.tag,
            self.tag_policy.as_str()
        )
    }

    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The image `service_image` (what the service runs) becomes on a push of `pushed:tag`
    /// with `digest`, or why it does not.
    /// [`Self::target`] for a service running several images (a workload's containers): the
    /// image running the pushed repository is the one upgraded. Returns the new image and the
    /// one it replaces; otherwise the first image's mismatch, or the matching one's.
    pub fn target_any<'a>(
        &self,
        labels: &BTreeMap<String, String>,
        images: impl IntoIterator<Item = &'a str>,
        pushed: &ImageRef,
        tag: &str,
        digest: Option<&str>,
    ) -> Result<(String, &'a str), Mismatch> {
        let mut first_miss = None;
        for current in images {
            match self.target(labels, current, pushed, tag, digest) {
                Ok(image) => return Ok((image, current)),
                Err(Mismatch::Repository(why)) => {
                    first_miss.get_or_insert(Mismatch::Repository(why));
                }
                Err(other) => return Err(other),
            }
        }
        Err(first_miss.unwrap_or_else(|| Mismatch::Repository("the service runs no image".into())))
    }

    pub fn target(
        &self,
        labels: &BTreeMap<String, String>,
        service_image: &str,
        pushed: &ImageRef,
        tag: &str,
        digest: Option<&str>,
    ) -> Result<String, Mismatch> {
        if !self.selects(labels) {
            return Err(Mismatch::Selector);
        }
        let running = ImageRef::parse(service_image)
            .ok_or_else(|| Mismatch::Repository(format!("the service's image {service_image:?} is not readable")))?;
        let wanted = match &self.repository {
            Some(pin) => ImageRef::parse(pin).map(|p| p.repository_key()).unwrap_or_default(),
            None => running.repository_key(),
        };
        if pushed.repository_key() != wanted || running.repository_key() != wanted {
            return Err(Mismatch::Repository(format!(
                "the push is of {}, the service runs {}",
                pushed.repository_key(),
                running.repository_key()
            )));
        }
        self.tag_passes(tag, running.tag.as_deref()).map_err(Mismatch::Tag)?;
        let same_tag = running.tag.as_deref() == Some(tag);
        let same_digest = digest.is_some() && running.digest.as_deref() == digest;
        if same_tag && (digest.is_none() || same_digest) {
            return Err(Mismatch::Current);
        }
        Ok(running.with_tag(tag, digest))
    }

    /// Whether a pushed tag passes the policy; `current`: the tag the service runs.
    pub fn tag_passes(&self, pushed: &str, current: Option<&str>) -> Result<(), String> {
        match &self.tag_policy {
            TagPolicy::Exact if pushed == self.tag => Ok(()),
            TagPolicy::Exact => Err(format!("the pushed tag {pushed:?} is not {:?}", self.tag)),
            TagPolicy::Glob(re) | TagPolicy::Regex(re) if re.is_match(pushed) => Ok(()),
            TagPolicy::Glob(_) | TagPolicy::Regex(_) => {
                Err(format!("the pushed tag {pushed:?} does not match {:?} ({})", self.tag, self.tag_policy.as_str()))
            }
            TagPolicy::Semver { bound, requirement } => semver_passes(pushed, current, *bound, requirement.as_ref()),
        }
    }
}

/// A tag as a version: `v1.2.3`, and image-style `1.2` or `1` (read as `1.2.0`, `1.0.0`).
fn version(tag: &str) -> Option<semver::Version> {
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let (core, rest) = tag.find(['-', '+']).map_or((tag, ""), |i| tag.split_at(i));
    let padding = 2usize.checked_sub(core.matches('.').count())?;
    semver::Version::parse(&format!("{core}{}{rest}", ".0".repeat(padding))).ok()
}

fn semver_passes(
    pushed: &str,
    current: Option<&str>,
    bound: SemverBound,
    requirement: Option<&semver::VersionReq>,
) -> Result<(), String> {
    let new = version(pushed).ok_or_else(|| format!("the pushed tag {pushed:?} is not a semantic version"))?;
    if let Some(req) = requirement.filter(|r| !r.matches(&new)) {
        return Err(format!("the pushed version {new} does not meet {req}"));
    }
    let Some(old) = current.and_then(version) else {
        return Err(format!("the service's tag {:?} is not a semantic version to compare with", current.unwrap_or("")));
    };
    if new <= old {
        return Err(format!("the pushed version {new} is not newer than the running {old}"));
    }
    let within = match bound {
        SemverBound::Major => true,
        SemverBound::Minor => new.major == old.major,
        SemverBound::Patch => (new.major, new.minor) == (old.major, old.minor),
    };
    if within {
        Ok(())
    } else {
        Err(format!("{old} to {new} is beyond a {} upgrade", bound.as_str()))
    }
}
