//! Rancher's `service/scale_host_test.go` (v1.6). Rancher's environment had hosts labelled
//! `foo=bar`; here the project has a pool of that selector. Rancher's mock driver acted on
//! nothing, and so does this pool's provider (`true` for scripts): the driver's own tests
//! (`hosts.rs`, `swarm_hosts.rs`) check what the action does to real hosts.

use hookd::config::{HostPoolConfig, HostProviderKind};
use serde_json::{json, Value};

use super::{create_get_execute_list_delete, refused, SERVICE};
use crate::helpers::{spawn_app_with, TestApp};

fn scale_host(config: Value) -> Value {
    json!({"driver": "scaleHost", "name": "wh-name", "scaleHostConfig": config})
}

/// Rancher's environment: the service `web`, and hosts labelled `foo=bar`.
async fn env_with_hosts() -> TestApp {
    let app = spawn_app_with(|config| {
        config.host_pools.push(HostPoolConfig {
            name: "foo".into(),
            project: "default".into(),
            selector: [("foo".to_owned(), "bar".to_owned())].into(),
            min: 1,
            max: 10,
            provider: HostProviderKind::Command,
            list: vec!["echo".into(), "[]".into()],
            create: vec!["true".into()],
            delete: vec!["true".into()],
            endpoint: None,
            timeout_seconds: 10,
        })
    })
    .await;
    app.wait_for_processes(SERVICE, 1).await;
    app
}

#[tokio::test]
async fn test_webhook_create_and_execute_scale_host() {
    let app = env_with_hosts().await;
    let body = scale_host(
        json!({"hostSelector": {"foo": "bar"}, "amount": 1, "action": "up", "min": 1, "max": 4, "deleteOption": "mostRecent"}),
    );
    create_get_execute_list_delete(&app, body, None, |wh| {
        let c = &wh["scaleHostConfig"];
        assert_eq!(
            (c["hostSelector"]["foo"].as_str(), c["action"].as_str(), c["type"].as_str()),
            (Some("bar"), Some("up"), Some("scaleHost"))
        );
        assert_eq!((c["amount"].as_u64(), c["min"].as_u64(), c["max"].as_u64()), (Some(1), Some(1), Some(4)));
    })
    .await;
}

#[tokio::test]
async fn test_webhook_create_invalid_min_max_action_scale_host() {
    let app = env_with_hosts().await;
    for (config, why) in [
        (json!({"amount": 1, "action": "up", "min": -1, "max": 4}), "Invalid min"),
        (json!({"amount": 1, "action": "up", "min": 1, "max": -4}), "Invalid max"),
        (json!({"amount": 1.5, "action": "up", "min": 1, "max": 4}), "Amount of type float is invalid"),
        (json!({"amount": 1, "action": "up", "min": 1.5, "max": 4}), "Min of type float is invalid"),
        (json!({"amount": 1, "action": "up", "min": 1, "max": 4.5}), "Max of type float is invalid"),
        (json!({"amount": 1, "action": "updown", "min": 1, "max": 4}), "Invalid action"),
        (json!({"amount": 1, "action": "down", "min": 1, "max": 4, "deleteOption": "random"}), "Invalid deleteOption"),
    ] {
        let mut config = config;
        config["hostSelector"] = json!({"foo": "bar"});
        if config.get("deleteOption").is_none() {
            config["deleteOption"] = json!("mostRecent");
        }
        refused(&app, scale_host(config), why).await;
    }
}
