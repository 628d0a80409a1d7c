//! Issue 14: projects, API tokens and roles. Every management route × every role × the
//! caller's own project and another one, as one table; then expiry, revocation, the last
//! owner, signing-key rotation and the audit log.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.http.request(method, format!("{}{path}", app.base)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    crate::helpers::read(request.send().await.expect("request sent")).await
}

/// As the admin token (owner of every project); asserts success.
async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = call(app, &app.token, method, path, body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

async fn token(app: &TestApp, name: &str, role: &str, project: Option<&str>) -> Value {
    let body = json!({"name": name, "role": role, "projectId": project});
    admin(app, Method::POST, "/v1-webhooks/tokens", Some(body)).await
}

async fn receiver_in(app: &TestApp, project: &str, name: &str) -> String {
    let body = json!({"name": name, "driver": "scaleService",
        "scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 3}});
    let r = admin(app, Method::POST, &format!("/v1-webhooks/receivers?projectId={project}"), Some(body)).await;
    r["id"].as_str().unwrap().to_owned()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Owner,
    Member,
    ReadOnly,
}

/// What a route needs of a caller in a project it can see.
#[derive(Clone, Copy)]
enum Needs {
    Read,
    Manage,
    Own,
    /// Owners of every project only: a project-scoped token gets 403 whatever it names.
    OwnAll,
    /// Any valid token (the API's root, its schemas, the projects it sees).
    Any,
}

/// The callers are scoped to project `a`, or to every project (`all`); owners of every
/// project are the admin, tested by every other test.
fn expected(needs: Needs, who: Who, own_project: bool, all: bool) -> StatusCode {
    match needs {
        Needs::Any => StatusCode::OK,
        Needs::OwnAll if all && who == Who::Owner => StatusCode::OK,
        Needs::OwnAll => StatusCode::FORBIDDEN,
        _ if !own_project => StatusCode::NOT_FOUND,
        Needs::Read => StatusCode::OK,
        Needs::Manage if who == Who::ReadOnly => StatusCode::FORBIDDEN,
        Needs::Own if who != Who::Owner => StatusCode::FORBIDDEN,
        Needs::Manage | Needs::Own => StatusCode::OK,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_every_route_for_every_role_in_its_project_and_another() {
    let app = spawn_app().await;
    for p in ["a", "b"] {
        admin(&app, Method::POST, "/v1-webhooks/projects", Some(json!({"name": p, "backend": "local"}))).await;
    }
    let mut callers = vec![];
    for (who, role) in [(Who::Owner, "owner"), (Who::Member, "member"), (Who::ReadOnly, "read-only")] {
        let t = token(&app, &format!("{role}-of-a"), role, Some("a")).await;
        callers.push((who, t["token"].as_str().unwrap().to_owned(), false));
    }
    for (who, role) in [(Who::Member, "member"), (Who::ReadOnly, "read-only")] {
        let t = token(&app, &format!("{role}-of-all"), role, None).await;
        callers.push((who, t["token"].as_str().unwrap().to_owned(), true));
    }
    let mut cases = 0;
    let mut failures = vec![];
    for (who, secret, all) in &callers {
        let scope = if *all { "all" } else { "a" };
        for (project, own) in [("a", true), ("b", *all)] {
            let who_at = format!("{who:?}-{scope}-{project}").to_lowercase();
            // Fresh targets for each caller and project: some cases delete or change them.
            let r = receiver_in(&app, project, &format!("r-{who_at}")).await;
            let gone = receiver_in(&app, project, &format!("gone-{who_at}")).await;
            let victim = token(&app, &format!("victim-{who_at}"), "member", Some(project)).await;
            let victim = victim["id"].as_str().unwrap().to_owned();
            let extra = format!("x-{who_at}");
            let create = json!({"name": format!("new-{who_at}"), "driver": "scaleService",
                "scaleServiceConfig": {"serviceId": "web", "action": "down", "min": 1, "max": 3}});
            let table: Vec<(Method, String, Option<Value>, Needs)> = vec![
                (Method::GET, format!("/v1-webhooks/receivers?projectId={project}"), None, Needs::Read),
                (Method::POST, format!("/v1-webhooks/receivers?projectId={project}"), Some(create), Needs::Manage),
                (Method::GET, format!("/v1-webhooks/receivers/{r}"), None, Needs::Read),
                (Method::GET, format!("/v1-webhooks/receivers/{r}?projectId={project}"), None, Needs::Read),
                (Method::PUT, format!("/v1-webhooks/receivers/{r}"), Some(json!({"enabled": false})), Needs::Manage),
                (Method::POST, format!("/v1-webhooks/receivers/{r}?action=enable"), None, Needs::Manage),
                (Method::POST, format!("/v1-webhooks/receivers/{r}?action=disable"), None, Needs::Manage),
                (Method::POST, format!("/v1-webhooks/receivers/{r}?action=regenerateUrl"), None, Needs::Manage),
                (Method::GET, format!("/v1-webhooks/receivers/{r}/executions"), None, Needs::Read),
                (Method::GET, format!("/v1-webhooks/receivers/{r}/jobs"), None, Needs::Read),
                (Method::GET, format!("/v1-webhooks/receivers/{r}/alertmanager-config"), None, Needs::Manage),
                (Method::DELETE, format!("/v1-webhooks/receivers/{gone}"), None, Needs::Manage),
                (Method::GET, format!("/v1-webhooks/services?projectId={project}"), None, Needs::Read),
                (Method::GET, format!("/v1-webhooks/pools?projectId={project}"), None, Needs::Read),
                (Method::GET, "/v1-webhooks".into(), None, Needs::Any),
                (Method::GET, "/v1-webhooks/schemas".into(), None, Needs::Any),
                (Method::GET, "/v1-webhooks/schemas/receiver".into(), None, Needs::Any),
                (Method::GET, "/v1-webhooks/projects".into(), None, Needs::Any),
                (Method::GET, format!("/v1-webhooks/tokens?projectId={project}"), None, Needs::Own),
                (
                    Method::POST,
                    "/v1-webhooks/tokens".into(),
                    Some(json!({"name": format!("made-{who_at}"), "role": "read-only", "projectId": project})),
                    Needs::Own,
                ),
                (Method::DELETE, format!("/v1-webhooks/tokens/{victim}"), None, Needs::Own),
                (Method::GET, format!("/v1-webhooks/audit?projectId={project}"), None, Needs::Own),
                (
                    Method::POST,
                    "/v1-webhooks/projects".into(),
                    Some(json!({"name": extra, "backend": "local"})),
                    Needs::OwnAll,
                ),
                (Method::DELETE, format!("/v1-webhooks/projects/{project}"), None, Needs::OwnAll),
                (Method::GET, "/v1-webhooks/keys".into(), None, Needs::OwnAll),
                (Method::POST, "/v1-webhooks/keys?action=rotate".into(), None, Needs::OwnAll),
                (Method::POST, "/v1-webhooks/keys?action=retire".into(), None, Needs::OwnAll),
            ];
            for (method, path, body, needs) in table {
                let want = expected(needs, *who, own, *all);
                let (status, answer) = call(&app, secret, method.clone(), &path, body).await;
                // 2xx of any kind (200, 204) where 200 is written.
                let got = if status.is_success() { StatusCode::OK } else { status };
                cases += 1;
                if got != want {
                    failures.push(format!("{who:?} of {scope}: {method} {path}: {status}, wanted {want}: {answer}"));
                }
                if own && status.is_success() && *who == Who::ReadOnly {
                    let urls: Vec<&Value> =
                        answer["data"].as_array().into_iter().flatten().map(|r| &r["url"]).collect();
                    if urls.iter().any(|u| u.as_str().is_some_and(|u| !u.is_empty()))
                        || answer["url"].as_str().is_some_and(|u| !u.is_empty())
                    {
                        failures.push(format!("read-only saw a trigger URL at {path}"));
                    }
                }
            }
        }
    }
    eprintln!("role matrix: {cases} cases");
    assert!(cases >= 270, "{cases}");
    assert!(failures.is_empty(), "{} of {cases} cases wrong:\n{}", failures.len(), failures.join("\n"));

    // A scoped token's project list names its project only; the admin's, every project.
    let (_, listed) = call(&app, &callers[0].1, Method::GET, "/v1-webhooks/projects", None).await;
    let names: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a"]);
    let listed = admin(&app, Method::GET, "/v1-webhooks/projects", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3, "{listed}");
}

#[tokio::test]
async fn issue_14_tokens_expire_revoke_and_never_leave_the_last_owner_out() {
    let app = spawn_app().await;
    let made = token(&app, "ci", "member", None).await;
    let secret = made["token"].as_str().unwrap().to_owned();
    assert_eq!(made["expires"], Value::Null);
    let (status, _) = call(&app, &secret, Method::GET, "/v1-webhooks/receivers", None).await;
    assert_eq!(status, StatusCode::OK);
    let listed = admin(&app, Method::GET, "/v1-webhooks/tokens", None).await;
    assert!(listed.to_string().contains("\"ci\"") && !listed.to_string().contains(&secret), "the secret is shown once");
    // A UI session of the token, opened before the revocation.
    let signed_in =
        app.http.post(format!("{}/ui/session", app.base)).json(&json!({"token": secret})).send().await.unwrap();
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let with_cookie = || app.http.get(format!("{}/v1-webhooks/receivers", app.base)).header("cookie", &cookie).send();
    assert_eq!(with_cookie().await.unwrap().status(), StatusCode::OK);
    admin(&app, Method::DELETE, &format!("/v1-webhooks/tokens/{}", made["id"].as_str().unwrap()), None).await;
    let (status, _) = call(&app, &secret, Method::GET, "/v1-webhooks/receivers", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token is refused at once");
    assert_eq!(with_cookie().await.unwrap().status(), StatusCode::UNAUTHORIZED, "and so are its sessions");
    let whoami = app.http.get(format!("{}/ui/session", app.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(whoami.status(), StatusCode::UNAUTHORIZED, "the session itself is over");
    let again = app.http.post(format!("{}/ui/session", app.base)).json(&json!({"token": secret})).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "no new sign-in");

    let (status, err) = call(
        &app,
        &app.token,
        Method::POST,
        "/v1-webhooks/tokens",
        Some(json!({"name": "x", "role": "member", "expiresInDays": 0})),
    )
    .await;
    assert_eq!((status, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("expiresInDays")), "{err}");
    let (status, err) =
        call(&app, &app.token, Method::POST, "/v1-webhooks/tokens", Some(json!({"name": "x", "role": "god"}))).await;
    assert_eq!((status, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("role")), "{err}");

    // A token never outlives its maker; names are unique; a pasted secret is not echoed.
    let short = token(&app, "short-lived", "owner", None).await;
    let short_secret = short["token"].as_str().unwrap().to_owned();
    let (status, _) =
        call(&app, &app.token, Method::DELETE, &format!("/v1-webhooks/tokens/{}", short["id"].as_str().unwrap()), None)
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let expiring = admin(
        &app,
        Method::POST,
        "/v1-webhooks/tokens",
        Some(json!({"name": "expiring", "role": "owner", "expiresInDays": 2})),
    )
    .await;
    let (status, child) = call(
        &app,
        expiring["token"].as_str().unwrap(),
        Method::POST,
        "/v1-webhooks/tokens",
        Some(json!({"name": "child", "role": "member"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{child}");
    assert_eq!(child["expires"], expiring["expires"], "an expiring token makes no token that outlives it");
    let (status, err) =
        call(&app, &app.token, Method::POST, "/v1-webhooks/tokens", Some(json!({"name": "child", "role": "member"})))
            .await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("token_name_taken")), "{err}");
    let (status, err) =
        call(&app, &app.token, Method::DELETE, &format!("/v1-webhooks/tokens/{short_secret}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!err.to_string().contains(&short_secret), "{err}");

    // The only owner of every project that never expires cannot be revoked, even beside an
    // expiring one (which would leave nobody once it expires).
    let tokens = admin(&app, Method::GET, "/v1-webhooks/tokens", None).await;
    let me = tokens["data"].as_array().unwrap().iter().find(|t| t["current"] == true).unwrap().clone();
    let (status, err) =
        call(&app, &app.token, Method::DELETE, &format!("/v1-webhooks/tokens/{}", me["id"].as_str().unwrap()), None)
            .await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("last_owner")), "{err}");
}

#[tokio::test]
async fn issue_14_rotated_keys_keep_old_urls_until_retired() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 9).await;
    let old_url = r["url"].as_str().unwrap().to_owned();
    let keys = admin(&app, Method::POST, "/v1-webhooks/keys?action=rotate", None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 2, "{keys}");
    let again = admin(&app, Method::GET, &format!("/v1-webhooks/receivers/{}", r["id"].as_str().unwrap()), None).await;
    let new_url = again["url"].as_str().unwrap().to_owned();
    assert_ne!(new_url, old_url, "new URLs are signed with the new key");
    assert_eq!(app.trigger(&old_url).await.0, StatusCode::OK, "the old key still verifies");
    assert_eq!(app.trigger(&new_url).await.0, StatusCode::OK);
    let keys = admin(&app, Method::POST, "/v1-webhooks/keys?action=retire", None).await;
    let retired = keys["data"].as_array().unwrap().iter().filter(|k| k["retired"].is_string()).count();
    assert_eq!(retired, 1, "{keys}");
    assert_eq!(app.trigger(&old_url).await.0, StatusCode::FORBIDDEN, "a retired key verifies nothing");
    assert_eq!(app.trigger(&new_url).await.0, StatusCode::OK);

    // The audit log names who did it.
    let audit = admin(&app, Method::GET, "/v1-webhooks/audit", None).await;
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["keys.retire", "keys.rotate", "receiver.create"], "{audit}");
    assert_eq!(audit["data"][0]["actor"], "admin");
}

/// Issue 14: the same from the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_tokens_projects_keys_and_audit_from_the_command_line() {
    use crate::cli::hookd;
    let app = spawn_app().await;
    let (ok, out, err) = hookd(&app, &["projects", "create", "team", "--backend", "local"]).await;
    assert!(ok, "{err}");
    let (ok, out2, err) =
        hookd(&app, &["tokens", "create", "--name", "deployer", "--role", "member", "--project", "team"]).await;
    assert!(ok && out2.contains("member of team"), "{out}{out2}{err}");
    let secret = out2.lines().find_map(|l| l.strip_prefix("token:")).unwrap().trim().to_owned();
    let id = out2.lines().find_map(|l| l.strip_prefix("id:")).unwrap().trim().to_owned();
    let (status, _) = call(&app, &secret, Method::GET, "/v1-webhooks/receivers?projectId=team", None).await;
    assert_eq!(status, StatusCode::OK, "the printed token works");
    let (ok, list, _) = hookd(&app, &["tokens", "list"]).await;
    assert!(ok && list.contains("deployer") && list.contains("(you)") && !list.contains(&secret), "{list}");
    let (ok, _, err) = hookd(&app, &["tokens", "revoke", &id]).await;
    assert!(ok, "{err}");
    let (status, _) = call(&app, &secret, Method::GET, "/v1-webhooks/receivers?projectId=team", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (ok, keys, _) = hookd(&app, &["keys", "rotate"]).await;
    assert!(ok && keys.contains("current") && keys.contains("verifies older URLs"), "{keys}");
    let (ok, audit, _) = hookd(&app, &["audit"]).await;
    for action in ["keys.rotate", "token.revoke", "token.create", "project.create"] {
        assert!(ok && audit.contains(action), "{action}: {audit}");
    }
    let (ok, projects, _) = hookd(&app, &["projects", "list"]).await;
    assert!(ok && projects.contains("team") && projects.contains("api") && projects.contains("config"), "{projects}");
    let (ok, _, err) = hookd(&app, &["projects", "delete", "default"]).await;
    assert!(!ok && err.contains("config file"), "{err}");
}

/// Issue 14: no secret reaches the log, even at debug level: API tokens (the admin's and
/// made ones), trigger tokens in URLs and headers, session cookies, and a secret pasted where
/// an id belongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_secrets_never_reach_the_log() {
    let app = crate::helpers::spawn_process_with(|_| {}).await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 5).await;
    let url = r["url"].as_str().unwrap().to_owned();
    let trigger_token = url.split("token=").nth(1).unwrap().to_owned();
    let made = token(&app, "ci", "member", None).await;
    let made_secret = made["token"].as_str().unwrap().to_owned();
    // Every way a secret travels: query, header, basic credentials, sign-in body, cookie.
    assert_eq!(app.trigger(&url).await.0, StatusCode::OK);
    let endpoint = format!("{}/v1-webhooks/endpoint", app.base);
    let by_header = app.http.post(&endpoint).bearer_auth(&trigger_token).send().await.unwrap();
    assert_eq!(by_header.status(), StatusCode::OK);
    let forged = format!("{}x", &trigger_token[..trigger_token.len() - 1]);
    app.http.post(format!("{endpoint}?token={forged}")).send().await.unwrap();
    app.http.get(format!("{endpoint}?token={trigger_token}")).send().await.unwrap();
    app.http
        .get(format!("{}/v1-webhooks/receivers", app.base))
        .basic_auth("x", Some(&made_secret))
        .send()
        .await
        .unwrap();
    app.http
        .get(format!("{}/v1-webhooks/receivers", app.base))
        .bearer_auth("hookd_wrongwrongwrong")
        .send()
        .await
        .unwrap();
    let signed_in =
        app.http.post(format!("{}/ui/session", app.base)).json(&json!({"token": made_secret})).send().await.unwrap();
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let session_id = cookie.split('=').nth(1).unwrap().to_owned();
    app.http.get(format!("{}/ui/session", app.base)).header("cookie", &cookie).send().await.unwrap();
    call(&app, &app.token, Method::DELETE, &format!("/v1-webhooks/tokens/{made_secret}"), None).await;
    let id = r["id"].as_str().unwrap();
    call(&app, &app.token, Method::GET, &format!("/v1-webhooks/receivers/{id}/alertmanager-config"), None).await;
    call(&app, &app.token, Method::POST, &format!("/v1-webhooks/receivers/{id}?action=regenerateUrl"), None).await;
    assert_eq!(app.trigger(&url).await.0, StatusCode::FORBIDDEN);
    // A sender-verification secret: set, kept, sent right and wrong, rejected when too short.
    let sender_secret = "sender-secret-0123456789abcdef";
    let body = json!({"name": "signed", "driver": "scaleService", "senderVerification": {"type": "bearer", "secret": sender_secret},
        "scaleServiceConfig": {"serviceId": "web", "action": "up", "min": 1, "max": 3}});
    let signed = admin(&app, Method::POST, "/v1-webhooks/receivers", Some(body)).await;
    let signed_url = signed["url"].as_str().unwrap().to_owned();
    let signed_path = format!("/v1-webhooks/receivers/{}", signed["id"].as_str().unwrap());
    let short = json!({"senderVerification": {"type": "github", "secret": "sender-short"}});
    call(&app, &app.token, Method::PUT, &signed_path, Some(short)).await;
    for sent in [sender_secret, "sender-wrong-0123456789abcdef"] {
        let sent = app.http.post(&signed_url).header("authorization", format!("Bearer {sent}")).send().await.unwrap();
        assert!([StatusCode::OK, StatusCode::UNAUTHORIZED].contains(&sent.status()), "{}", sent.status());
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let log = app.log();
    assert!(log.lines().count() > 20, "the log was written at debug level: {log}");
    assert!(log.contains(id) && log.contains("/v1-webhooks/endpoint"), "what is not secret is logged: {log}");
    for (what, secret) in [
        ("the admin token", app.token.as_str()),
        ("a made API token", made_secret.as_str()),
        ("a trigger token", trigger_token.as_str()),
        ("a forged trigger token", forged.as_str()),
        ("a session id", session_id.as_str()),
        ("a wrong API token", "hookd_wrongwrongwrong"),
        ("a sender secret", sender_secret),
        ("a wrong sender secret", "sender-wrong-0123456789abcdef"),
        ("a refused sender secret", "sender-short"),
    ] {
        assert!(!log.contains(secret), "{what} is in the log:\n{log}");
    }
}
