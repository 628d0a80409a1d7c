//! scaleService's target mode on the wire: `mode`, `targetFrom`, `maxStepUp`,
//! `maxStepDown`, `stabilizationSeconds`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::super::error::ApiError;
use crate::domain::target::{ScaleMode, StepLimit, TargetConfig, TargetSource, DEFAULT_STABILIZATION_SECONDS};

/// `{"annotation": "desired_replicas"}` or `{"label": "desired_replicas"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFromIn {
    pub annotation: Option<String>,
    pub label: Option<String>,
}

impl TargetFromIn {
    pub fn of(source: &TargetSource) -> Self {
        match source {
            TargetSource::Annotation(name) => Self { annotation: Some(name.clone()), label: None },
            TargetSource::Label(name) => Self { annotation: None, label: Some(name.clone()) },
        }
    }
}

pub struct TargetIn<'a> {
    pub mode: Option<&'a str>,
    pub target_from: Option<TargetFromIn>,
    pub max_step_up: Option<&'a Value>,
    pub max_step_down: Option<&'a Value>,
    pub stabilization_seconds: Option<u32>,
}

fn field_error(field: &str, message: String) -> ApiError {
    ApiError::bad_request("invalid_value", message).with_field(format!("scaleServiceConfig.{field}"))
}

fn limit(field: &'static str, value: Option<&Value>) -> Result<Option<StepLimit>, ApiError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    StepLimit::parse(field, &text).map(Some).map_err(|e| field_error(field, e.message))
}

impl TargetIn<'_> {
    pub fn into_domain(self) -> Result<ScaleMode, ApiError> {
        match self.mode.unwrap_or("step") {
            "step" => {
                let stray = [
                    ("targetFrom", self.target_from.is_some()),
                    ("maxStepUp", self.max_step_up.is_some_and(|v| !v.is_null())),
                    ("maxStepDown", self.max_step_down.is_some_and(|v| !v.is_null())),
                    ("stabilizationSeconds", self.stabilization_seconds.is_some()),
                ];
                match stray.iter().find(|(_, given)| *given) {
                    Some((field, _)) => Err(field_error(
                        field,
                        format!("{field} is for target mode; set \"mode\": \"target\" or leave it out"),
                    )),
                    None => Ok(ScaleMode::Step),
                }
            }
            "target" => {
                let from =
                    match self.target_from {
                        Some(TargetFromIn { annotation: Some(name), label: None }) => TargetSource::Annotation(name),
                        Some(TargetFromIn { annotation: None, label: Some(name) }) => TargetSource::Label(name),
                        _ => return Err(field_error(
                            "targetFrom",
                            "target mode needs targetFrom: {\"annotation\": NAME} or {\"label\": NAME}, the alerts' \
                             replica count"
                                .into(),
                        )),
                    };
                let target = TargetConfig {
                    from,
                    max_step_up: limit("maxStepUp", self.max_step_up)?,
                    max_step_down: limit("maxStepDown", self.max_step_down)?,
                    stabilization: self.stabilization_seconds.unwrap_or(DEFAULT_STABILIZATION_SECONDS),
                };
                Ok(ScaleMode::Target(target))
            }
            other => Err(field_error("mode", format!("mode must be \"step\" or \"target\", not {other:?}"))),
        }
    }
}

/// The mode's members of a receiver's `scaleServiceConfig`.
pub fn out(mode: &ScaleMode, into: &mut Map<String, Value>) {
    into.insert("mode".into(), json!(mode.as_str()));
    if let ScaleMode::Target(t) = mode {
        into.insert("targetFrom".into(), json!({ t.from.kind(): t.from.name() }));
        let limit = |l: Option<StepLimit>| match l {
            Some(StepLimit::Replicas(n)) => json!(n),
            Some(StepLimit::Percent(p)) => json!(format!("{p}%")),
            None => Value::Null,
        };
        into.insert("maxStepUp".into(), limit(t.max_step_up));
        into.insert("maxStepDown".into(), limit(t.max_step_down));
        into.insert("stabilizationSeconds".into(), json!(t.stabilization));
    }
}
