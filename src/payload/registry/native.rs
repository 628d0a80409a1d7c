//! hookd's own shape, for CI scripts: `{"image": "repo[:tag]", "tag": "...", "digest":
//! "...", "id": "..."}`; the tag may be in `image` or beside it. Keel's native trigger
//! (`name` for `image`) is read too.

use serde_json::{Map, Value};

use super::{excerpt, Push, PushError, Reader};
use crate::domain::image::ImageRef;

pub(super) fn looks_like(body: &Map<String, Value>) -> bool {
    let string = |k: &str| body.get(k).is_some_and(Value::is_string);
    string("image") || (string("name") && string("tag") && !body.contains_key("repository"))
}

pub(super) fn parse(r: &Reader, body: &Map<String, Value>) -> Result<Vec<Push>, PushError> {
    let (field, image) = match r.opt_str(body, "image")? {
        Some(image) => ("image", image),
        None => match r.opt_str(body, "name")? {
            Some(name) => ("name", name),
            None => return Err(r.error("image", "is missing")),
        },
    };
    let Some(parsed) = ImageRef::parse(image) else {
        return Err(r.error(field, &format!("is {}, not an image reference", excerpt(image))));
    };
    let tag = pick(r, "tag", r.opt_str(body, "tag")?, parsed.tag.as_deref(), field)?
        .ok_or_else(|| r.error("tag", &format!("is missing: give it as tag, or in {field} (repository:tag)")))?;
    let digest = pick(r, "digest", r.opt_str(body, "digest")?, parsed.digest.as_deref(), field)?;
    // The repository as written, without tag or digest; the registry only if it names one.
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => n,
        _ => name,
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.to_ascii_lowercase() == parsed.registry || first == "index.docker.io" => {
            (Some(first), rest)
        }
        _ => (None, name),
    };
    let id = r.opt_str(body, "id")?;
    Ok(vec![r.push(registry, repository, tag, digest, id)?])
}

/// A value given beside the image or inside it; both is fine only if they agree.
fn pick<'a>(
    r: &Reader,
    key: &str,
    beside: Option<&'a str>,
    within: Option<&'a str>,
    field: &str,
) -> Result<Option<&'a str>, PushError> {
    match (beside, within) {
        (Some(a), Some(b)) if a != b => {
            Err(r.error(key, &format!("is {}, but {field} says {}", excerpt(a), excerpt(b))))
        }
        (a, b) => Ok(a.or(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, PayloadFormat, Push};

    const NATIVE: &str = include_str!("../../../tests/fixtures/registry/native.json");
    const KEEL: &str = include_str!("../../../tests/fixtures/registry/native-keel.json");

    #[test]
    fn documented_shape() {
        let (format, pushes) = parse(NATIVE.as_bytes(), None).unwrap();
        assert_eq!(format, PayloadFormat::Native);
        assert_eq!(
            pushes,
            [Push {
                registry: Some("registry.example.com:5000".into()),
                repository: "team/app".into(),
                tag: "v2".into(),
                digest: Some("sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0".into()),
                event_id: Some("ci-build-8812".into()),
            }]
        );
    }

    #[test]
    fn tag_in_the_image_or_beside_it() {
        let (_, p) = parse(br#"{"image":"nginx:1.27"}"#, None).unwrap();
        assert_eq!((p[0].registry.as_deref(), p[0].repository.as_str(), p[0].tag.as_str()), (None, "nginx", "1.27"));
        assert_eq!(p[0].image().unwrap().repository_key(), "docker.io/library/nginx");
        let (_, p) = parse(br#"{"image":"localhost:5000/app","tag":"v1"}"#, None).unwrap();
        assert_eq!(
            (p[0].registry.as_deref(), p[0].repository.as_str(), p[0].tag.as_str()),
            (Some("localhost:5000"), "app", "v1")
        );
        let (_, p) = parse(br#"{"image":"acme/web:v1","tag":"v1"}"#, None).unwrap();
        assert_eq!((p[0].registry.as_deref(), p[0].repository.as_str()), (None, "acme/web"));
        let (_, p) = parse(KEEL.as_bytes(), None).unwrap();
        assert_eq!(
            (p[0].registry.as_deref(), p[0].repository.as_str(), p[0].tag.as_str()),
            (Some("index.docker.io"), "acme/web", "1.4.2")
        );
        assert_eq!(p[0].image().unwrap().repository_key(), "docker.io/acme/web");
    }

    #[test]
    fn broken_bodies() {
        let e = parse(br#"{"image":"nginx"}"#, None).unwrap_err().0;
        assert_eq!(
            e,
            "the body is not a hookd native push notification: tag is missing: give it as tag, or in image (repository:tag)"
        );
        let e = parse(br#"{"image":"nginx:1","tag":"2"}"#, None).unwrap_err().0;
        assert!(e.ends_with(r#"tag is "2", but image says "1""#), "{e}");
        let e = parse(br#"{"image":"Not An Image"}"#, None).unwrap_err().0;
        assert!(e.ends_with(r#"image is "Not An Image", not an image reference"#), "{e}");
        let e = parse(br#"{"image":"nginx","tag":"no good"}"#, None).unwrap_err().0;
        assert!(e.contains("not a valid Docker tag"), "{e}");
        let e = parse(br#"{"tag":"v1"}"#, Some(PayloadFormat::Native)).unwrap_err().0;
        assert!(e.ends_with("native push notification: image is missing"), "{e}");
        let long = format!(r#"{{"image":"{}"}}"#, "x".repeat(5000));
        let e = parse(long.as_bytes(), None).unwrap_err().0;
        assert!(e.len() < 200, "an excerpt, never the whole input: {e}");
    }
}
