//! Image references, read by Docker's rules (distribution/reference), so a pushed
//! repository can be compared with the one a service runs and a new reference built.

/// Docker's limit on a name (registry and path) and on a tag.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;
/// Docker Hub's canonical registry; `index.docker.io` is its legacy name.
const DOCKER_HUB: &str = "docker.io";

/// A parsed reference: `registry/repository[:tag][@digest]`, normalized (Docker Hub is
/// `docker.io`, its official images `library/x`, the registry lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    tag.len() <= MAX_TAG_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `algorithm:encoded` (OCI digest grammar); sha256 and sha512 must have their hex length.
pub fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else { return false };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|c| !c.is_empty() && c.bytes().all(is_lower_alnum));
    let hex = |len: usize| encoded.len() == len && encoded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    algorithm_ok
        && match algorithm {
            "sha256" => hex(64),
            "sha512" => hex(128),
            _ => {
                encoded.len() >= 32
                    && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
            }
        }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A path component: `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let run = b[i..].iter().take_while(|&&x| !is_lower_alnum(x)).count();
        let sep = &c[i..i + run];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
        i += run;
    }
    true
}

/// A registry host: DNS labels (or a bracketed IPv6 address), then an optional `:port`.
fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')) => (h, Some(p)),
        _ => (r, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
            })
    };
    port_ok && host_ok
}

impl ImageRef {
    /// Reads `[registry/]path[:tag][@digest]`. The first component is a registry if it has
    /// a '.' or ':', is `localhost`, or has upper case (Docker's rule); otherwise Docker Hub.
    pub fn parse(s: &str) -> Option<Self> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) if valid_digest(d) => (r, Some(d.to_owned())),
            Some(_) => return None,
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a registry's port.
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (rest, None),
        };
        if tag.is_some_and(|t| !valid_tag(t)) || name.len() > MAX_NAME_LEN {
            return None;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_ascii_lowercase(), path)
            }
            _ => (DOCKER_HUB.to_owned(), name),
        };
        if !valid_registry(&registry) || !path.split('/').all(valid_component) {
            return None;
        }
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_owned() } else { registry };
        let repository =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_owned() };
        Some(Self { registry, repository, tag: tag.map(str::to_owned), digest })
    }

    /// `registry/repository`, normalized: equal for every spelling of one repository.
    pub fn repository_key(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The reference to deploy: this repository at `tag` (and `digest`, when given), in the
    /// shortest form Docker reads back as the same repository.
    pub fn with_tag(&self, tag: &str, digest: Option<&str>) -> String {
        let name = match (self.registry.as_str(), self.repository.strip_prefix("library/")) {
            (DOCKER_HUB, Some(short)) if !short.contains('/') => short.to_owned(),
            (DOCKER_HUB, _) => self.repository.clone(),
            (registry, _) => format!("{registry}/{}", self.repository),
        };
        match digest {
            Some(d) => format!("{name}:{tag}@{d}"),
            None => format!("{name}:{tag}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf";

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    #[test]
    fn docker_hub_spellings_are_one_repository() {
        for s in
            ["nginx", "library/nginx", "docker.io/library/nginx", "index.docker.io/library/nginx", "docker.io/nginx"]
        {
            assert_eq!(r(s).repository_key(), "docker.io/library/nginx", "{s}");
        }
        assert_eq!(r("acme/web").repository_key(), "docker.io/acme/web");
        assert_ne!(r("acme/nginx").repository_key(), r("nginx").repository_key());
    }

    #[test]
    fn registries_are_told_by_dot_colon_localhost_or_case() {
        let p = r("registry.example.com:5000/team/app:v2");
        assert_eq!(
            (p.registry.as_str(), p.repository.as_str(), p.tag.as_deref()),
            ("registry.example.com:5000", "team/app", Some("v2"))
        );
        assert_eq!(r("localhost/app").registry, "localhost");
        assert_eq!(r("localhost:5000/app").repository, "app");
        assert_eq!(r("Registry.Example.COM/app").registry, "registry.example.com");
        assert_eq!(r("MyHost/app").registry, "myhost", "upper case marks a registry, as in Docker");
        assert_eq!(r("[::1]:5000/app:1").registry, "[::1]:5000");
        // Not a registry: a plain first component is a Docker Hub namespace.
        let p = r("team/app");
        assert_eq!((p.registry.as_str(), p.repository.as_str()), ("docker.io", "team/app"));
    }

    #[test]
    fn tags_and_digests() {
        let p = r("localhost:5000/app");
        assert_eq!((p.tag, p.digest), (None, None), "a port is not a tag");
        let p = r(&format!("ghcr.io/acme/web:1.4.2@{SHA}"));
        assert_eq!((p.tag.as_deref(), p.digest.as_deref()), (Some("1.4.2"), Some(SHA)));
        let p = r(&format!("nginx@{SHA}"));
        assert_eq!((p.repository.as_str(), p.tag, p.digest.as_deref()), ("library/nginx", None, Some(SHA)));
        assert_eq!(r("a/b/c/d:latest").repository, "a/b/c/d");
    }

    #[test]
    fn invalid_references_are_refused() {
        for s in [
            "",
            ":",
            "nginx:",
            ":tag",
            "Nginx",
            "nginx:.bad",
            "nginx:-bad",
            "a//b",
            "/a",
            "a/",
            "a b",
            "nginx@sha256:abc",
            "nginx@",
            "a..b",
            "a--",
            "-a",
            "host:port/app",
            "example.com:/app",
            "é",
            "a:b:c",
            "nginx:a@b",
            &format!("nginx:{}", "t".repeat(129)),
            &format!("example.com/{}", "a".repeat(260)),
        ] {
            assert_eq!(ImageRef::parse(s), None, "{s:?}");
        }
        for s in ["a__b", "a-----b", "a.b_c", "0/1", &format!("nginx:{}", "t".repeat(128))] {
            assert!(ImageRef::parse(s).is_some(), "{s:?}");
        }
    }

    #[test]
    fn with_tag_gives_the_shortest_form_docker_reads_back() {
        assert_eq!(r("docker.io/library/nginx:1").with_tag("2", None), "nginx:2");
        assert_eq!(r("index.docker.io/u/x").with_tag("v2", None), "u/x:v2");
        assert_eq!(
            r("registry.example.com:5000/team/app:v1").with_tag("v2", None),
            "registry.example.com:5000/team/app:v2"
        );
        assert_eq!(r("nginx").with_tag("1", Some(SHA)), format!("nginx:1@{SHA}"));
        assert_eq!(r("ghcr.io/library/x").with_tag("1", None), "ghcr.io/library/x:1", "library/ is Docker Hub's only");
        for s in ["nginx:1", "u/x", "localhost:5000/a/b", "ghcr.io/acme/web"] {
            let p = r(s);
            assert_eq!(r(&p.with_tag("t", Some(SHA))).repository_key(), p.repository_key(), "{s}");
        }
    }

    #[test]
    fn tag_and_digest_grammar() {
        for t in ["latest", "v1.2.3", "_x", "1", "A-b_c.d", &"t".repeat(128)] {
            assert!(valid_tag(t), "{t:?}");
        }
        for t in ["", ".x", "-x", "a b", "a:b", "a/b", "a@b", "é", &"t".repeat(129)] {
            assert!(!valid_tag(t), "{t:?}");
        }
        assert!(valid_digest(SHA));
        assert!(valid_digest(&format!("sha512:{}", "a".repeat(128))));
        assert!(valid_digest("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"));
        for d in ["sha256:abc", "sha256", ":abc", &SHA.to_uppercase(), "sha256:", &format!("SHA256:{}", "a".repeat(64))]
        {
            assert!(!valid_digest(d), "{d:?}");
        }
    }
}
