//! Issue 13: `/v1-webhooks/openapi.json` against the running server. Every documented
//! operation is called, every answer is validated against the document's schema for its
//! status, and every method a path does not document answers 405, so the document and the
//! server cannot drift apart unnoticed. (`src/http/openapi.rs` checks routes and enums.)

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

struct Checker {
    doc: Value,
    /// Operations answered with a 2xx, as ("GET", "/v1-webhooks/receivers/{id}").
    covered: BTreeSet<(String, String)>,
}

impl Checker {
    fn new(doc: Value) -> Self {
        Self { doc, covered: BTreeSet::new() }
    }

    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        while let Some(pointer) = node.get("$ref").and_then(Value::as_str) {
            node = self.doc.pointer(pointer.trim_start_matches('#')).unwrap_or_else(|| panic!("{pointer} resolves"));
        }
        node
    }

    /// Checks one answer to `method template` against the document.
    fn check(&mut self, method: &Method, template: &str, status: StatusCode, content_type: &str, body: &str) {
        let what = format!("{method} {template} → {status}");
        let operation = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(operation.is_object(), "{what}: the document has no such operation");
        let response = operation["responses"]
            .get(status.as_str())
            .unwrap_or_else(|| panic!("{what}: the document lists no {status} for it; body: {body}"));
        let response = self.resolve(response);
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(body.is_empty(), "{what}: documented without a body, answered {body}");
            return self.cover(method, template, status);
        };
        let media = content_type.split(';').next().unwrap_or("").trim();
        let Some(entry) = content.get(media) else {
            panic!("{what}: answered {media:?}, documented {:?}", content.keys().collect::<Vec<_>>())
        };
        if media == "application/json" {
            let instance: Value =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
            let mut schema = entry["schema"].clone();
            schema["components"] = self.doc["components"].clone();
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{what}: the document's schema compiles: {e}"));
            let errors: Vec<String> =
                validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            assert!(errors.is_empty(), "{what}: the answer does not match the document: {errors:#?}\n{instance:#}");
        }
        self.cover(method, template, status);
    }

    fn cover(&mut self, method: &Method, template: &str, status: StatusCode) {
        if status.is_success() {
            self.covered.insert((method.to_string(), template.to_owned()));
        }
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in ["get", "put", "post", "delete", "patch"] {
                if item.get(method).is_some() {
                    all.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        all
    }
}

/// A request through the checker: `template` names the documented path, `path` the real one.
struct Call<'a> {
    app: &'a TestApp,
    method: Method,
    template: &'a str,
    path: String,
    auth: bool,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
}

impl<'a> Call<'a> {
    fn new(app: &'a TestApp, method: Method, template: &'a str, path: impl Into<String>) -> Self {
        Self { app, method, template, path: path.into(), auth: true, headers: vec![], body: None }
    }

    fn anonymous(mut self) -> Self {
        self.auth = false;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string());
        self.header("content-type", "application/json")
    }

    async fn send(self, checker: &mut Checker) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let url =
            if self.path.starts_with("http") { self.path.clone() } else { format!("{}{}", self.app.base, self.path) };
        let mut request = self.app.http.request(self.method.clone(), url);
        if self.auth {
            request = request.bearer_auth(&self.app.token);
        }
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = self.body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request sent");
        let (status, headers) = (response.status(), response.headers().clone());
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let text = response.text().await.expect("body read");
        checker.check(&self.method, self.template, status, &content_type, &text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
    }
}

#[tokio::test]
async fn issue_13_the_openapi_document_matches_every_answer_the_server_gives() {
    let app = spawn_app().await;
    app.wait_for_processes("web", 1).await;
    let doc: Value =
        app.http.get(format!("{}/v1-webhooks/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut c = Checker::new(doc);
    let c = &mut c;
    use Method as M;

    Call::new(&app, M::GET, "/v1-webhooks/openapi.json", "/v1-webhooks/openapi.json").anonymous().send(c).await;
    Call::new(&app, M::GET, "/v1-webhooks", "/v1-webhooks").send(c).await;
    let (status, ..) = Call::new(&app, M::GET, "/v1-webhooks", "/v1-webhooks").anonymous().send(c).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Call::new(&app, M::GET, "/v1-webhooks/schemas", "/v1-webhooks/schemas").send(c).await;
    Call::new(&app, M::GET, "/v1-webhooks/schemas/{id}", "/v1-webhooks/schemas/receiver").send(c).await;
    Call::new(&app, M::GET, "/v1-webhooks/schemas/{id}", "/v1-webhooks/schemas/nothing").send(c).await;
    Call::new(&app, M::GET, "/v1-webhooks/services", "/v1-webhooks/services").send(c).await;
    Call::new(&app, M::GET, "/v1-webhooks/pools", "/v1-webhooks/pools").send(c).await;
    Call::new(&app, M::GET, "/v1-webhooks/services", "/v1-webhooks/services?projectId=nope").send(c).await;

    // Receivers: create, the errors of create, list, get, put, actions.
    let receivers = "/v1-webhooks/receivers";
    let scale = json!({"name": "web-up", "driver": "scaleService",
        "scaleServiceConfig": {"serviceId": "web", "action": "up", "amount": 1, "min": 1, "max": 3, "cooldownUpSeconds": 0}});
    let (status, up, _) = Call::new(&app, M::POST, receivers, receivers).json(&scale).send(c).await;
    assert_eq!(status, StatusCode::OK, "{up}");
    let (status, ..) = Call::new(&app, M::POST, receivers, receivers).json(&scale).send(c).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let bad = json!({"name": "bad", "driver": "scaleService", "scaleServiceConfig": {"serviceId": "web", "action": "up", "amount": -1}});
    Call::new(&app, M::POST, receivers, receivers).json(&bad).send(c).await;
    Call::new(&app, M::POST, receivers, receivers).header("content-type", "text/plain").send(c).await;
    let upgrade = json!({"name": "web-deploy", "driver": "serviceUpgrade",
        "serviceUpgradeConfig": {"serviceSelector": {"app": "web"}, "tag": "2.0", "intervalMillis": 1}});
    let (status, deploy, _) = Call::new(&app, M::POST, receivers, receivers).json(&upgrade).send(c).await;
    assert_eq!(status, StatusCode::OK, "{deploy}");
    let (_, page, _) = Call::new(&app, M::GET, receivers, format!("{receivers}?limit=1")).send(c).await;
    assert!(page["pagination"]["next"].is_string(), "{page}");
    Call::new(&app, M::GET, receivers, format!("{receivers}?limit=0")).send(c).await;

    let one = "/v1-webhooks/receivers/{id}";
    let up_id = up["id"].as_str().unwrap();
    let up_path = format!("{receivers}/{up_id}");
    let (_, mut got, _) = Call::new(&app, M::GET, one, &up_path).send(c).await;
    Call::new(&app, M::GET, one, format!("{receivers}/web-up")).send(c).await;
    Call::new(&app, M::GET, one, format!("{receivers}/nothing")).send(c).await;
    got["scaleServiceConfig"]["max"] = json!(4);
    let (status, ..) = Call::new(&app, M::PUT, one, &up_path).json(&got).send(c).await;
    assert_eq!(status, StatusCode::OK);
    for action in ["disable", "enable", "regenerateUrl", "explode"] {
        Call::new(&app, M::POST, one, format!("{up_path}?action={action}")).send(c).await;
    }
    let (_, up, _) = Call::new(&app, M::GET, one, &up_path).send(c).await;

    // Triggers: acted, dry run, refused token, a push that starts a job.
    let endpoint = "/v1-webhooks/endpoint";
    let url = up["url"].as_str().unwrap().to_owned();
    let (status, answer, _) = Call::new(&app, M::POST, endpoint, &url).anonymous().send(c).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("scaled")), "{answer}");
    Call::new(&app, M::POST, endpoint, format!("{url}&dryRun=1")).anonymous().send(c).await;
    Call::new(&app, M::POST, endpoint, format!("{url}&dryRun=maybe")).anonymous().send(c).await;
    Call::new(&app, M::POST, endpoint, format!("{}{endpoint}?token=forged", app.base)).anonymous().send(c).await;
    let push = json!({"push_data": {"tag": "2.0"}, "repository": {"repo_name": "example/web"}});
    let (status, started, headers) =
        Call::new(&app, M::POST, endpoint, deploy["url"].as_str().unwrap()).anonymous().json(&push).send(c).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(headers.get(header::LOCATION).unwrap().to_str().unwrap(), started["jobUrl"]);

    let job_path = started["jobUrl"].as_str().unwrap().strip_prefix(&app.base).unwrap().to_owned();
    Call::new(&app, M::GET, "/v1-webhooks/jobs/{id}", &job_path).send(c).await;
    Call::new(&app, M::GET, "/v1-webhooks/jobs/{id}", "/v1-webhooks/jobs/nothing").send(c).await;
    let deploy_id = deploy["id"].as_str().unwrap();
    let (_, jobs, _) =
        Call::new(&app, M::GET, "/v1-webhooks/receivers/{id}/jobs", format!("{receivers}/{deploy_id}/jobs"))
            .send(c)
            .await;
    assert_eq!(jobs["data"][0]["id"], started["job"]);
    let executions = "/v1-webhooks/receivers/{id}/executions";
    let (_, history, _) = Call::new(&app, M::GET, executions, format!("{up_path}/executions")).send(c).await;
    assert!(history["data"].as_array().unwrap().len() >= 2, "{history}");
    Call::new(&app, M::GET, executions, format!("{up_path}/executions?limit=x")).send(c).await;
    let am = "/v1-webhooks/receivers/{id}/alertmanager-config";
    Call::new(&app, M::GET, am, format!("{up_path}/alertmanager-config")).send(c).await;

    // The UI's session.
    let session = "/ui/session";
    Call::new(&app, M::POST, session, session)
        .anonymous()
        .json(&json!({"token": "wrong-token-0123456789"}))
        .send(c)
        .await;
    let (status, _, headers) =
        Call::new(&app, M::POST, session, session).anonymous().json(&json!({"token": app.token})).send(c).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    Call::new(&app, M::GET, session, session).anonymous().header("cookie", &cookie).send(c).await;
    Call::new(&app, M::DELETE, session, session).anonymous().header("cookie", &cookie).send(c).await;
    Call::new(&app, M::GET, session, session).anonymous().header("cookie", &cookie).send(c).await;

    // Access: tokens, projects, keys, the audit log.
    let tokens = "/v1-webhooks/tokens";
    let made = json!({"name": "ci", "role": "member", "expiresInDays": 30});
    let (status, token, _) = Call::new(&app, M::POST, tokens, tokens).json(&made).send(c).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    Call::new(&app, M::POST, tokens, tokens).json(&json!({"name": "x", "role": "root"})).send(c).await;
    Call::new(&app, M::GET, tokens, tokens).send(c).await;
    let revoke = format!("{tokens}/{}", token["id"].as_str().unwrap());
    Call::new(&app, M::DELETE, "/v1-webhooks/tokens/{id}", &revoke).send(c).await;
    Call::new(&app, M::DELETE, "/v1-webhooks/tokens/{id}", &revoke).send(c).await;
    let projects = "/v1-webhooks/projects";
    let team = json!({"name": "team", "backend": "local"});
    Call::new(&app, M::POST, projects, projects).json(&team).send(c).await;
    Call::new(&app, M::POST, projects, projects).json(&team).send(c).await;
    Call::new(&app, M::POST, projects, projects).json(&json!({"name": "t2", "backend": "nope"})).send(c).await;
    Call::new(&app, M::GET, projects, projects).send(c).await;
    Call::new(&app, M::DELETE, "/v1-webhooks/projects/{name}", "/v1-webhooks/projects/team").send(c).await;
    Call::new(&app, M::DELETE, "/v1-webhooks/projects/{name}", "/v1-webhooks/projects/default").send(c).await;
    let keys = "/v1-webhooks/keys";
    Call::new(&app, M::GET, keys, keys).send(c).await;
    Call::new(&app, M::POST, keys, format!("{keys}?action=rotate")).send(c).await;
    Call::new(&app, M::POST, keys, format!("{keys}?action=spin")).send(c).await;
    let (_, audit, _) = Call::new(&app, M::GET, "/v1-webhooks/audit", "/v1-webhooks/audit?limit=2").send(c).await;
    assert_eq!(audit["data"][0]["action"], "keys.rotate", "{audit}");

    for path in ["/healthz", "/readyz", "/metrics"] {
        Call::new(&app, M::GET, path, path).anonymous().send(c).await;
    }
    let (status, ..) = Call::new(&app, M::DELETE, one, &up_path).send(c).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let missing: Vec<_> = c.operations().difference(&c.covered).cloned().collect();
    assert!(missing.is_empty(), "documented operations never answered 2xx here: {missing:?}");

    // Every method a documented path does not list is refused as not allowed.
    let real: BTreeMap<&str, String> = BTreeMap::from([
        ("/v1-webhooks/schemas/{id}", "/v1-webhooks/schemas/receiver".to_owned()),
        ("/v1-webhooks/receivers/{id}", format!("{receivers}/{deploy_id}")),
        ("/v1-webhooks/receivers/{id}/executions", format!("{receivers}/{deploy_id}/executions")),
        ("/v1-webhooks/receivers/{id}/alertmanager-config", format!("{receivers}/{deploy_id}/alertmanager-config")),
        ("/v1-webhooks/receivers/{id}/jobs", format!("{receivers}/{deploy_id}/jobs")),
        ("/v1-webhooks/jobs/{id}", job_path.clone()),
        ("/v1-webhooks/tokens/{id}", revoke.clone()),
        ("/v1-webhooks/projects/{name}", "/v1-webhooks/projects/default".to_owned()),
    ]);
    let paths: Vec<String> = c.doc["paths"].as_object().unwrap().keys().cloned().collect();
    for template in paths {
        let path = real.get(template.as_str()).cloned().unwrap_or_else(|| template.clone());
        for method in [M::GET, M::POST, M::PUT, M::DELETE, M::PATCH] {
            if c.doc["paths"][&template].get(method.as_str().to_lowercase()).is_some() {
                continue;
            }
            let response = app
                .http
                .request(method.clone(), format!("{}{path}", app.base))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is not documented");
        }
    }
}
