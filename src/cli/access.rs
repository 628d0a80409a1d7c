//! `hookd tokens`, `hookd projects`, `hookd keys` and `hookd audit`: who may do what.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::{
    client::{print_json, str_of, Api},
    ClientArgs,
};

#[derive(Subcommand)]
pub enum TokensCommand {
    /// The API tokens you manage (never their secrets).
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this project's tokens (owners of every project see every token by default).
        #[arg(long)]
        project: Option<String>,
        /// Print the JSON the API answered.
        #[arg(long)]
        json: bool,
    },
    /// Create an API token and print its secret, this once.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// A name for the audit log (who did what).
        #[arg(long)]
        name: String,
        /// owner (tokens, receivers), member (receivers, history) or read-only (no trigger URLs).
        #[arg(long)]
        role: String,
        /// The project it acts in; left out: yours, or every project for an owner of every project.
        #[arg(long)]
        project: Option<String>,
        /// Refused after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token by id: it, and the UI sessions opened with it, are refused at once.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        /// The token's id (`hookd tokens list`).
        id: String,
    },
}

#[derive(Subcommand)]
pub enum ProjectsCommand {
    /// The projects you can see and their backends.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a project bound to a configured backend (owners of every project).
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// The project's name: 1 to 63 of a-z, 0-9, '-' and '_'.
        name: String,
        /// The backend's name in the config file.
        #[arg(long)]
        backend: String,
    },
    /// Delete an empty project made with `create`, and its tokens.
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// The project to delete.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// The keys that sign trigger URLs, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a new key current; URLs signed with older keys keep working until `retire`.
    Rotate {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Retire every key but the current one: URLs they signed stop working.
    Retire {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only this project's entries.
    #[arg(long)]
    project: Option<String>,
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print the JSON the API answered.
    #[arg(long)]
    json: bool,
}

fn print_tokens(page: &Value) {
    println!("{:<32}  {:<20}  {:<9}  {:<12}  EXPIRES", "ID", "NAME", "ROLE", "PROJECT");
    for t in page["data"].as_array().into_iter().flatten() {
        let project = t["projectId"].as_str().unwrap_or("(all)");
        let expires = match (t["expires"].as_str(), t["expired"].as_bool()) {
            (Some(at), Some(true)) => format!("{at} (expired)"),
            (Some(at), _) => at.to_owned(),
            (None, _) => "never".to_owned(),
        };
        let you = if t["current"] == true { "  (you)" } else { "" };
        println!(
            "{:<32}  {:<20}  {:<9}  {project:<12}  {expires}{you}",
            str_of(t, "id"),
            str_of(t, "name"),
            str_of(t, "role")
        );
    }
}

fn print_keys(page: &Value) {
    println!("{:<10}  {:<26}  STATE", "KEY", "CREATED");
    for k in page["data"].as_array().into_iter().flatten() {
        let state = match (k["current"] == true, k["retired"].as_str()) {
            (true, _) => "current".to_owned(),
            (false, Some(at)) => format!("retired {at}"),
            (false, None) => "verifies older URLs".to_owned(),
        };
        println!("{:<10}  {:<26}  {state}", str_of(k, "id"), str_of(k, "created"));
    }
}

pub async fn tokens(cmd: TokensCommand) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::List { client, project, json } => {
            let path = match project {
                Some(p) => format!("/v1-webhooks/tokens?projectId={p}"),
                None => "/v1-webhooks/tokens".to_owned(),
            };
            let page = Api::new(&client)?.call(Method::GET, &path, None).await?;
            if json {
                print_json(&page["data"]);
            } else {
                print_tokens(&page);
            }
        }
        TokensCommand::Create { client, name, role, project, expires_in_days } => {
            let body = json!({"name": name, "role": role, "projectId": project, "expiresInDays": expires_in_days});
            let made = Api::new(&client)?.call(Method::POST, "/v1-webhooks/tokens", Some(&body)).await?;
            println!("id:      {}", str_of(&made, "id"));
            println!("role:    {} of {}", str_of(&made, "role"), made["projectId"].as_str().unwrap_or("every project"));
            println!("expires: {}", made["expires"].as_str().unwrap_or("never"));
            println!("token:   {}", str_of(&made, "token"));
            println!("\nThe token is shown this once; hookd keeps only its hash.");
        }
        TokensCommand::Revoke { client, id } => {
            Api::new(&client)?.call(Method::DELETE, &format!("/v1-webhooks/tokens/{id}"), None).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn projects(cmd: ProjectsCommand) -> anyhow::Result<()> {
    match cmd {
        ProjectsCommand::List { client } => {
            let page = Api::new(&client)?.call(Method::GET, "/v1-webhooks/projects", None).await?;
            println!("{:<24}  {:<16}  FROM", "PROJECT", "BACKEND");
            for p in page["data"].as_array().into_iter().flatten() {
                println!("{:<24}  {:<16}  {}", str_of(p, "name"), str_of(p, "backend"), str_of(p, "origin"));
            }
        }
        ProjectsCommand::Create { client, name, backend } => {
            let body = json!({"name": name, "backend": backend});
            Api::new(&client)?.call(Method::POST, "/v1-webhooks/projects", Some(&body)).await?;
            println!("created project {name} on backend {backend}");
        }
        ProjectsCommand::Delete { client, name } => {
            Api::new(&client)?.call(Method::DELETE, &format!("/v1-webhooks/projects/{name}"), None).await?;
            println!("deleted project {name}");
        }
    }
    Ok(())
}

pub async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    let (client, method, path) = match &cmd {
        KeysCommand::List { client } => (client, Method::GET, "/v1-webhooks/keys"),
        KeysCommand::Rotate { client } => (client, Method::POST, "/v1-webhooks/keys?action=rotate"),
        KeysCommand::Retire { client } => (client, Method::POST, "/v1-webhooks/keys?action=retire"),
    };
    print_keys(&Api::new(client)?.call(method, path, None).await?);
    Ok(())
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1-webhooks/audit?limit={}", args.limit);
    if let Some(p) = &args.project {
        path.push_str(&format!("&projectId={p}"));
    }
    let page = Api::new(&args.client)?.call(Method::GET, &path, None).await?;
    if args.json {
        print_json(&page["data"]);
        return Ok(());
    }
    println!("{:<24}  {:<16}  {:<10}  {:<22}  WHAT", "AT", "WHO", "PROJECT", "ACTION");
    for e in page["data"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<16}  {:<10}  {:<22}  {} {}",
            str_of(e, "at"),
            str_of(e, "actor"),
            e["projectId"].as_str().unwrap_or("-"),
            str_of(e, "action"),
            str_of(e, "target"),
            str_of(e, "detail")
        );
    }
    Ok(())
}
