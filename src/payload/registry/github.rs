//! GitHub's `package` event (GHCR), and the legacy `registry_package` event of GitHub
//! Packages' Docker registry. The delivery id is a header (`X-GitHub-Delivery`), not in
//! the body. A version GitHub lists with an empty tag is untagged: not a tagged push.

use serde_json::{Map, Value};

use super::{url_host, Push, PushError, Reader};
use crate::domain::image::{valid_tag, ImageRef};

pub(super) fn looks_like(body: &Map<String, Value>) -> bool {
    ["package", "registry_package"].iter().any(|k| body.get(*k).is_some_and(Value::is_object))
}

pub(super) fn parse(r: &Reader, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
    let key = if body.contains_key("package") { "package" } else { "registry_package" };
    let package = r.object(body, key)?;
    if !matches!(r.str(body, "action")?, "published" | "updated") {
        return Ok(Vec::new());
    }
    let r = r.within(format!("{key}."));
    let kind = match r.opt_str(package, "package_type")? {
        Some(kind) => Some(kind),
        None => r.opt_str(package, "ecosystem")?,
    };
    if kind.is_some_and(|k| !k.eq_ignore_ascii_case("container") && !k.eq_ignore_ascii_case("docker")) {
        return Ok(Vec::new()); // npm, maven, ...: not an image.
    }
    let version = r.object(package, "package_version")?;
    let r = r.within("package_version.".into());
    let tag = match r.opt(version, "container_metadata.tag")? {
        Some(_) => match r.opt_str(version, "container_metadata.tag.name")? {
            Some(tag) => tag,
            None => return Ok(Vec::new()),
        },
        // Legacy Docker packages name the version by its tag; GHCR's `version` is a digest.
        None => match r.opt_str(version, "version")? {
            Some(v) if valid_tag(v) => v,
            _ => return Err(r.error("container_metadata.tag.name", "is missing")),
        },
    };
    let digest = r.opt_str(version, "container_metadata.tag.digest")?;
    // `ghcr.io/acme/web:1.4.2` names registry and repository exactly, when present.
    let from_url = r
        .opt_str(version, "package_url")?
        .and_then(|url| ImageRef::parse(url.trim_end_matches(':')))
        .filter(|image| image.registry != "docker.io");
    let (registry, repository) = match from_url {
        Some(image) => (image.registry, image.repository),
        None => {
            let parent = Reader { format: r.format, prefix: format!("{key}.") };
            let namespace = match parent.opt_str(package, "namespace")? {
                Some(ns) => ns,
                None => parent.str(package, "owner.login")?,
            };
            let name = parent.str(package, "name")?;
            let registry = parent.opt_str(package, "registry.url")?.and_then(url_host).unwrap_or("ghcr.io");
            // GHCR names are lower case whatever the owner's login looks like.
            (registry.to_ascii_lowercase(), format!("{namespace}/{name}").to_ascii_lowercase())
        }
    };
    Ok(vec![r.push(Some(&registry), &repository, tag, digest, None)?])
}

#[cfg(test)]
mod tests {
    use super::super::{parse, PayloadFormat, Push};

    const PUBLISHED: &str = include_str!("../../../tests/fixtures/registry/github-package.json");
    const UNTAGGED: &str = include_str!("../../../tests/fixtures/registry/github-package-untagged.json");
    const LEGACY: &str = include_str!("../../../tests/fixtures/registry/github-registry-package.json");

    #[test]
    fn documented_package_event() {
        let (format, pushes) = parse(PUBLISHED.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::Github);
        assert_eq!(
            pushes,
            [Push {
                registry: Some("ghcr.io".into()),
                repository: "acme/web".into(),
                tag: "1.4.2".into(),
                digest: Some("sha256:3f1c2b4a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708".into()),
                event_id: None,
            }]
        );
    }

    #[test]
    fn without_a_package_url_the_names_are_used_lower_case() {
        let mut body: serde_json::Value = serde_json::from_str(PUBLISHED).unwrap();
        body["package"]["package_version"].as_object_mut().unwrap().remove("package_url");
        body["package"]["namespace"] = "Acme".into();
        let (_, pushes) = parse(body.to_string().as_bytes(), None).unwrap();
        assert_eq!((pushes[0].registry.as_deref(), pushes[0].repository.as_str()), (Some("ghcr.io"), "acme/web"));
    }

    #[test]
    fn untagged_versions_other_packages_and_actions_are_no_push() {
        assert_eq!(parse(UNTAGGED.as_bytes(), None).unwrap(), (PayloadFormat::Github, vec![]));
        let mut npm: serde_json::Value = serde_json::from_str(PUBLISHED).unwrap();
        npm["package"]["package_type"] = "npm".into();
        assert_eq!(parse(npm.to_string().as_bytes(), None).unwrap().1, vec![]);
        let mut deleted: serde_json::Value = serde_json::from_str(PUBLISHED).unwrap();
        deleted["action"] = "deleted".into();
        assert_eq!(parse(deleted.to_string().as_bytes(), None).unwrap().1, vec![]);
    }

    #[test]
    fn legacy_registry_package_event() {
        let (format, pushes) = parse(LEGACY.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::Github);
        let p = &pushes[0];
        assert_eq!(
            (p.registry.as_deref(), p.repository.as_str(), p.tag.as_str()),
            (Some("docker.pkg.github.com"), "acme/web/web", "1.2.3")
        );
    }

    #[test]
    fn broken_events() {
        let mut body: serde_json::Value = serde_json::from_str(PUBLISHED).unwrap();
        body["package"]["package_version"].as_object_mut().unwrap().remove("container_metadata");
        let e = parse(body.to_string().as_bytes(), None).unwrap_err().0;
        assert_eq!(
            e,
            "the body is not a GitHub package push notification: package.package_version.container_metadata.tag.name is missing"
        );
        let e = parse(br#"{"package":{"package_type":"CONTAINER"}}"#, Some(PayloadFormat::Github)).unwrap_err().0;
        assert!(e.ends_with("notification: action is missing"), "{e}");
        let e = parse(br#"{"action":"published","package":{"package_type":"CONTAINER"}}"#, None).unwrap_err().0;
        assert!(e.ends_with("package.package_version is missing"), "{e}");
    }
}
