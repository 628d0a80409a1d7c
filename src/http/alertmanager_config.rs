//! `GET /v1-webhooks/receivers/{id}/alertmanager-config`: a ready-to-paste Alertmanager snippet.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
};

use super::{
    receivers::{trigger_url, Target},
    ApiError, AppState,
};
use crate::domain::{DriverConfig, Receiver, ScaleAction};

/// Alertmanager durations: whole minutes when they are, seconds otherwise.
fn duration(seconds: u32) -> String {
    if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// The snippet for a receiver whose trigger URL is `url`.
pub fn snippet(r: &Receiver, url: &str) -> String {
    let name: String = r
        .name
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    let (token_base, token) = url.split_once("?token=").unwrap_or((url, ""));
    let DriverConfig::ScaleService(c) = &r.config;
    let resolved_note = match c.options.on_resolved {
        crate::domain::OnResolved::Ignore => "resolved notifications change nothing (onResolved: ignore)",
        crate::domain::OnResolved::Reverse => "a resolved notification undoes one step (onResolved: reverse)",
    };
    // A still-firing alert steps again only once its repeat is outside the dedup window and
    // the cooldown; a minute more keeps it clear of both.
    let repeat = c.options.dedup.max(c.cooldown(c.action, true)) + 60;
    let action = match c.action {
        ScaleAction::Up => "up",
        ScaleAction::Down => "down",
    };
    format!(
        r#"# Alertmanager receiver for the hookd receiver "{receiver}": {describe}.
# The URL carries this receiver's token: keep this snippet as secret as a password.

receivers:
  - name: 'hookd-{name}'
    webhook_configs:
      - url: '{url}'
        # hookd reads each alert's status: {resolved_note}.
        send_resolved: true
        max_alerts: 0
        # To keep the token out of URLs and proxy logs, send it as a header instead:
        # url: '{token_base}'
        # http_config:
        #   authorization:
        #     credentials: '{token}'

# Route the alerts that should scale {service} {action} to it, as in this example (merge it into your `route:`):
route:
  routes:
    - receiver: 'hookd-{name}'
      matchers:
        - action="{action}"
        - service="{service}"
      group_wait: 30s
      group_interval: 5m
      # A repeat of a still-firing alert steps again once it is past the dedup window
      # ({dedup} s) and the cooldown ({cooldown} s); shorter repeats are skipped.
      repeat_interval: {repeat}
"#,
        receiver = r.name,
        describe = r.config.describe(),
        service = c.service,
        dedup = c.options.dedup,
        cooldown = c.cooldown(c.action, true),
        repeat = duration(repeat),
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
    Ok(([(header::CONTENT_TYPE, "application/yaml; charset=utf-8")], snippet(&receiver, &url)).into_response())
}
