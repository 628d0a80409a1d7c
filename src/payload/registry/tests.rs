//! Across formats: detection of every fixture, pinned formats that do not fit, the body-level
//! errors, and fuzzing by property.

use super::*;
use crate::domain::image::valid_tag;

/// Every fixture, with the format it is and how many pushes it holds.
const FIXTURES: [(&str, &str, PayloadFormat, usize); 19] = [
    ("dockerhub", include_str!("../../../tests/fixtures/registry/dockerhub.json"), PayloadFormat::DockerHub, 1),
    (
        "dockerhub-official",
        include_str!("../../../tests/fixtures/registry/dockerhub-official.json"),
        PayloadFormat::DockerHub,
        1,
    ),
    ("alicloud", include_str!("../../../tests/fixtures/registry/alicloud.json"), PayloadFormat::Alicloud, 1),
    ("azure", include_str!("../../../tests/fixtures/registry/azure.json"), PayloadFormat::Azure, 1),
    (
        "azure-chart-push",
        include_str!("../../../tests/fixtures/registry/azure-chart-push.json"),
        PayloadFormat::Azure,
        0,
    ),
    ("registry-v2", include_str!("../../../tests/fixtures/registry/registry-v2.json"), PayloadFormat::RegistryV2, 1),
    (
        "registry-v2-mixed",
        include_str!("../../../tests/fixtures/registry/registry-v2-mixed.json"),
        PayloadFormat::RegistryV2,
        2,
    ),
    (
        "registry-v2-no-push",
        include_str!("../../../tests/fixtures/registry/registry-v2-no-push.json"),
        PayloadFormat::RegistryV2,
        0,
    ),
    ("harbor", include_str!("../../../tests/fixtures/registry/harbor.json"), PayloadFormat::Harbor, 1),
    (
        "harbor-cloudevents",
        include_str!("../../../tests/fixtures/registry/harbor-cloudevents.json"),
        PayloadFormat::Harbor,
        1,
    ),
    (
        "harbor-cloudevents-untagged",
        include_str!("../../../tests/fixtures/registry/harbor-cloudevents-untagged.json"),
        PayloadFormat::Harbor,
        0,
    ),
    ("harbor-pull", include_str!("../../../tests/fixtures/registry/harbor-pull.json"), PayloadFormat::Harbor, 0),
    ("github-package", include_str!("../../../tests/fixtures/registry/github-package.json"), PayloadFormat::Github, 1),
    (
        "github-package-untagged",
        include_str!("../../../tests/fixtures/registry/github-package-untagged.json"),
        PayloadFormat::Github,
        0,
    ),
    (
        "github-registry-package",
        include_str!("../../../tests/fixtures/registry/github-registry-package.json"),
        PayloadFormat::Github,
        1,
    ),
    ("quay", include_str!("../../../tests/fixtures/registry/quay.json"), PayloadFormat::Quay, 2),
    (
        "quay-legacy",
        include_str!("../../../tests/fixtures/registry/quay-legacy-tags-object.json"),
        PayloadFormat::Quay,
        1,
    ),
    ("native", include_str!("../../../tests/fixtures/registry/native.json"), PayloadFormat::Native, 1),
    ("native-keel", include_str!("../../../tests/fixtures/registry/native-keel.json"), PayloadFormat::Native, 1),
];

#[test]
fn format_names_round_trip() {
    for f in PayloadFormat::ALL {
        assert_eq!(PayloadFormat::parse(f.as_str()), Some(f));
    }
    let names: Vec<&str> = PayloadFormat::ALL.iter().map(|f| f.as_str()).collect();
    for name in ["dockerhub", "alicloud", "azure", "registry", "harbor", "github", "quay", "native"] {
        assert!(names.contains(&name), "{name}");
    }
    assert_eq!(PayloadFormat::parse("DockerHub"), None);
    assert_eq!(PayloadFormat::parse(""), None);
}

#[test]
fn every_fixture_is_detected_and_parses_pinned() {
    for (name, body, format, count) in FIXTURES {
        let (detected, pushes) = parse(body.as_bytes(), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((detected, pushes.len()), (format, count), "{name}");
        assert_eq!(parse(body.as_bytes(), Some(format)).unwrap(), (format, pushes.clone()), "{name}");
        for p in &pushes {
            assert!(valid_tag(&p.tag), "{name}");
            assert!(p.image().is_some(), "{name}: {p:?}");
        }
    }
}

/// A pinned format the body does not fit is an error that says so, never a silent skip.
#[test]
fn a_pinned_format_the_body_does_not_fit_is_an_error() {
    for (name, body, format, _) in FIXTURES {
        for pinned in PayloadFormat::ALL.into_iter().filter(|f| *f != format) {
            let e = parse(body.as_bytes(), Some(pinned)).unwrap_err().0;
            assert!(e.contains(pinned.label()), "{name} as {pinned:?}: {e}");
            assert!(
                e.contains(&format!("it looks like {} notification", format.a_label())),
                "{name} as {pinned:?}: {e}"
            );
        }
    }
}

#[test]
fn bodies_that_are_no_notification() {
    let cases: [(&[u8], &str); 8] = [
        (b"", "the body is empty: a registry push notification is a JSON object"),
        (b"  \n ", "the body is empty: a registry push notification is a JSON object"),
        (b"{\"push_data\":", "the body is not valid JSON: it ends too early"),
        (b"{not json}", "the body is not valid JSON (line 1, column 2)"),
        (b"\xff\xfe", "the body is not valid JSON (line 1, column 1)"),
        (b"[1,2]", "the body is JSON an array, not an object: not a registry push notification"),
        (b"\"nginx:1\"", "the body is JSON a string, not an object: not a registry push notification"),
        (b"{\"a\":1}", "the body is not a push notification hookd recognizes"),
    ];
    for (body, expected) in cases {
        let e = parse(body, None).unwrap_err().0;
        assert!(e.starts_with(expected), "{body:?}: {e}");
        assert!(!e.contains("expected") && !e.contains("EOF"), "serde's wording: {e}");
    }
    // Alertmanager's body is not a push either.
    let alert = include_str!("../../../tests/fixtures/alertmanager-firing.json");
    assert!(parse(alert.as_bytes(), None).unwrap_err().0.contains("payloadFormat"));
}

#[test]
fn look_alikes_are_told_apart() {
    // ACR's single event and a v2 envelope both have `target`.
    let acr = br#"{"id":"1","action":"push","target":{"repository":"a","tag":"v1"},"request":{"host":"r.azurecr.io"}}"#;
    assert_eq!(parse(acr, None).unwrap().0, PayloadFormat::Azure);
    let v2 =
        br#"{"events":[{"id":"1","action":"push","target":{"repository":"a","tag":"v1"},"request":{"host":"r.io"}}]}"#;
    assert_eq!(parse(v2, None).unwrap().0, PayloadFormat::RegistryV2);
    // Docker Hub and Alibaba both have `push_data`; only Alibaba has a region.
    let hub = br#"{"push_data":{"tag":"v1"},"repository":{"repo_name":"a/b","region":null}}"#;
    assert_eq!(parse(hub, None).unwrap().0, PayloadFormat::DockerHub);
    let ali = br#"{"push_data":{"tag":"v1"},"repository":{"repo_full_name":"a/b","region":"cn-beijing"}}"#;
    assert_eq!(parse(ali, None).unwrap().0, PayloadFormat::Alicloud);
    // Quay's `name` is no native image: it has a `repository`.
    let quay =
        br#"{"name":"repository","tag":"x","repository":"a/b","docker_url":"quay.io/a/b","updated_tags":["v1"]}"#;
    assert_eq!(parse(quay, None).unwrap().0, PayloadFormat::Quay);
}

#[test]
fn too_many_pushes_are_refused() {
    let event = serde_json::json!({"action": "push", "target": {"repository": "a", "tag": "v1"}});
    let body = serde_json::json!({ "events": vec![event; MAX_PUSHES + 1] }).to_string();
    assert!(parse(body.as_bytes(), None).unwrap_err().0.contains("at most 1000"));
}

#[test]
fn excerpts_are_short() {
    assert_eq!(excerpt("abc"), "\"abc\"");
    let long = excerpt(&"é".repeat(500));
    assert_eq!(long.chars().count(), EXCERPT_CHARS + 3);
    assert_eq!(url_host("https://user@reg.example:5000/v2/x?y"), Some("reg.example:5000"));
    assert_eq!(url_host("quay.io"), Some("quay.io"));
    assert_eq!(url_host("https:///x"), None);
}

/// Fuzzing by property: whatever a sender POSTs, parsing answers and never panics; an
/// answer is pushes Docker can read, or a short sentence.
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn check(result: Result<(PayloadFormat, Vec<Push>), PushError>) -> Result<(), TestCaseError> {
        match result {
            Ok((_, pushes)) => {
                for p in pushes {
                    prop_assert!(valid_tag(&p.tag));
                    prop_assert!(p.image().is_some(), "{:?}", p);
                }
            }
            Err(PushError(m)) => {
                prop_assert!(!m.is_empty());
                prop_assert!(m.chars().count() < 400, "too long: {}", m);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048), pin in 0..9usize) {
            check(parse(&body, PayloadFormat::ALL.get(pin).copied()))?;
        }

        /// Mutations of real-shaped payloads: a byte flipped, inserted or removed anywhere.
        #[test]
        fn mutated_fixtures_never_panic(which in 0..FIXTURES.len(), at in any::<prop::sample::Index>(), byte in any::<u8>(), kind in 0..3u8) {
            let mut body = FIXTURES[which].1.as_bytes().to_vec();
            let at = at.index(body.len());
            match kind {
                0 => body[at] = byte,
                1 => body.insert(at, byte),
                _ => { body.remove(at); }
            }
            check(parse(&body, None))?;
            check(parse(&body, Some(FIXTURES[which].2)))?;
        }

        /// Any JSON, under the members each format reads.
        #[test]
        fn arbitrary_json_never_panics(value in arb_json(), pin in 0..9usize) {
            check(parse(value.to_string().as_bytes(), PayloadFormat::ALL.get(pin).copied()))?;
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            "[a-z0-9._/:-]{0,24}".prop_map(Value::from),
            Just(Value::from("push")),
            Just(Value::from("published")),
            Just(Value::from("PUSH_ARTIFACT")),
            Just(Value::from("sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf")),
        ];
        let keys = prop_oneof![
            Just("events"),
            Just("action"),
            Just("target"),
            Just("request"),
            Just("host"),
            Just("tag"),
            Just("repository"),
            Just("mediaType"),
            Just("url"),
            Just("push_data"),
            Just("repo_name"),
            Just("repo_full_name"),
            Just("region"),
            Just("namespace"),
            Just("name"),
            Just("type"),
            Just("event_data"),
            Just("data"),
            Just("specversion"),
            Just("resources"),
            Just("resource_url"),
            Just("digest"),
            Just("package"),
            Just("registry_package"),
            Just("package_type"),
            Just("package_version"),
            Just("container_metadata"),
            Just("package_url"),
            Just("docker_url"),
            Just("updated_tags"),
            Just("image"),
            Just("id"),
            Just("version"),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(keys.clone().prop_map(str::to_owned), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
