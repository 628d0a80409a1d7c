//! Harbor's webhook, in its default format (`type`, `event_data`) and its CloudEvents
//! format (`specversion`, `type: harbor.artifact.pushed`, `data`, `id`). Harbor names an
//! untagged artifact's tag by its digest; such an artifact is not a tagged push.

use serde_json::{Map, Value};

use super::{kind, url_host, Push, PushError, Reader};
use crate::domain::image::valid_digest;

/// Push types: Harbor 2 (`PUSH_ARTIFACT`), Harbor 1 (`pushImage`), CloudEvents.
const PUSH_TYPES: [&str; 3] = ["PUSH_ARTIFACT", "pushImage", "harbor.artifact.pushed"];

pub(super) fn looks_like(body: &Map<String, Value>) -> bool {
    let harbor_type = body.get("type").and_then(Value::as_str).is_some_and(|t| t.starts_with("harbor."));
    (body.get("event_data").is_some_and(Value::is_object) && body.contains_key("type"))
        || (body.contains_key("specversion") && harbor_type)
}

pub(super) fn parse(r: &Reader, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
    let cloud_events = body.contains_key("specversion");
    let (data_key, id) = if cloud_events { ("data", r.opt_str(body, "id")?) } else { ("event_data", None) };
    let data = r.object(body, data_key)?;
    if !PUSH_TYPES.contains(&r.str(body, "type")?) {
        return Ok(Vec::new());
    }
    let r = r.within(format!("{data_key}."));
    let repository = match r.opt_str(data, "repository.repo_full_name")? {
        Some(full) => full.to_owned(),
        None => format!("{}/{}", r.str(data, "repository.namespace")?, r.str(data, "repository.name")?),
    };
    let resources = match data.get("resources") {
        Some(Value::Array(resources)) => resources,
        None | Some(Value::Null) => return Err(r.error("resources", "is missing")),
        Some(other) => return Err(r.error("resources", &format!("is {}, not a list", kind(other)))),
    };
    let mut pushes = Vec::new();
    for (i, resource) in resources.iter().enumerate() {
        let r = r.within(format!("resources[{i}]."));
        let Value::Object(resource) = resource else {
            return Err(r.error("", &format!("is {}, not an object", kind(resource))));
        };
        let digest = r.opt_str(resource, "digest")?;
        let Some(tag) = r.opt_str(resource, "tag")?.filter(|t| Some(*t) != digest && !valid_digest(t)) else {
            continue;
        };
        // `hub.harbor.com/project/repo:tag`: the registry is what precedes the repository.
        let registry = match r.opt_str(resource, "resource_url")? {
            Some(url) => url.split_once(&format!("/{repository}")).map_or(url_host(url), |(host, _)| url_host(host)),
            None => None,
        };
        pushes.push(r.push(registry, &repository, tag, digest, id)?);
    }
    Ok(pushes)
}

#[cfg(test)]
mod tests {
    use super::super::{parse, PayloadFormat, Push};

    const PUSH: &str = include_str!("../../../tests/fixtures/registry/harbor.json");
    const CLOUD: &str = include_str!("../../../tests/fixtures/registry/harbor-cloudevents.json");
    const UNTAGGED: &str = include_str!("../../../tests/fixtures/registry/harbor-cloudevents-untagged.json");
    const PULL: &str = include_str!("../../../tests/fixtures/registry/harbor-pull.json");

    #[test]
    fn documented_push() {
        let (format, pushes) = parse(PUSH.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::Harbor);
        assert_eq!(
            pushes,
            [Push {
                registry: Some("hub.harbor.com".into()),
                repository: "test-webhook/debian".into(),
                tag: "latest".into(),
                digest: Some("sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8".into()),
                event_id: None,
            }]
        );
        assert_eq!(pushes[0].image().unwrap().repository_key(), "hub.harbor.com/test-webhook/debian");
    }

    #[test]
    fn cloud_events_carry_an_id() {
        let (format, pushes) = parse(CLOUD.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::Harbor);
        assert_eq!(pushes.len(), 1);
        let p = &pushes[0];
        assert_eq!(
            (p.registry.as_deref(), p.repository.as_str(), p.tag.as_str()),
            (Some("harbor.example.com:8443"), "ci/api", "v3.0.1")
        );
        assert_eq!(p.event_id.as_deref(), Some("66e18103-09c1-41f6-982f-37df223f3eeb"));
    }

    #[test]
    fn untagged_artifacts_and_other_events_are_no_push() {
        assert_eq!(parse(UNTAGGED.as_bytes(), None).unwrap(), (PayloadFormat::Harbor, vec![]));
        assert_eq!(parse(PULL.as_bytes(), None).unwrap(), (PayloadFormat::Harbor, vec![]));
        let mut old: serde_json::Value = serde_json::from_str(PUSH).unwrap();
        old["type"] = "pushImage".into();
        assert_eq!(parse(old.to_string().as_bytes(), None).unwrap().1.len(), 1, "Harbor 1's type");
    }

    #[test]
    fn broken_pushes() {
        let mut body: serde_json::Value = serde_json::from_str(PUSH).unwrap();
        body["event_data"]["resources"] = serde_json::json!("x");
        let e = parse(body.to_string().as_bytes(), None).unwrap_err().0;
        assert_eq!(e, "the body is not a Harbor push notification: event_data.resources is a string, not a list");
        body["event_data"]["resources"] = serde_json::json!([7]);
        let e = parse(body.to_string().as_bytes(), None).unwrap_err().0;
        assert!(e.ends_with("event_data.resources[0] is a number, not an object"), "{e}");
        body["event_data"]["repository"] = serde_json::json!({});
        let e = parse(body.to_string().as_bytes(), None).unwrap_err().0;
        assert!(e.ends_with("event_data.repository.namespace is missing"), "{e}");
        let e = parse(br#"{"type":"PUSH_ARTIFACT","event_data":{"repository":{"repo_full_name":"a/b"}}}"#, None)
            .unwrap_err()
            .0;
        assert!(e.ends_with("event_data.resources is missing"), "{e}");
        let e = parse(br#"{"specversion":"1.0","type":"harbor.artifact.pushed"}"#, None).unwrap_err().0;
        assert!(e.ends_with("Harbor push notification: data is missing"), "{e}");
    }
}
