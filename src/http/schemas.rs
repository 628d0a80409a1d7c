//! `GET /v1-webhooks/schemas`: Rancher-style schemas of the resources and driver configs.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    Json,
};
use serde_json::{json, Value};

use crate::{
    auth::Caller,
    domain::target::{DEFAULT_STABILIZATION_SECONDS, MAX_STABILIZATION_SECONDS},
};

use super::{
    wire::{collection, DEFAULT_AMOUNT, DEFAULT_MAX, DEFAULT_MIN},
    ApiError, AppState,
};
use crate::domain::{
    scale::{ALERT_COOLDOWN_DOWN, ALERT_COOLDOWN_UP, MAX_SCALE, MAX_WINDOW_SECONDS},
    upgrade::{MAX_BATCH_SIZE, MAX_INTERVAL_SECONDS},
    Driver, Outcome, ScaleOptions,
};
use crate::payload::registry::PayloadFormat;

fn schemas(base: &str) -> Vec<Value> {
    let defaults = ScaleOptions::default();
    let drivers: Vec<&str> = Driver::ALL.iter().map(|d| d.as_str()).collect();
    let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    let schema = |id: &str, collection_methods: Value, resource_methods: Value, fields: Value| {
        let mut links = json!({ "self": format!("{base}/v1-webhooks/schemas/{id}") });
        // Rancher's UI builds a type's URLs from its schema's collection link.
        let collection = match id {
            "receiver" => Some("receivers"),
            "service" => Some("services"),
            _ => None,
        };
        if let Some(path) = collection {
            links["collection"] = json!(format!("{base}/v1-webhooks/{path}"));
        }
        json!({
            "id": id,
            "type": "schema",
            "links": links,
            "collectionMethods": collection_methods,
            "resourceMethods": resource_methods,
            "resourceFields": fields,
        })
    };
    let payload_formats: Vec<&str> = PayloadFormat::ALL.iter().map(|f| f.as_str()).collect();
    let not_yet = "Not available in this hookd yet: served because Rancher's UI reads this schema";
    let mut receiver = schema(
        "receiver",
        json!(["GET", "POST"]),
        json!(["GET", "PUT", "DELETE"]),
        json!({
            "name": { "type": "string", "required": true, "create": true, "update": true, "minLength": 1, "maxLength": 128,
                      "description": "Unique within the project" },
            "driver": { "type": "enum", "options": drivers, "required": true, "create": true, "update": false },
            "enabled": { "type": "boolean", "default": true, "create": true, "update": true },
            "state": { "type": "enum", "options": ["active", "inactive"] },
            "url": { "type": "string", "description": "The trigger URL; blank for read-only callers" },
            "description": { "type": "string", "description": "What the receiver does, in a sentence" },
            "projectId": { "type": "string" },
            "created": { "type": "date" },
            "updated": { "type": "date" },
            "scaleServiceConfig": { "type": "scaleService", "create": true, "update": true },
            "serviceUpgradeConfig": { "type": "serviceUpgrade", "create": true, "update": true },
            "scaleHostConfig": { "type": "scaleHost", "create": true, "update": true, "nullable": true },
            "forwardPostConfig": { "type": "forwardPost", "create": false, "update": false, "description": not_yet },
        }),
    );
    receiver["resourceActions"] = json!({ "enable": {}, "disable": {}, "regenerateUrl": {} });
    vec![
        receiver,
        schema(
            "scaleService",
            json!([]),
            json!([]),
            json!({
                "serviceId": { "type": "string", "required": true, "create": true, "update": true,
                               "description": "A service of the project's backend (see /v1-webhooks/services)" },
                "action": { "type": "enum", "options": ["up", "down"], "required": true, "create": true, "update": true },
                "amount": { "type": "int", "default": DEFAULT_AMOUNT, "min": 1, "create": true, "update": true },
                "min": { "type": "int", "default": DEFAULT_MIN, "min": 1, "create": true, "update": true },
                "max": { "type": "int", "default": DEFAULT_MAX, "min": 2, "max": MAX_SCALE, "create": true, "update": true,
                         "description": "Must be greater than min" },
                "atBound": { "type": "enum", "options": ["clamp", "refuse"], "default": "clamp", "create": true, "update": true,
                             "description": "A step past min or max: stop at the bound (clamp), or refuse it with 400 and change nothing, as Rancher did (refuse)" },
                "onResolved": { "type": "enum", "options": ["ignore", "reverse", "min"], "default": "ignore", "create": true, "update": true,
                                "description": "What a resolved Alertmanager notification does: nothing, undo one step (step mode), or go to min (target mode)" },
                "cooldownUpSeconds": { "type": "int", "default": null, "nullable": true, "min": 0, "max": MAX_WINDOW_SECONDS,
                                       "create": true, "update": true,
                                       "description": format!("Seconds after the service's last change (by any receiver) before this receiver scales it up. Unset: {ALERT_COOLDOWN_UP} for Alertmanager notifications, none for plain POSTs") },
                "cooldownDownSeconds": { "type": "int", "default": null, "nullable": true, "min": 0, "max": MAX_WINDOW_SECONDS,
                                         "create": true, "update": true,
                                         "description": format!("Seconds after the service's last change (by any receiver) before this receiver scales it down. Unset: {ALERT_COOLDOWN_DOWN} for Alertmanager notifications, none for plain POSTs") },
                "dedupSeconds": { "type": "int", "default": defaults.dedup, "min": 0, "max": MAX_WINDOW_SECONDS,
                                  "create": true, "update": true,
                                  "description": "A notification already acted on within this window is skipped as a duplicate" },
                "allowAutoscaler": { "type": "boolean", "default": false, "create": true, "update": true,
                                     "description": "Scale even though an autoscaler (a Kubernetes HPA) sets the same service's scale; refused at creation otherwise" },
                "allowZero": { "type": "boolean", "default": false, "create": true, "update": true,
                               "description": "Allow min 0: the service may be scaled to zero and woken by the next alert (not Compose services)" },
                "mode": { "type": "enum", "options": ["step", "target"], "default": "step", "create": true, "update": true,
                          "description": "step: ±amount per trigger; target: to the replica count the firing alerts carry" },
                "targetFrom": { "type": "map[string]", "nullable": true, "create": true, "update": true,
                                "description": "Target mode: {\"annotation\": NAME} or {\"label\": NAME}, where each firing alert carries the wanted replica count" },
                "maxStepUp": { "type": "string", "nullable": true, "create": true, "update": true,
                               "description": "Target mode: most replicas one decision adds, as a count (4) or a percentage (\"50%\")" },
                "maxStepDown": { "type": "string", "nullable": true, "create": true, "update": true,
                                 "description": "Target mode: most replicas one decision removes, as a count or a percentage" },
                "stabilizationSeconds": { "type": "int", "default": DEFAULT_STABILIZATION_SECONDS, "min": 0, "max": MAX_STABILIZATION_SECONDS,
                                          "create": true, "update": true,
                                          "description": "Target mode: a scale-down goes no lower than the highest recommendation of this window" },
            }),
        ),
        // Rancher's other drivers, with Rancher's fields and defaults, for its UI.
        schema(
            "serviceUpgrade",
            json!([]),
            json!([]),
            json!({
                "serviceSelector": { "type": "map[string]", "required": true, "create": true, "update": true,
                                     "description": "Labels a service must all carry to be upgraded" },
                "tag": { "type": "string", "create": true, "update": true,
                         "description": "The tag to act on (exact), a pattern (glob, regex), or a semver requirement (semver, optional)" },
                "tagPolicy": { "type": "enum", "options": ["exact", "glob", "regex", "semver"], "default": "exact", "create": true, "update": true },
                "semverBound": { "type": "enum", "options": ["major", "minor", "patch"], "default": "minor", "create": true, "update": true,
                                 "description": "With tagPolicy semver: how far above the running version a push may go" },
                "repository": { "type": "string", "nullable": true, "create": true, "update": true,
                                "description": "Only pushes of this repository act; unset: a service is upgraded only by pushes of the repository it runs" },
                "payloadFormat": { "type": "enum", "options": payload_formats, "default": null, "nullable": true, "create": true, "update": true,
                                   "description": "Unset: detected from the body" },
                "addressType": { "type": "enum", "options": ["registry", "registry-internal", "registry-vpc"], "default": "registry", "create": true,
                                 "description": "Rancher's Alibaba Cloud option; accepted and ignored (the push names the registry)" },
                "batchSize": { "type": "int", "default": 1, "min": 1, "max": MAX_BATCH_SIZE, "create": true, "update": true,
                               "description": "Replicas replaced at a time" },
                "intervalMillis": { "type": "int", "default": 2, "min": 1, "max": MAX_INTERVAL_SECONDS, "create": true, "update": true,
                                    "description": "Seconds between batches, despite its name (Rancher's field, Rancher's meaning)" },
                "startFirst": { "type": "boolean", "default": false, "create": true, "update": true,
                                "description": "Start a new replica before stopping an old one" },
            }),
        ),
        schema(
            "scaleHost",
            json!([]),
            json!([]),
            json!({
                "hostSelector": { "type": "map[string]", "create": true, "update": true, "required": true,
                                  "description": "Labels a host carries, all of them; they must include one host pool's selector, and new hosts get them" },
                "action": { "type": "enum", "options": ["up", "down"], "create": true, "update": true, "required": true },
                "amount": { "type": "int", "default": 1, "min": 1, "create": true, "update": true },
                "min": { "type": "int", "default": 1, "min": 1, "create": true, "update": true },
                "max": { "type": "int", "default": 100, "min": 1, "create": true, "update": true },
                "deleteOption": { "type": "enum", "options": ["mostRecent", "leastRecent"], "default": "mostRecent", "create": true, "update": true,
                                  "description": "Which healthy hosts a scale-down removes once the unhealthy ones are gone" },
                "atBound": { "type": "enum", "options": ["clamp", "refuse"], "default": "clamp", "create": true, "update": true },
                "onResolved": { "type": "enum", "options": ["ignore", "reverse"], "default": "ignore", "create": true, "update": true },
                "cooldownUpSeconds": { "type": "int", "nullable": true, "min": 0, "create": true, "update": true },
                "cooldownDownSeconds": { "type": "int", "nullable": true, "min": 0, "create": true, "update": true },
                "dedupSeconds": { "type": "int", "default": 600, "min": 0, "create": true, "update": true },
            }),
        ),
        schema(
            "forwardPost",
            json!([]),
            json!([]),
            json!({
                "projectId": { "type": "string", "create": false, "description": not_yet },
                "serviceName": { "type": "string", "create": false },
                "port": { "type": "string", "create": false },
                "path": { "type": "string", "create": false },
            }),
        ),
        schema(
            "execution",
            json!(["GET"]),
            json!([]),
            json!({
                "receiverId": { "type": "string" },
                "at": { "type": "date" },
                "source": { "type": "string" },
                "outcome": { "type": "enum", "options": outcomes },
                "from": { "type": "int", "nullable": true },
                "to": { "type": "int", "nullable": true },
                "reason": { "type": "string", "description": "The step, the bound reached, or for skipped: disabled, resolved, cooldown or duplicate" },
                "detail": { "type": "string" },
                "dryRun": { "type": "boolean" },
                "alerts": { "type": "array[alert]", "description": "The Alertmanager alerts behind it: name, fingerprint, status, startsAt" },
            }),
        ),
        schema(
            "service",
            json!(["GET"]),
            json!([]),
            json!({
                "name": { "type": "string" },
                "backend": { "type": "string" },
                "scale": { "type": "int", "description": "Desired scale" },
                "running": { "type": "int" },
                "image": { "type": "string" },
                "labels": { "type": "map[string]" },
                "lastError": { "type": "string", "nullable": true },
            }),
        ),
        schema(
            "error",
            json!([]),
            json!([]),
            json!({
                "status": { "type": "int" },
                "code": { "type": "string" },
                "message": { "type": "string" },
                "field": { "type": "string", "nullable": true },
            }),
        ),
    ]
}

/// Schemas need an API token like every management route: the README promises it, and
/// nothing on the management API is public but health, readiness and the UI's assets.
pub async fn list(State(state): State<Arc<AppState>>, _caller: Caller, headers: HeaderMap) -> Json<Value> {
    let base = state.base_url(&headers);
    let data = schemas(&base);
    let limit = data.len() as u32;
    Json(collection("schema", format!("{base}/v1-webhooks/schemas"), data, limit, None))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    schemas(&state.base_url(&headers))
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::not_found("schema_not_found", format!("there is no schema {id:?}")))
}
