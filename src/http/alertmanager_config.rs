//! `GET /v1-webhooks/receivers/{id}/alertmanager-config`: a ready-to-paste Alertmanager snippet.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
};

use serde::Serialize;

use super::{
    receivers::{trigger_url, Target},
    ApiError, AppState,
};
use crate::domain::{target::ScaleMode, DriverConfig, Receiver, ScaleAction};

/// Alertmanager durations: whole minutes when they are, seconds otherwise.
fn duration(seconds: u32) -> String {
    if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

#[derive(Serialize)]
struct Snippet<'a> {
    receivers: Vec<AmReceiver<'a>>,
    route: Route,
}

#[derive(Serialize)]
struct AmReceiver<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    webhook_configs: Vec<WebhookConfig<'a>>,
}

/// The root route's receiver when the snippet is used on its own: alerts the route does not
/// match go nowhere (a receiver with no configs), never to hookd.
const DISCARD: &str = "discard";

#[derive(Serialize)]
struct WebhookConfig<'a> {
    url: &'a str,
    send_resolved: bool,
    max_alerts: u32,
}

#[derive(Serialize)]
struct Route {
    receiver: &'static str,
    routes: Vec<SubRoute>,
}

#[derive(Serialize)]
struct SubRoute {
    receiver: String,
    matchers: Vec<String>,
    /// Target mode: one group per service, so a new count (a new alert) and the old one's
    /// resolution arrive together, whatever the root route groups by.
    #[serde(skip_serializing_if = "Option::is_none")]
    group_by: Option<Vec<&'static str>>,
    group_wait: &'static str,
    group_interval: &'static str,
    repeat_interval: String,
}

/// A label matcher `name="value"`, the value quoted as Alertmanager's matcher syntax wants.
fn matcher(name: &str, value: &str) -> String {
    format!("{name}={}", serde_json::to_string(value).expect("a string serializes"))
}

/// The snippet for a receiver whose trigger URL is `url`, routing alerts labelled `target`
/// (`service="web"`, or `pool="workers"` for a host receiver, with its further labels).
/// Everything that comes from users goes through the YAML serializer; the comments hold
/// only fixed text, numbers and the token (whose characters are safe anywhere).
pub fn snippet(r: &Receiver, c: &crate::domain::ScaleServiceConfig, url: &str, target: &[(&str, &str)]) -> String {
    let name: String = r
        .name
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    let receiver_name = format!("hookd-{name}");
    let (token_base, token) = url.split_once("?token=").unwrap_or((url, ""));
    let resolved_note = match c.options.on_resolved {
        crate::domain::OnResolved::Ignore => "resolved notifications change nothing (onResolved: ignore)",
        crate::domain::OnResolved::Reverse => "a resolved notification undoes one step (onResolved: reverse)",
        crate::domain::OnResolved::Min => "a resolved notification scales to min (onResolved: min)",
    };
    let action = match c.action {
        ScaleAction::Up => "up",
        ScaleAction::Down => "down",
    };
    let mut matchers: Vec<String> = target.iter().map(|(k, v)| matcher(k, v)).collect();
    let group_by = matches!(c.mode, ScaleMode::Target(_)).then(|| vec!["service"]);
    let (about, timing, group_interval, repeat) = match &c.mode {
        ScaleMode::Step => {
            matchers.insert(0, matcher("action", action));
            // A still-firing alert steps again only once its repeat is outside the dedup
            // window and the cooldown; a minute more keeps it clear of both.
            let cooldown = c.cooldown(c.action, true);
            let timing = format!(
                "# A repeat of a still-firing alert steps again once it is past the dedup window\n\
                 # ({} s) and the cooldown ({cooldown} s); shorter repeats are skipped.\n",
                c.options.dedup
            );
            (format!("{action} scaling"), timing, "5m", duration(c.options.dedup.max(cooldown) + 60))
        }
        ScaleMode::Target(t) => {
            let timing = format!(
                "# Each firing alert carries the replica count in its {} {}; hookd scales to the largest.\n\
                 # A scale-down waits out the {} s stabilization window and lands on the first\n\
                 # notification after it: repeats every minute bring that soon.\n",
                t.from.kind(),
                t.from.name(),
                t.stabilization
            );
            ("target scaling".to_owned(), timing, "30s", "1m".to_owned())
        }
    };
    let data = Snippet {
        receivers: vec![
            AmReceiver {
                name: &receiver_name,
                webhook_configs: vec![WebhookConfig { url, send_resolved: true, max_alerts: 0 }],
            },
            AmReceiver { name: DISCARD, webhook_configs: Vec::new() },
        ],
        route: Route {
            receiver: DISCARD,
            routes: vec![SubRoute {
                receiver: receiver_name.clone(),
                matchers,
                group_by,
                group_wait: "30s",
                group_interval,
                repeat_interval: repeat,
            }],
        },
    };
    let yaml = yaml_serde::to_string(&data).expect("the snippet serializes");
    let token_safe = token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    // What the receiver's sender check asks of Alertmanager (which can send a bearer secret,
    // but signs nothing).
    let sender = match &r.verify {
        None => "",
        Some(check) if check.kind() == "bearer" => {
            "# This receiver requires its bearer secret: add to the webhook config
             #   http_config:
#     authorization:
#       credentials: '<the secret you gave hookd>'
"
        }
        Some(_) => {
            "# Warning: this receiver's sender check asks for a header or a signature that
             # Alertmanager does not send, so its notifications are refused (401). Use a bearer
             # secret (senderVerification type bearer), or no check, for Alertmanager.
"
        }
    };
    let header_form = if token_safe && r.verify.is_none() {
        format!(
            "# To keep the token out of URLs and proxy logs, send it as a header instead:\n\
             #   url: {token_base:?}\n#   http_config:\n#     authorization:\n#       credentials: '{token}'\n"
        )
    } else {
        String::new()
    };
    format!(
        "# An Alertmanager receiver and route for a hookd receiver ({about}).\n\
         # The URL carries this receiver's token: keep this snippet as secret as a password.\n\
         # hookd reads each alert's status: {resolved_note}.\n{timing}\
         # It is a whole alertmanager.yml (alerts it does not route are discarded); to add it to\n\
         # yours, copy the hookd receiver into `receivers:` and the sub-route into `route.routes:`.\n{sender}{header_form}\n{yaml}",
    )
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Target { caller, receiver }: Target,
) -> Result<Response, ApiError> {
    if !caller.sees_urls() {
        return Err(ApiError::forbidden("forbidden", "this API token may not see trigger URLs"));
    }
    let url = trigger_url(&state, &state.base_url(&headers), &receiver);
    let snippet = match &receiver.config {
        DriverConfig::ScaleService(config) => snippet(&receiver, config, &url, &[("service", config.service.as_str())]),
        DriverConfig::ScaleHost(config) => {
            let pool = state.engine.pool_for(&receiver.project, &config.selector).map_err(|why| {
                ApiError::bad_request("unknown_pool", format!("this receiver's pool is no longer configured: {why}"))
            })?;
            // The receiver's labels beyond the pool's tell its alerts from another group's.
            let mut target = vec![("pool", pool.name.as_str())];
            let extra = config.selector.iter().filter(|(k, _)| !pool.selector.contains_key(*k));
            target.extend(extra.map(|(k, v)| (k.as_str(), v.as_str())));
            snippet(&receiver, &config.rules(&pool.name), &url, &target)
        }
        DriverConfig::ServiceUpgrade(_) => return Err(ApiError::bad_request(
            "not_an_alert_receiver",
            "only scaleService and scaleHost receivers take Alertmanager notifications; this one takes registry pushes",
        )),
    };
    Ok(([(header::CONTENT_TYPE, "application/yaml; charset=utf-8")], snippet).into_response())
}
