//! Azure Container Registry's webhook (Rancher's `azure`): one event per body, like a
//! registry v2 event without the `events` envelope. `request.host` is the registry.

use serde_json::{Map, Value};

use super::{Push, PushError, Reader};

/// A top-level `target` object beside `request` and `action`; registry v2 nests its events
/// under `events` (checked first, see `DETECTION`).
pub(super) fn looks_like(body: &Map<String, Value>) -> bool {
    body.get("target").is_some_and(Value::is_object) && body.contains_key("request") && body.contains_key("action")
}

pub(super) fn parse(r: &Reader, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
    r.object(body, "target")?;
    r.object(body, "request")?;
    // ACR also sends `delete`, `chart_push`, `chart_delete` and quarantine events.
    if r.str(body, "action")? != "push" {
        return Ok(Vec::new());
    }
    let repository = r.str(body, "target.repository")?;
    let tag = r.str(body, "target.tag")?;
    let host = r.str(body, "request.host")?;
    let digest = r.opt_str(body, "target.digest")?;
    let id = r.opt_str(body, "id")?;
    Ok(vec![r.push(Some(host), repository, tag, digest, id)?])
}

#[cfg(test)]
mod tests {
    use super::super::{parse, PayloadFormat, Push};

    const PUSH: &str = include_str!("../../../tests/fixtures/registry/azure.json");
    const CHART: &str = include_str!("../../../tests/fixtures/registry/azure-chart-push.json");

    #[test]
    fn documented_push() {
        let (format, pushes) = parse(PUSH.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::Azure);
        assert_eq!(
            pushes,
            [Push {
                registry: Some("myregistry.azurecr.io".into()),
                repository: "hello-world".into(),
                tag: "v1".into(),
                digest: Some("sha256:1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b".into()),
                event_id: Some("cb8c3971-9adc-488b-9b4f-43cbb4974ff5".into()),
            }]
        );
        assert_eq!(pushes[0].image().unwrap().with_tag("v1", None), "myregistry.azurecr.io/hello-world:v1");
    }

    #[test]
    fn other_actions_are_no_push() {
        assert_eq!(parse(CHART.as_bytes(), None).unwrap(), (PayloadFormat::Azure, vec![]));
        let mut delete: serde_json::Value = serde_json::from_str(PUSH).unwrap();
        delete["action"] = "delete".into();
        assert_eq!(parse(delete.to_string().as_bytes(), None).unwrap().1, vec![]);
    }

    #[test]
    fn broken_pushes() {
        for (path, expected) in [
            ("/target/tag", "target.tag is missing"),
            ("/request/host", "request.host is missing"),
            ("/target/repository", "target.repository is missing"),
        ] {
            let mut body: serde_json::Value = serde_json::from_str(PUSH).unwrap();
            *body.pointer_mut(path).unwrap() = serde_json::Value::Null;
            let e = parse(body.to_string().as_bytes(), Some(PayloadFormat::Azure)).unwrap_err().0;
            assert!(e.starts_with("the body is not an Azure Container Registry push notification: "), "{e}");
            assert!(e.ends_with(expected), "{e}");
        }
        let mut body: serde_json::Value = serde_json::from_str(PUSH).unwrap();
        body["request"]["host"] = "not a host".into();
        assert!(parse(body.to_string().as_bytes(), None).unwrap_err().0.contains("not a valid image repository"));
        // A registry v2 envelope pinned as Azure.
        let v2 = include_str!("../../../tests/fixtures/registry/registry-v2.json");
        let e = parse(v2.as_bytes(), Some(PayloadFormat::Azure)).unwrap_err().0;
        assert!(e.contains("target is missing") && e.contains("Docker Registry v2"), "{e}");
    }
}
