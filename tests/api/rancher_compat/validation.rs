//! `rancher/validation-tests`: `tests/v2_validation/cattlevalidationtest/core/test_webhook_scale_service.py`.
//!
//! At a bound, Rancher refused the step with 400 and hookd clamps (README, differences:
//! "At a bound"). Each bound test runs Rancher's body with `atBound: "refuse"` and must
//! give Rancher's answers word for word; its `_clamps_by_default` twin runs Rancher's body
//! as is and asserts hookd's default.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{
    assert_rancher_message, create_webhook, created, delete_webhook_verify, env_and_service, execute, list_webhook,
    scale, scale_body, set_scale, PROJECT, SERVICE,
};
use crate::{docker, helpers::TestApp};

const ABOVE_MAX: &str = "Error Cannot scale above provided max scale value in executing driver for scaleService";
const BELOW_MIN: &str = "Error Cannot scale below provided min scale value in executing driver for scaleService";

fn refusing(mut body: Value) -> Value {
    body["scaleServiceConfig"]["atBound"] = json!("refuse");
    body
}

fn body(name: &str, action: &str, amount: i64, min: i64, max: i64) -> Value {
    scale_body(name, json!(action), json!(amount), SERVICE, json!(min), json!(max))
}

#[tokio::test]
async fn test_webhook_scaleup() {
    let app = env_and_service(1).await;
    assert_eq!(scale(&app).await, 1);
    let (url, id) = created(&app, &body("servicescaleuptest", "up", 2, 1, 4)).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(scale(&app).await, 3);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

async fn scaleup_beyond_max(data: Value) -> (TestApp, String, StatusCode, Value) {
    let app = env_and_service(1).await;
    let (url, id) = created(&app, &data).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(scale(&app).await, 3);
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(scale(&app).await, 3, "never beyond max");
    (app, id, status, answer)
}

#[tokio::test]
async fn test_webhook_scaleup_beyond_max() {
    let data = refusing(body("servicescaleupbeyondmaxtest", "up", 2, 1, 3));
    let (app, id, status, answer) = scaleup_beyond_max(data).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["message"], ABOVE_MAX);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

#[tokio::test]
async fn test_webhook_scaleup_beyond_max_clamps_by_default() {
    let (app, id, status, answer) = scaleup_beyond_max(body("servicescaleupbeyondmaxtest", "up", 2, 1, 3)).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("unchanged")), "{answer}");
    assert_eq!(answer["reason"], "already at or above max scale 3");
    delete_webhook_verify(&app, PROJECT, &id).await;
}

#[tokio::test]
async fn test_webhook_scaleup_beyond_max_1() {
    let app = env_and_service(2).await;
    let (url, id) = created(&app, &refusing(body("servicescaleupbeyondmaxtest_1", "up", 3, 1, 4))).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(scale(&app).await, 2, "a refused step changes nothing");
    assert_eq!(answer["message"], ABOVE_MAX);
    set_scale(&app, 1).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(scale(&app).await, 4);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

#[tokio::test]
async fn test_webhook_scaleup_beyond_max_1_clamps_by_default() {
    let app = env_and_service(2).await;
    let (url, id) = created(&app, &body("servicescaleupbeyondmaxtest_1", "up", 3, 1, 4)).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("scaled")), "{answer}");
    assert_eq!(answer["reason"], "scaled up by 2 (clamped to max 4)");
    assert_eq!(scale(&app).await, 4);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

#[tokio::test]
async fn test_webhook_scaledown() {
    let app = env_and_service(3).await;
    let (url, id) = created(&app, &body("servicescaledowntest", "down", 2, 1, 4)).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(scale(&app).await, 1);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

async fn scaledown_below_min(data: Value) -> (TestApp, String, StatusCode, Value) {
    let app = env_and_service(3).await;
    let (url, id) = created(&app, &data).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(scale(&app).await, 1);
    // Rancher's second trigger comes at once: a plain POST waits for no cooldown.
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(scale(&app).await, 1, "never below min");
    (app, id, status, answer)
}

#[tokio::test]
async fn test_webhook_scaledown_below_min() {
    let (app, id, status, answer) =
        scaledown_below_min(refusing(body("servicescaledownbelowmintest", "down", 2, 1, 4))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["message"], BELOW_MIN);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

#[tokio::test]
async fn test_webhook_scaledown_below_min_clamps_by_default() {
    let (app, id, status, answer) = scaledown_below_min(body("servicescaledownbelowmintest", "down", 2, 1, 4)).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("unchanged")), "{answer}");
    assert_eq!(answer["reason"], "already at or below min scale 1");
    delete_webhook_verify(&app, PROJECT, &id).await;
}

#[tokio::test]
async fn test_webhook_scaledown_below_min_1() {
    let app = env_and_service(4).await;
    let (url, id) = created(&app, &refusing(body("servicescaledownbelowmintest_1", "down", 3, 2, 4))).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(scale(&app).await, 4);
    assert_eq!(answer["message"], BELOW_MIN);
    set_scale(&app, 5).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(scale(&app).await, 2);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

#[tokio::test]
async fn test_webhook_scaledown_below_min_1_clamps_by_default() {
    let app = env_and_service(4).await;
    let (url, id) = created(&app, &body("servicescaledownbelowmintest_1", "down", 3, 2, 4)).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!((status, answer["reason"].as_str()), (StatusCode::OK, Some("scaled down by 2 (clamped to min 2)")));
    assert_eq!(scale(&app).await, 2);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

/// A create Rancher refused with 400 and `expected` as its message.
async fn refused_at_create(app: &TestApp, data: Value, expected: &str) {
    let (status, answer) = create_webhook(app, PROJECT, &data).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_rancher_message(&answer, expected);
    assert_eq!(list_webhook(app, PROJECT, None).await, json!([]), "nothing was created");
}

#[tokio::test]
async fn test_webhook_invalid_scale_action() {
    let app = env_and_service(1).await;
    refused_at_create(&app, body("invalidactiontest", "updown", 2, 1, 4), "Invalid action updown").await;
}

#[tokio::test]
async fn test_webhook_invalid_service_id() {
    let app = env_and_service(1).await;
    let data = scale_body("invalidserviceidtest", json!("down"), json!(2), "1s1000a", json!(1), json!(4));
    refused_at_create(&app, data.clone(), "Invalid service 1s1000a").await;
    // Issue 13: and it says which services exist.
    let (_, answer) = create_webhook(&app, PROJECT, &data).await;
    assert!(answer["message"].as_str().unwrap().ends_with("it has: web, api"), "{answer}");
}

#[tokio::test]
async fn test_webhook_scaleup_invalid_zero_amount() {
    let app = env_and_service(1).await;
    refused_at_create(&app, body("zeroamounttest", "up", 0, 1, 4), "Invalid amount: 0").await;
}

#[tokio::test]
async fn test_webhook_scaleup_invalid_negative_amount() {
    let app = env_and_service(1).await;
    refused_at_create(&app, body("negativeamounttest", "up", -1, 1, 4), "Invalid amount: -1").await;
}

#[tokio::test]
async fn test_webhook_scaleup_invalid_zero_min() {
    let app = env_and_service(1).await;
    refused_at_create(&app, body("zeromintest", "up", 1, 0, 4), "Minimum scale not provided/invalid").await;
}

#[tokio::test]
async fn test_webhook_scaleup_invalid_negative_min() {
    let app = env_and_service(1).await;
    refused_at_create(&app, body("negativemintest", "up", 1, -1, 4), "Minimum scale not provided/invalid").await;
}

#[tokio::test]
async fn test_webhook_scaleup_invalid_zero_max() {
    let app = env_and_service(1).await;
    refused_at_create(&app, body("zeromaxtest", "up", 1, 1, 0), "Maximum scale not provided/invalid").await;
}

#[tokio::test]
async fn test_webhook_scaleup_invalid_negative_max() {
    let app = env_and_service(1).await;
    refused_at_create(&app, body("negativemaxtest", "up", 1, 1, -1), "Maximum scale not provided/invalid").await;
}

/// Rancher answered 400; hookd answers 409 Conflict (README, differences: "Duplicate names").
#[tokio::test]
async fn test_webhook_duplicatename() {
    let app = env_and_service(1).await;
    let data = body("duplicatenametest", "up", 2, 1, 4);
    let (_, id) = created(&app, &data).await;
    let (status, answer) = create_webhook(&app, PROJECT, &data).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_rancher_message(&answer, "Cannot have duplicate webhook name, webhook duplicatenametest already exists");
    delete_webhook_verify(&app, PROJECT, &id).await;
}

/// Rancher's deleted-URL check wants "Requested webhook has been revoked" in the message.
#[tokio::test]
async fn test_webhook_execute_deleted_webhook() {
    let app = env_and_service(1).await;
    let (url, id) = created(&app, &body("executedeletedwebhooktest", "up", 1, 1, 4)).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(scale(&app).await, 2);
    delete_webhook_verify(&app, PROJECT, &id).await;
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("Requested webhook has been revoked"), "{answer}");
    assert_eq!(scale(&app).await, 2);
}

#[tokio::test]
async fn test_webhook_invalid_driver() {
    let app = env_and_service(1).await;
    let mut data = body("invaliddrivertest", "up", 2, 1, 4);
    data["driver"] = json!("scaleServiceupDown");
    refused_at_create(&app, data, "Invalid driver scaleServiceupDown").await;
}

#[tokio::test]
async fn test_webhook_list_single_webhook() {
    let app = env_and_service(1).await;
    let (url, id) = created(&app, &body("listsinglewebhooktest", "up", 2, 1, 4)).await;
    let resp = list_webhook(&app, PROJECT, Some(&id)).await;
    assert_eq!((resp["name"].as_str(), resp["state"].as_str()), (Some("listsinglewebhooktest"), Some("active")));
    assert_eq!(resp["driver"], "scaleService");
    let (status, answer) = execute(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(scale(&app).await, 3);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

/// Rancher cut the trailing `projectId` off its URL and got 400 "Invalid execute url...".
/// hookd's URL carries the project inside its signed token (README, differences: "Trigger
/// URLs"): the cut damages the token, which is refused with 403, and nothing scales.
#[tokio::test]
async fn test_webhook_missing_projectid() {
    let app = env_and_service(1).await;
    let (url, id) = created(&app, &body("missingprojectidtest", "up", 1, 1, 4)).await;
    let (status, answer) = execute(&app, &url[..url.len() - 3]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], "invalid_token");
    assert_eq!(scale(&app).await, 1);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

/// Rancher answered a wrong `projectId` with 500 "Error ..."; hookd answers 400 with
/// "Invalid projectId" (a caller's mistake is never a 5xx), and nothing scales.
#[tokio::test]
async fn test_webhook_invalid_projectid() {
    let app = env_and_service(1).await;
    let (url, id) = created(&app, &body("invalidprojectidtest", "up", 1, 1, 4)).await;
    let (status, answer) = execute(&app, &format!("{url}&projectId=1e1000")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("Invalid"), "{answer}");
    assert_eq!(scale(&app).await, 1);
    let (status, answer) = execute(&app, &format!("{url}&projectId={PROJECT}")).await;
    assert_eq!(status, StatusCode::OK, "the right projectId is accepted: {answer}");
    assert_eq!(scale(&app).await, 2);
    delete_webhook_verify(&app, PROJECT, &id).await;
}

/// Rancher's URLs said `key=`; hookd's say `token=` and accept `key=` too.
#[tokio::test]
async fn test_webhook_invalid_token() {
    let app = env_and_service(1).await;
    let (url, id) = created(&app, &body("invalidtokentest", "up", 1, 1, 4)).await;
    let (prefix, key) = url.split_once("token=").expect("a token parameter");
    let (status, answer) = execute(&app, &format!("{prefix}key={}", &key[3..])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("revoked"), "{answer}");
    assert_eq!(scale(&app).await, 1);
    let (status, answer) = execute(&app, &format!("{prefix}key={key}")).await;
    assert_eq!(status, StatusCode::OK, "Rancher's `key=` spelling works: {answer}");
    delete_webhook_verify(&app, PROJECT, &id).await;
}

/// Rancher refused a global service; on Docker that is a global Swarm service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn test_webhook_global_service() {
    let host = docker::engine();
    let app = docker::app_on(&host).await;
    let name = format!("globalsvc-{}", &app.marker[20..]);
    docker::docker(&host, &["service", "create", "--detach", "--mode", "global", "--name", &name, docker::IMAGE]).await;
    let data = scale_body("globalservicetest", json!("up"), json!(1), &name, json!(1), json!(4));
    let (status, answer) = create_webhook(&app, "dock", &data).await;
    docker::docker(&host, &["service", "rm", &name]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_rancher_message(&answer, &format!("Cannot create webhook for global service {name}"));
}

/// Rancher refused an external service (a DNS alias, not containers it runs). Docker's
/// nearest kind is a container that no Swarm or Compose service manages: hookd does not
/// see it as a service, and says "Invalid service" (README, differences: "Service kinds").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: ./scripts/test.sh starts one"]
async fn test_webhook_external_service() {
    let host = docker::engine();
    let app = docker::app_on(&host).await;
    let name = format!("extsvc-{}", &app.marker[20..]);
    docker::docker(&host, &["run", "--detach", "--name", &name, docker::IMAGE]).await;
    let data = scale_body("extservicetest", json!("up"), json!(1), &name, json!(1), json!(4));
    let (status, answer) = create_webhook(&app, "dock", &data).await;
    docker::docker(&host, &["rm", "--force", &name]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_rancher_message(&answer, &format!("Invalid service {name}"));
}

/// Issue 11: a scale-down receiver made from Rancher's body acts on every plain POST, as in
/// Rancher: the default cooldowns hold back Alertmanager notifications only.
#[tokio::test]
async fn issue_11_rancher_bodies_act_on_every_plain_post() {
    let app = env_and_service(4).await;
    let (url, _) = created(&app, &body("down-by-one", "down", 1, 1, 4)).await;
    for expected in [3, 2] {
        let (status, answer) = execute(&app, &url).await;
        assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("scaled")), "{answer}");
        assert_eq!(scale(&app).await, expected);
    }
}

/// Issue 11: HTTP basic credentials carry an API token, as Rancher's keys did; a wrong one
/// is refused like a wrong bearer token.
#[tokio::test]
async fn issue_11_basic_credentials_carry_an_api_token() {
    let app = env_and_service(1).await;
    let url = format!("{}/v1-webhooks/receivers?projectId={PROJECT}", app.base);
    for (user, password, expected) in [
        ("access-key", Some(app.token.as_str()), StatusCode::OK),
        (app.token.as_str(), None, StatusCode::OK),
        ("access-key", Some("not-a-token"), StatusCode::UNAUTHORIZED),
        ("", Some(""), StatusCode::UNAUTHORIZED),
    ] {
        let response = app.http.get(&url).basic_auth(user, password).send().await.unwrap();
        assert_eq!(response.status(), expected, "user {user:?}");
    }
}
