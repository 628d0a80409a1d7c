//! Quay's "Repository Push" notification: `docker_url` and `updated_tags`, one push per
//! tag. Older Quay sent `updated_tags` as an object of tag to image id.

use serde_json::{Map, Value};

use super::{kind, url_host, Push, PushError, Reader};

pub(super) fn looks_like(body: &Map<String, Value>) -> bool {
    body.contains_key("docker_url") && body.contains_key("updated_tags")
}

pub(super) fn parse(r: &Reader, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
    let repository = r.str(body, "repository")?;
    let docker_url = r.str(body, "docker_url")?;
    // `quay.io/ns/repo`: the registry is what precedes the repository.
    let registry = docker_url
        .strip_suffix(repository)
        .and_then(|h| h.strip_suffix('/'))
        .and_then(url_host)
        .or_else(|| url_host(docker_url))
        .ok_or_else(|| r.error("docker_url", "names no registry"))?;
    let names: Vec<&str> = match body.get("updated_tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .map(|t| t.as_str().ok_or_else(|| r.error("updated_tags", "holds something other than tag names")))
            .collect::<Result<_, _>>()?,
        Some(Value::Object(tags)) => tags.keys().map(String::as_str).collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(other) => return Err(r.error("updated_tags", &format!("is {}, not a list of tags", kind(other)))),
    };
    if names.is_empty() {
        return Err(r.error("updated_tags", "is empty: the push names no tag"));
    }
    names.into_iter().map(|tag| r.push(Some(registry), repository, tag, None, None)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{parse, PayloadFormat};

    const PUSH: &str = include_str!("../../../tests/fixtures/registry/quay.json");
    const LEGACY: &str = include_str!("../../../tests/fixtures/registry/quay-legacy-tags-object.json");

    #[test]
    fn documented_push_gives_one_push_per_tag() {
        let (format, pushes) = parse(PUSH.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::Quay);
        let tags: Vec<&str> = pushes.iter().map(|p| p.tag.as_str()).collect();
        assert_eq!(tags, ["latest", "1.2.3"]);
        for p in &pushes {
            assert_eq!((p.registry.as_deref(), p.repository.as_str()), (Some("quay.io"), "mynamespace/repository"));
            assert_eq!((p.digest.as_deref(), p.event_id.as_deref()), (None, None));
        }
        assert_eq!(pushes[0].image().unwrap().repository_key(), "quay.io/mynamespace/repository");
    }

    #[test]
    fn legacy_tag_object_and_self_hosted_quay() {
        let (_, pushes) = parse(LEGACY.as_bytes(), None).unwrap();
        assert_eq!(pushes.len(), 1);
        assert_eq!((pushes[0].tag.as_str(), pushes[0].repository.as_str()), ("latest", "devtable/ubuntu"));
        let body = br#"{"repository":"team/app","docker_url":"quay.example.com:8443/team/app","updated_tags":["v2"]}"#;
        assert_eq!(parse(body, None).unwrap().1[0].registry.as_deref(), Some("quay.example.com:8443"));
    }

    #[test]
    fn broken_pushes() {
        let e = parse(br#"{"repository":"a/b","docker_url":"quay.io/a/b","updated_tags":[]}"#, None).unwrap_err().0;
        assert!(e.ends_with("updated_tags is empty: the push names no tag"), "{e}");
        let e = parse(br#"{"repository":"a/b","docker_url":"quay.io/a/b","updated_tags":[1]}"#, None).unwrap_err().0;
        assert!(e.contains("other than tag names"), "{e}");
        let e = parse(br#"{"repository":"a/b","docker_url":"quay.io/a/b","updated_tags":"v1"}"#, None).unwrap_err().0;
        assert!(e.contains("is a string, not a list of tags"), "{e}");
        let e = parse(br#"{"docker_url":"quay.io/a/b","updated_tags":["v1"]}"#, None).unwrap_err().0;
        assert!(e.ends_with("Quay push notification: repository is missing"), "{e}");
    }
}
