//! Client commands: talk to a running hookd over its REST API, like kubectl does.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::ClientArgs;

#[derive(Subcommand)]
pub enum ReceiversCommand {
    /// List the receivers of a project.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// The project (`default` unless you configured others).
        #[arg(long, default_value = "default")]
        project: String,
        /// Print the JSON the API answered.
        #[arg(long)]
        json: bool,
    },
    /// Show one receiver, with its trigger URL.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        receiver: ReceiverRef,
        /// Print the JSON the API answered.
        #[arg(long)]
        json: bool,
    },
    /// Create a scaleService receiver from flags, or any receiver from a JSON file.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// The project (`default` unless you configured others).
        #[arg(long, default_value = "default")]
        project: String,
        #[command(flatten)]
        fields: ReceiverFields,
    },
    /// Change a receiver; only the given fields change. Its trigger URL stays the same.
    Update {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        receiver: ReceiverRef,
        #[command(flatten)]
        fields: ReceiverFields,
    },
    /// Create a copy of a receiver under a new name (with its own trigger URL).
    Clone {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        receiver: ReceiverRef,
        /// The copy's name.
        #[arg(long)]
        name: String,
        /// The file holding the copy's sender secret, when the receiver has a sender check.
        #[arg(long)]
        sender_secret_file: Option<PathBuf>,
    },
    /// Print a ready-to-paste Alertmanager receiver and route for a receiver.
    AlertmanagerConfig {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        receiver: ReceiverRef,
    },
    /// Delete a receiver; its trigger URL stops working at once.
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        receiver: ReceiverRef,
    },
}

/// A receiver named on the command line: its id, or its name in a project.
#[derive(Args)]
pub struct ReceiverRef {
    /// The receiver's id (32 hex digits), or its name in --project.
    #[arg(value_name = "RECEIVER")]
    id: String,
    /// The project whose receiver a name means (ids need none).
    #[arg(long, default_value = "default")]
    project: String,
}

#[derive(Args)]
pub struct ReceiverFields {
    /// Receiver name, unique in its project.
    #[arg(long)]
    name: Option<String>,
    /// Service to scale (see `hookd services`).
    #[arg(long)]
    service: Option<String>,
    /// up or down.
    #[arg(long)]
    action: Option<String>,
    /// Containers added or removed per trigger.
    #[arg(long)]
    amount: Option<u32>,
    /// Lowest scale this receiver scales down to.
    #[arg(long)]
    min: Option<u32>,
    /// Highest scale this receiver scales up to.
    #[arg(long)]
    max: Option<u32>,
    /// At a bound: clamp (stop at it) or refuse (Rancher's 400, nothing changes).
    #[arg(long)]
    at_bound: Option<String>,
    /// What a resolved Alertmanager notification does: ignore or reverse (undo one step).
    #[arg(long)]
    on_resolved: Option<String>,
    /// Seconds after the service's last change before scaling up (unset: 0 for alerts).
    #[arg(long)]
    cooldown_up: Option<u32>,
    /// Seconds after the service's last change before scaling down (unset: 300 for alerts).
    #[arg(long)]
    cooldown_down: Option<u32>,
    /// Seconds in which the same notification is a duplicate.
    #[arg(long)]
    dedup_seconds: Option<u32>,
    /// Scale even though an autoscaler (a Kubernetes HPA) sets the service's scale.
    #[arg(long)]
    allow_autoscaler: Option<bool>,
    /// Allow --min 0: the service may be scaled to zero (woken by the next alert).
    #[arg(long)]
    allow_zero: Option<bool>,
    /// step (±amount per trigger) or target (the replica count the alerts carry).
    #[arg(long)]
    mode: Option<String>,
    /// Target mode: where each firing alert carries the count, `label:NAME` or `annotation:NAME`.
    #[arg(long, value_parser = target_from)]
    target_from: Option<Value>,
    /// Target mode: most replicas one decision adds, a count (4) or a percentage (50%).
    #[arg(long)]
    max_step_up: Option<String>,
    /// Target mode: most replicas one decision removes, a count or a percentage.
    #[arg(long)]
    max_step_down: Option<String>,
    /// Target mode: a scale-down goes no lower than the highest recommendation of this window.
    #[arg(long)]
    stabilization_seconds: Option<u32>,
    /// Enable (true) or disable (false) the receiver.
    #[arg(long)]
    enabled: Option<bool>,
    /// Require proof from the sender: bearer, header:NAME, github, standardWebhooks, or none.
    #[arg(long, value_parser = sender_check)]
    sender_verification: Option<Value>,
    /// The file holding the sender's secret (`-` for standard input; not a flag's value, which
    /// shell history and `ps` would show). On an update, leave it out to keep the stored one.
    #[arg(long, requires = "sender_verification")]
    sender_secret_file: Option<PathBuf>,
    /// A JSON body in the API's shape (`-` for standard input); flags override its fields.
    #[arg(long, short)]
    file: Option<PathBuf>,
}

impl ReceiverFields {
    /// The body for an update: the stored receiver's config with the given fields laid over it,
    /// so `--amount 2` alone changes only the amount.
    fn merged_over(&self, current: &Value) -> anyhow::Result<Value> {
        let mut body = self.body()?;
        let driver = current["driver"].as_str().unwrap_or_default();
        let key = format!("{driver}Config");
        if let Some(Value::Object(stored)) = current.get(&key) {
            let mut config = stored.clone();
            // Back to step mode: the target settings go with the mode.
            if self.mode.as_deref() == Some("step") {
                for member in ["targetFrom", "maxStepUp", "maxStepDown", "stabilizationSeconds"] {
                    config.remove(member);
                }
            }
            if let Some(Value::Object(given)) = body.get(&key) {
                config.extend(given.clone());
            }
            body[key.as_str()] = Value::Object(config);
        }
        Ok(body)
    }

    fn body(&self) -> anyhow::Result<Value> {
        let mut body = match &self.file {
            Some(path) if path.as_os_str() == "-" => {
                serde_json::from_reader(std::io::stdin()).context("reading JSON from stdin")?
            }
            Some(path) => {
                serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
                    .with_context(|| format!("{} is not JSON", path.display()))?
            }
            None => json!({}),
        };
        let Value::Object(object) = &mut body else { bail!("the JSON body must be an object") };
        if let Some(name) = &self.name {
            object.insert("name".into(), json!(name));
        }
        if let Some(enabled) = self.enabled {
            object.insert("enabled".into(), json!(enabled));
        }
        if let Some(check) = &self.sender_verification {
            let mut check = check.clone();
            if let Value::Object(c) = &mut check {
                if let Some(path) = &self.sender_secret_file {
                    if path.as_os_str() == "-" && self.file.as_deref().is_some_and(|f| f.as_os_str() == "-") {
                        bail!("--file - and --sender-secret-file - both read standard input: give one a file");
                    }
                    c.insert("secret".into(), json!(read_secret(path)?));
                }
            } else if self.sender_secret_file.is_some() {
                bail!("--sender-verification none takes no secret: leave out --sender-secret-file");
            }
            object.insert("senderVerification".into(), check);
        }
        let scale = [
            ("serviceId", self.service.as_ref().map(|v| json!(v))),
            ("action", self.action.as_ref().map(|v| json!(v))),
            ("amount", self.amount.map(|v| json!(v))),
            ("min", self.min.map(|v| json!(v))),
            ("max", self.max.map(|v| json!(v))),
            ("atBound", self.at_bound.as_ref().map(|v| json!(v))),
            ("onResolved", self.on_resolved.as_ref().map(|v| json!(v))),
            ("cooldownUpSeconds", self.cooldown_up.map(|v| json!(v))),
            ("cooldownDownSeconds", self.cooldown_down.map(|v| json!(v))),
            ("dedupSeconds", self.dedup_seconds.map(|v| json!(v))),
            ("allowAutoscaler", self.allow_autoscaler.map(|v| json!(v))),
            ("allowZero", self.allow_zero.map(|v| json!(v))),
            ("mode", self.mode.as_ref().map(|v| json!(v))),
            ("targetFrom", self.target_from.clone()),
            ("maxStepUp", self.max_step_up.as_ref().map(|v| json!(v))),
            ("maxStepDown", self.max_step_down.as_ref().map(|v| json!(v))),
            ("stabilizationSeconds", self.stabilization_seconds.map(|v| json!(v))),
        ];
        if scale.iter().any(|(_, v)| v.is_some()) {
            object.entry("driver").or_insert(json!("scaleService"));
            let config = object.entry("scaleServiceConfig").or_insert(json!({}));
            for (key, value) in scale {
                if let Some(value) = value {
                    config[key] = value;
                }
            }
        }
        Ok(body)
    }
}

/// A secret from a file (`-`: standard input), without its line ending.
fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    let secret = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the secret from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    Ok(secret.trim_end_matches(['\n', '\r']).to_owned())
}

/// `bearer`, `header:NAME`, `github`, `standardWebhooks` → the API's check; `none` → null.
fn sender_check(text: &str) -> Result<Value, String> {
    match text.split_once(':') {
        Some(("header", name)) if !name.is_empty() => Ok(json!({"type": "header", "header": name})),
        None if text == "none" => Ok(Value::Null),
        None if ["bearer", "github", "standardWebhooks"].contains(&text) => Ok(json!({"type": text})),
        _ => Err(format!("{text:?}: write bearer, header:NAME, github, standardWebhooks or none")),
    }
}

/// `label:NAME` or `annotation:NAME` → `{"label": NAME}`.
fn target_from(text: &str) -> Result<Value, String> {
    match text.split_once(':') {
        Some((kind @ ("label" | "annotation"), name)) if !name.is_empty() => Ok(json!({ kind: name })),
        _ => Err(format!("{text:?}: write label:NAME or annotation:NAME")),
    }
}

#[derive(Args)]
pub struct TriggerArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// A trigger URL, or a receiver (id, or name in --project) whose URL is looked up with
    /// the API token and posted to on HOOKD_URL.
    target: String,
    /// The project whose receiver a name means (ids and URLs need none).
    #[arg(long, default_value = "default")]
    project: String,
    /// A JSON body to send (for example an Alertmanager payload); `-` for standard input.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Decide and record, but act on nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub struct ExecutionsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    receiver: ReceiverRef,
    /// How many executions to show, newest first.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Print the JSON the API answered.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The project (`default` unless you configured others).
    #[arg(long, default_value = "default")]
    project: String,
    /// Print the JSON the API answered.
    #[arg(long)]
    json: bool,
}

pub(super) struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An HTTP client that speaks https with the system's trust store, plus `--cacert`.
fn http_client(args: &ClientArgs) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = &args.cacert {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client")
}

impl Api {
    pub(super) fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(args)?,
            base: args.url.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let token = self.token.as_deref().context("set HOOKD_TOKEN (or --token) to an API token")?;
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|e| unreachable(e, &format!("hookd at {}", self.base)))
    }

    /// `/v1-webhooks/receivers/{id}` for a receiver named by its id, or by its name in
    /// `project` (ids are long; people remember names).
    pub(super) async fn receiver_path(&self, target: &str, project: &str) -> anyhow::Result<String> {
        let is_id = target.len() == 32 && target.bytes().all(|b| b.is_ascii_hexdigit());
        if is_id {
            return Ok(format!("/v1-webhooks/receivers/{target}"));
        }
        let mut path = format!("/v1-webhooks/receivers?projectId={project}&limit=1000");
        loop {
            let page = self.call(reqwest::Method::GET, &path, None).await?;
            let found = page["data"].as_array().into_iter().flatten().find(|r| r["name"] == target);
            if let Some(r) = found {
                return Ok(format!("/v1-webhooks/receivers/{}", str_of(r, "id")));
            }
            match page["pagination"]["next"].as_str() {
                Some(next) => path = next.strip_prefix(&self.base).unwrap_or(next).to_owned(),
                None => bail!("there is no receiver named {target:?} in project {project} (ids are 32 hex digits)"),
            }
        }
    }

    pub(super) async fn path_of(&self, receiver: &ReceiverRef) -> anyhow::Result<String> {
        self.receiver_path(&receiver.id, &receiver.project).await
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        answer(self.send(method, path, body).await?).await
    }
}

/// Why a request got no answer, naming what was asked (the trigger URL's origin only: its
/// query holds the token) and each cause, down to the system's.
fn unreachable(error: reqwest::Error, what: &str) -> anyhow::Error {
    let mut causes = vec![];
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let kind = if error.is_timeout() { "timed out" } else { "failed" };
    anyhow::anyhow!("could not reach {what}: the request {kind}: {}", causes.join(": "))
}

/// `scheme://host:port` of a URL, without the path and query that may hold a token.
fn origin(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| "the trigger URL".to_owned(), |u| u.origin().ascii_serialization())
}

async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let text = response.text().await?;
    let parsed = if text.is_empty() { Ok(Value::Null) } else { serde_json::from_str(&text) };
    let value = match parsed {
        Ok(value) => value,
        // A 2xx that is not JSON: something else answers at that URL (a proxy, another server).
        Err(_) if status.is_success() => {
            let kind = content_type.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("no content type");
            bail!("the server answered {status} with a body that is not JSON ({kind}): is HOOKD_URL a hookd?")
        }
        Err(_) => Value::String(text),
    };
    if status.is_success() {
        return Ok(value);
    }
    match (value.get("message").and_then(Value::as_str), value.get("code").and_then(Value::as_str)) {
        (Some(message), Some(code)) => bail!("{message} ({code}, HTTP {})", status.as_u16()),
        _ => bail!("HTTP {status}: {value}"),
    }
}

pub(super) fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("serializable"));
}

pub(super) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn print_receiver(r: &Value) {
    println!("id:       {}", str_of(r, "id"));
    println!("name:     {}", str_of(r, "name"));
    println!("project:  {}", str_of(r, "projectId"));
    println!("driver:   {}", str_of(r, "driver"));
    println!("state:    {}", str_of(r, "state"));
    println!("detail:   {}", str_of(r, "description"));
    let config = &r[format!("{}Config", str_of(r, "driver")).as_str()];
    let shown = |v: &Value| match v {
        Value::Null => "unset".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let options: Vec<String> = config
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !["type", "serviceId", "action", "amount", "min", "max"].contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={}", shown(v)))
        .collect();
    println!("options:  {}", options.join(" "));
    let sender = &r["senderVerification"];
    let sender = match (sender["type"].as_str(), sender["header"].as_str()) {
        (Some(kind), Some(header)) => format!("{kind} ({header})"),
        (Some(kind), None) => kind.to_owned(),
        _ => "none".to_owned(),
    };
    println!("sender:   {sender}");
    println!("url:      {}", str_of(r, "url"));
}

pub async fn receivers(cmd: ReceiversCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        ReceiversCommand::List { client, project, json } => {
            let api = Api::new(&client)?;
            let mut all = Vec::new();
            let mut path = format!("/v1-webhooks/receivers?projectId={project}");
            loop {
                let page = api.call(Method::GET, &path, None).await?;
                all.extend(page["data"].as_array().cloned().unwrap_or_default());
                match page["pagination"]["next"].as_str() {
                    Some(next) => path = next.strip_prefix(&api.base).unwrap_or(next).to_owned(),
                    None => break,
                }
            }
            if json {
                print_json(&Value::Array(all));
            } else {
                println!("{:<32}  {:<24}  {:<8}  DETAIL", "ID", "NAME", "STATE");
                for r in &all {
                    println!(
                        "{:<32}  {:<24}  {:<8}  {}",
                        str_of(r, "id"),
                        str_of(r, "name"),
                        str_of(r, "state"),
                        str_of(r, "description")
                    );
                }
            }
        }
        ReceiversCommand::Get { client, receiver, json } => {
            let api = Api::new(&client)?;
            let r = api.call(Method::GET, &api.path_of(&receiver).await?, None).await?;
            if json {
                print_json(&r)
            } else {
                print_receiver(&r)
            }
        }
        ReceiversCommand::Create { client, project, fields } => {
            let r = Api::new(&client)?
                .call(Method::POST, &format!("/v1-webhooks/receivers?projectId={project}"), Some(&fields.body()?))
                .await?;
            print_receiver(&r);
        }
        ReceiversCommand::Update { client, receiver, fields } => {
            let api = Api::new(&client)?;
            let path = api.path_of(&receiver).await?;
            let current = api.call(Method::GET, &path, None).await?;
            let r = api.call(Method::PUT, &path, Some(&fields.merged_over(&current)?)).await?;
            print_receiver(&r);
        }
        ReceiversCommand::Clone { client, receiver, name, sender_secret_file } => {
            let api = Api::new(&client)?;
            let original = api.call(Method::GET, &api.path_of(&receiver).await?, None).await?;
            let driver = str_of(&original, "driver");
            let config_key = format!("{driver}Config");
            let mut body =
                json!({ "name": name, "driver": driver, config_key.as_str(): original[config_key.as_str()] });
            // The copy keeps the sender check; its secret is never shown, so it is given again.
            if let Value::Object(mut check) = original["senderVerification"].clone() {
                let path = sender_secret_file
                    .as_deref()
                    .context("this receiver has a sender check: give the copy's secret with --sender-secret-file")?;
                check.insert("secret".into(), json!(read_secret(path)?));
                body["senderVerification"] = Value::Object(check);
            }
            let project = str_of(&original, "projectId");
            let r = api.call(Method::POST, &format!("/v1-webhooks/receivers?projectId={project}"), Some(&body)).await?;
            print_receiver(&r);
        }
        ReceiversCommand::AlertmanagerConfig { client, receiver } => {
            let api = Api::new(&client)?;
            let path = format!("{}/alertmanager-config", api.path_of(&receiver).await?);
            let response = api.send(Method::GET, &path, None).await?;
            if !response.status().is_success() {
                answer(response).await?;
                unreachable!("answer fails on an error status");
            }
            print!("{}", response.text().await?);
        }
        ReceiversCommand::Delete { client, receiver } => {
            let api = Api::new(&client)?;
            api.call(Method::DELETE, &api.path_of(&receiver).await?, None).await?;
            println!("deleted receiver {}", receiver.id);
        }
    }
    Ok(())
}

pub async fn trigger(args: TriggerArgs) -> anyhow::Result<()> {
    let url = if args.target.starts_with("http://") || args.target.starts_with("https://") {
        args.target.clone()
    } else {
        let api = Api::new(&args.client)?;
        let r = api.call(reqwest::Method::GET, &api.receiver_path(&args.target, &args.project).await?, None).await?;
        let url = str_of(&r, "url");
        let Some((_, query)) = url.split_once('?') else {
            bail!("this API token cannot see trigger URLs (read-only)");
        };
        // The same endpoint on the hookd this command talks to (HOOKD_URL), not the public
        // URL, which may not be reachable from here.
        format!("{}/v1-webhooks/endpoint?{query}", api.base)
    };
    let url = if args.dry_run { format!("{url}&dryRun=1") } else { url };
    let mut request = http_client(&args.client)?.post(&url);
    if let Some(path) = &args.file {
        let body = if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            buf
        } else {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        };
        request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    }
    // The URL holds the token: errors name its origin only.
    let response = request
        .send()
        .await
        .map_err(|e| unreachable(e.without_url(), &format!("the trigger URL at {}", origin(&url))))?;
    let value = answer(response).await?;
    let range = match (value.get("from").and_then(Value::as_u64), value.get("to").and_then(Value::as_u64)) {
        (Some(from), Some(to)) => format!(" {from} -> {to}"),
        _ => String::new(),
    };
    let dry = if value["dryRun"] == true { " [dry run]" } else { "" };
    let detail = match str_of(&value, "detail") {
        "" => String::new(),
        d => format!(" ({d})"),
    };
    println!(
        "{}{range}: {}{detail}{dry} (execution {})",
        str_of(&value, "outcome"),
        str_of(&value, "reason"),
        str_of(&value, "execution")
    );
    Ok(())
}

/// One page of a collection; with `json`, printed raw and `None` returned.
async fn fetch_list(client: &ClientArgs, path: &str, json: bool) -> anyhow::Result<Option<Vec<Value>>> {
    let page = Api::new(client)?.call(reqwest::Method::GET, path, None).await?;
    let data = page["data"].as_array().cloned().unwrap_or_default();
    if json {
        print_json(&Value::Array(data));
        return Ok(None);
    }
    Ok(Some(data))
}

pub async fn executions(args: ExecutionsArgs) -> anyhow::Result<()> {
    let receiver = Api::new(&args.client)?.path_of(&args.receiver).await?;
    let path = format!("{receiver}/executions?limit={}", args.limit);
    let Some(data) = fetch_list(&args.client, &path, args.json).await? else { return Ok(()) };
    println!("{:<24}  {:<9}  {:<9}  {:<40}  {:<24}  SOURCE", "TIME", "OUTCOME", "SCALE", "REASON", "ALERTS");
    for e in &data {
        let scale = match (e["from"].as_u64(), e["to"].as_u64(), e["job"].as_str()) {
            (Some(f), Some(t), _) => format!("{f} -> {t}"),
            (_, _, Some(_)) => "job".into(),
            _ => "-".into(),
        };
        let mut alerts: Vec<&str> =
            e["alerts"].as_array().into_iter().flatten().filter_map(|a| a["name"].as_str()).collect();
        alerts.dedup();
        let alerts = if alerts.is_empty() { "-".to_owned() } else { alerts.join(",") };
        println!(
            "{:<24}  {:<9}  {:<9}  {:<40}  {:<24}  {}",
            str_of(e, "at"),
            str_of(e, "outcome"),
            scale,
            str_of(e, "reason"),
            alerts,
            str_of(e, "source")
        );
    }
    Ok(())
}

/// `k=v, k=v` of a JSON object of strings.
fn pairs(labels: &Value) -> String {
    let pairs: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.join(", ")
}

/// `hookd pools`: each host pool of the project, then its hosts.
pub async fn pools(args: ServicesArgs) -> anyhow::Result<()> {
    let path = format!("/v1-webhooks/pools?projectId={}", args.project);
    let Some(data) = fetch_list(&args.client, &path, args.json).await? else { return Ok(()) };
    for pool in &data {
        println!(
            "pool {}  ({}, {}, {}..{} hosts)",
            str_of(pool, "name"),
            str_of(pool, "provider"),
            pairs(&pool["selector"]),
            pool["min"],
            pool["max"]
        );
        if let Some(error) = pool["error"].as_str() {
            println!("  cannot list its hosts: {error}");
        }
        for host in pool["hosts"].as_array().into_iter().flatten() {
            let health = if host["healthy"] == true { "healthy" } else { "unhealthy" };
            println!(
                "  {:<24}  {:<9}  {:<24}  {}",
                str_of(host, "name"),
                health,
                str_of(host, "created"),
                pairs(&host["labels"])
            );
        }
    }
    Ok(())
}

pub async fn services(args: ServicesArgs) -> anyhow::Result<()> {
    let path = format!("/v1-webhooks/services?projectId={}", args.project);
    let Some(data) = fetch_list(&args.client, &path, args.json).await? else { return Ok(()) };
    println!("{:<24}  {:>5}  {:>7}  {:<28}  LAST ERROR", "SERVICE", "SCALE", "RUNNING", "IMAGE");
    for s in &data {
        println!(
            "{:<24}  {:>5}  {:>7}  {:<28}  {}",
            str_of(s, "name"),
            s["scale"].as_u64().unwrap_or(0),
            s["running"].as_u64().unwrap_or(0),
            str_of(s, "image"),
            str_of(s, "lastError")
        );
    }
    Ok(())
}
