//! `/v1-webhooks/openapi.json`: the API's OpenAPI document. It is written by hand; the unit
//! tests below and the integration test `openapi` check it against the code, so it cannot drift.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::DOCUMENT;
    use crate::{
        domain::{Driver, JobState, Outcome, StepState},
        payload::registry::PayloadFormat,
    };

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    fn enum_of(doc: &Value, pointer: &str) -> BTreeSet<String> {
        let values = doc.pointer(pointer).unwrap_or_else(|| panic!("{pointer} is in the document"));
        values.as_array().expect("an enum").iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }

    fn set<'a>(values: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        values.into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn enums_match_the_domain() {
        let doc = doc();
        let s = "/components/schemas";
        assert_eq!(enum_of(&doc, &format!("{s}/Driver/enum")), set(Driver::ALL.iter().map(|d| d.as_str())));
        assert_eq!(enum_of(&doc, &format!("{s}/Outcome/enum")), set(Outcome::ALL.iter().map(|o| o.as_str())));
        assert_eq!(
            enum_of(&doc, &format!("{s}/PayloadFormat/enum")),
            set(PayloadFormat::ALL.iter().map(|f| f.as_str()))
        );
        let job_states = ["running", "succeeded", "failed"];
        assert!(job_states.iter().all(|j| JobState::parse(j).is_some()));
        assert_eq!(enum_of(&doc, &format!("{s}/Job/properties/state/enum")), set(job_states));
        let step_states = ["pending", "running", "done", "skipped", "failed"];
        assert!(step_states.iter().all(|j| StepState::parse(j).is_some()));
        assert_eq!(enum_of(&doc, &format!("{s}/JobStep/properties/state/enum")), set(step_states));
    }

    /// The path literals of every `.route(...)` in the router's source.
    fn routed_paths() -> BTreeSet<String> {
        let source = include_str!("mod.rs");
        let mut paths = BTreeSet::new();
        for chunk in source.split(".route(").skip(1) {
            let chunk = chunk.trim_start();
            if let Some(literal) = chunk.strip_prefix('"') {
                paths.insert(literal[..literal.find('"').expect("a closed literal")].to_owned());
            } else if chunk.starts_with("TRIGGER_PATH") {
                paths.insert(super::super::TRIGGER_PATH.to_owned());
            } else {
                panic!("a route whose path this test cannot read: {}", &chunk[..40.min(chunk.len())]);
            }
        }
        paths
    }

    #[test]
    fn every_routed_path_is_documented() {
        let doc = doc();
        let documented: BTreeSet<String> = doc["paths"].as_object().expect("paths").keys().cloned().collect();
        // The web UI's page and assets are not API.
        let ui = set(["/", "/ui/", "/ui/app.js", "/ui/hosts.js", "/ui/sender.js", "/ui/app.css"]);
        let routed: BTreeSet<String> = routed_paths().difference(&ui).cloned().collect();
        assert!(routed.len() > 10, "the router's source was read: {routed:?}");
        assert_eq!(routed, documented, "routes and the OpenAPI document differ");
    }
}
