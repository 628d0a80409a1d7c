//! Docker Registry v2 (distribution) notifications: an `events` envelope that mixes
//! layer pushes, pulls and manifest pushes. Only a manifest pushed with a tag is a push
//! here; an untagged manifest (a platform image of a multi-arch push) is not.

use serde_json::{Map, Value};

use super::{kind, url_host, Push, PushError, Reader};

pub(super) fn looks_like(body: &Map<String, Value>) -> bool {
    body.get("events").is_some_and(Value::is_array)
}

/// Docker and OCI manifests and indexes; blobs (layers, configs) are not images.
fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type.ends_with("image.index.v1+json")
}

pub(super) fn parse(r: &Reader, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
    let events = match body.get("events") {
        Some(Value::Array(events)) => events,
        None | Some(Value::Null) => return Err(r.error("events", "is missing")),
        Some(other) => return Err(r.error("events", &format!("is {}, not a list of events", kind(other)))),
    };
    let mut pushes = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let r = r.within(format!("events[{i}]."));
        let Value::Object(event) = event else {
            return Err(r.error("", &format!("is {}, not an event object", kind(event))));
        };
        let action = r.opt_str(event, "action")?;
        let tag = r.opt_str(event, "target.tag")?;
        let media_type = r.opt_str(event, "target.mediaType")?;
        let (Some("push"), Some(tag)) = (action, tag) else { continue };
        if media_type.is_some_and(|m| !is_manifest(m)) {
            continue;
        }
        let repository = r.str(event, "target.repository")?;
        // `request.host` is the registry as its clients address it; `target.url` is built
        // from the registry's own configuration, a fallback.
        let registry = match r.opt_str(event, "request.host")? {
            Some(host) => Some(host),
            None => r.opt_str(event, "target.url")?.and_then(url_host),
        };
        let digest = r.opt_str(event, "target.digest")?;
        let id = r.opt_str(event, "id")?;
        pushes.push(r.push(registry, repository, tag, digest, id)?);
    }
    Ok(pushes)
}

#[cfg(test)]
mod tests {
    use super::super::{parse, PayloadFormat, Push};

    const PUSH: &str = include_str!("../../../tests/fixtures/registry/registry-v2.json");
    const MIXED: &str = include_str!("../../../tests/fixtures/registry/registry-v2-mixed.json");
    const PULLS: &str = include_str!("../../../tests/fixtures/registry/registry-v2-no-push.json");

    #[test]
    fn documented_push() {
        let (format, pushes) = parse(PUSH.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::RegistryV2);
        assert_eq!(
            pushes,
            [Push {
                registry: Some("registrycluster.local".into()),
                repository: "library/test".into(),
                tag: "latest".into(),
                digest: Some("sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf".into()),
                event_id: Some("asdf-asdf-asdf-asdf-0".into()),
            }]
        );
        let image = pushes[0].image().unwrap();
        assert_eq!(image.repository_key(), "registrycluster.local/library/test", "library/ is Docker Hub's only");
    }

    #[test]
    fn an_envelope_keeps_only_tagged_manifest_pushes() {
        let (_, pushes) = parse(MIXED.as_bytes(), None).unwrap();
        let got: Vec<(&str, &str, Option<&str>)> =
            pushes.iter().map(|p| (p.repository.as_str(), p.tag.as_str(), p.registry.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("team/app", "v2.1.0", Some("registry.example.com:5000")),
                ("team/app", "v2.1.0-oci", Some("registry.example.com:5000"))
            ]
        );
        assert_eq!(pushes[0].event_id.as_deref(), Some("a1b6e8d2-1c7e-4b7a-9d3e-5f0a2c4e6b81"));
        assert_eq!(parse(PULLS.as_bytes(), None).unwrap(), (PayloadFormat::RegistryV2, vec![]));
        assert_eq!(parse(br#"{"events":[]}"#, None).unwrap(), (PayloadFormat::RegistryV2, vec![]));
    }

    #[test]
    fn the_url_names_the_registry_when_the_request_does_not() {
        let body =
            br#"{"events":[{"id":"e1","action":"push","target":{"mediaType":"application/vnd.oci.image.index.v1+json",
            "repository":"app","tag":"v1","url":"https://reg.example.org:443/v2/app/manifests/sha256:00"}}]}"#;
        let (_, pushes) = parse(body, None).unwrap();
        assert_eq!(pushes[0].registry.as_deref(), Some("reg.example.org:443"));
        let body = br#"{"events":[{"action":"push","target":{"repository":"app","tag":"v1"}}]}"#;
        assert_eq!(parse(body, None).unwrap().1[0].registry, None, "no registry named: the caller decides");
    }

    #[test]
    fn broken_envelopes_name_the_event() {
        let e = parse(br#"{"events":[{"action":"pull"},"x"]}"#, None).unwrap_err().0;
        assert_eq!(
            e,
            "the body is not a Docker Registry v2 push notification: events[1] is a string, not an event object"
        );
        let e = parse(br#"{"events":[{"action":"push","target":{"tag":"v1"}}]}"#, None).unwrap_err().0;
        assert!(e.ends_with("events[0].target.repository is missing"), "{e}");
        let e = parse(br#"{"events":[{"action":"push","target":[]}]}"#, None).unwrap_err().0;
        assert!(e.ends_with("events[0].target is an array, not an object"), "{e}");
        let e = parse(br#"{"events":{}}"#, Some(PayloadFormat::RegistryV2)).unwrap_err().0;
        assert!(e.ends_with("events is an object, not a list of events"), "{e}");
        let e =
            parse(br#"{"events":[{"action":"push","target":{"repository":"a","tag":"v1","digest":"md5:1"}}]}"#, None)
                .unwrap_err()
                .0;
        assert!(e.contains("not a valid digest"), "{e}");
    }
}
