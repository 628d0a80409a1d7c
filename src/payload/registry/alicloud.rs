//! Alibaba Cloud Container Registry's trigger (Rancher's `alicloud`): Docker Hub's
//! `push_data`, with `repository.{region, namespace, name, repo_full_name}`. The image is
//! `registry.<region>.aliyuncs.com/<namespace>/<name>`, as Rancher built it by default.

use serde_json::{Map, Value};

use super::{excerpt, Push, PushError, Reader};

/// `push_data` with a `repository.region`: Docker Hub has no region.
pub(super) fn looks_like(body: &Map<String, Value>) -> bool {
    body.get("push_data").is_some_and(Value::is_object)
        && body.get("repository").and_then(|r| r.get("region")).is_some_and(Value::is_string)
}

pub(super) fn parse(r: &Reader, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
    let tag = r.str(body, "push_data.tag")?;
    let region = r.str(body, "repository.region")?;
    // A region is a DNS label (`cn-hangzhou`): it becomes part of the registry's host name.
    if !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(r.error("repository.region", &format!("is {}, not a region name", excerpt(region))));
    }
    let repository = match r.opt_str(body, "repository.repo_full_name")? {
        Some(full) => full.to_owned(),
        None => format!("{}/{}", r.str(body, "repository.namespace")?, r.str(body, "repository.name")?),
    };
    let digest = r.opt_str(body, "push_data.digest")?;
    let registry = format!("registry.{region}.aliyuncs.com");
    Ok(vec![r.push(Some(&registry), &repository, tag, digest, None)?])
}

#[cfg(test)]
mod tests {
    use super::super::{parse, PayloadFormat, Push};

    const PUSH: &str = include_str!("../../../tests/fixtures/registry/alicloud.json");

    #[test]
    fn documented_push() {
        let (format, pushes) = parse(PUSH.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::Alicloud);
        assert_eq!(
            pushes,
            [Push {
                registry: Some("registry.cn-hangzhou.aliyuncs.com".into()),
                repository: "acme/web".into(),
                tag: "release-v1.4.2".into(),
                digest: Some("sha256:457f4aa83fc9a6663ab9d1b0a6e2dce25a12a943ed5bf2c1747c58d48bbb4917".into()),
                event_id: None,
            }]
        );
        assert_eq!(pushes[0].image().unwrap().repository_key(), "registry.cn-hangzhou.aliyuncs.com/acme/web");
    }

    #[test]
    fn namespace_and_name_when_there_is_no_full_name() {
        let body =
            br#"{"push_data":{"tag":"v1"},"repository":{"region":"eu-central-1","namespace":"ns","name":"app"}}"#;
        let (_, pushes) = parse(body, None).unwrap();
        assert_eq!(pushes[0].repository, "ns/app");
        assert_eq!(pushes[0].registry.as_deref(), Some("registry.eu-central-1.aliyuncs.com"));
    }

    #[test]
    fn broken_pushes_and_a_docker_hub_body_pinned_as_alicloud() {
        let e = parse(br#"{"push_data":{"tag":"v1"},"repository":{"region":"cn-hangzhou"}}"#, None).unwrap_err().0;
        assert!(e.ends_with("repository.namespace is missing"), "{e}");
        let e = parse(br#"{"push_data":{},"repository":{"region":"cn-hangzhou","repo_full_name":"a/b"}}"#, None)
            .unwrap_err()
            .0;
        assert!(e.ends_with("push_data.tag is missing"), "{e}");
        let e =
            parse(br#"{"push_data":{"tag":"v1"},"repository":{"region":"evil.com/x#","repo_full_name":"a/b"}}"#, None)
                .unwrap_err()
                .0;
        assert!(e.contains("not a region name"), "{e}");
        let hub = include_str!("../../../tests/fixtures/registry/dockerhub.json");
        let e = parse(hub.as_bytes(), Some(PayloadFormat::Alicloud)).unwrap_err().0;
        assert!(
            e.starts_with(
                "the body is not an Alibaba Cloud Container Registry push notification: repository.region is missing"
            ),
            "{e}"
        );
        assert!(e.contains("it looks like a Docker Hub notification"), "{e}");
    }
}
