//! Docker Hub's push webhook: `push_data.tag` and `repository.repo_name`. Hub sends only
//! pushes, and nothing in the body identifies the delivery.

use serde_json::{Map, Value};

use super::{Push, PushError, Reader};

/// `push_data` without Alibaba's `repository.region` (checked first, see `DETECTION`).
pub(super) fn looks_like(body: &Map<String, Value>) -> bool {
    body.get("push_data").is_some_and(Value::is_object)
}

pub(super) fn parse(r: &Reader, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
    let tag = r.str(body, "push_data.tag")?;
    let repository = r.str(body, "repository.repo_name")?;
    Ok(vec![r.push(Some("docker.io"), repository, tag, None, None)?])
}

#[cfg(test)]
mod tests {
    use super::super::{parse, PayloadFormat, Push};

    const PUSH: &str = include_str!("../../../tests/fixtures/registry/dockerhub.json");
    const OFFICIAL: &str = include_str!("../../../tests/fixtures/registry/dockerhub-official.json");

    #[test]
    fn documented_push() {
        let (format, pushes) = parse(PUSH.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::DockerHub);
        assert_eq!(
            pushes,
            [Push {
                registry: Some("docker.io".into()),
                repository: "svendowideit/testhook".into(),
                tag: "latest".into(),
                digest: None,
                event_id: None,
            }]
        );
        assert_eq!(pushes[0].image().unwrap().repository_key(), "docker.io/svendowideit/testhook");
    }

    #[test]
    fn official_image_and_rancher_minimum() {
        let (_, pushes) = parse(OFFICIAL.as_bytes(), Some(PayloadFormat::DockerHub)).unwrap();
        assert_eq!((pushes[0].repository.as_str(), pushes[0].tag.as_str()), ("library/nginx", "1.27.3"));
        assert_eq!(pushes[0].image().unwrap().repository_key(), "docker.io/library/nginx");
        // Rancher's documented minimum body.
        let minimum = br#"{"push_data":{"tag":"v2"},"repository":{"repo_name":"acme/web"}}"#;
        let (format, pushes) = parse(minimum, None).unwrap();
        assert_eq!((format, pushes[0].tag.as_str()), (PayloadFormat::DockerHub, "v2"));
    }

    #[test]
    fn broken_pushes_say_what_is_missing() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"push_data":{},"repository":{"repo_name":"a/b"}}"#, "push_data.tag is missing"),
            (br#"{"push_data":{"tag":""},"repository":{"repo_name":"a/b"}}"#, "push_data.tag is missing"),
            (br#"{"push_data":{"tag":7},"repository":{"repo_name":"a/b"}}"#, "push_data.tag is a number, not a string"),
            (br#"{"push_data":{"tag":"v1"}}"#, "repository.repo_name is missing"),
            (br#"{"push_data":{"tag":"v1"},"repository":"a/b"}"#, "repository is a string, not an object"),
        ];
        for (body, expected) in cases {
            let e = parse(body, None).unwrap_err().0;
            assert!(e.starts_with("the body is not a Docker Hub push notification: "), "{e}");
            assert!(e.ends_with(expected), "{e}");
        }
        let e = parse(br#"{"push_data":{"tag":"v 1"},"repository":{"repo_name":"a/b"}}"#, None).unwrap_err().0;
        assert!(e.contains("not a valid Docker tag"), "{e}");
        let e = parse(br#"{"push_data":{"tag":"v1"},"repository":{"repo_name":"A/B"}}"#, None).unwrap_err().0;
        assert!(e.contains("not a valid image repository"), "{e}");
    }
}
