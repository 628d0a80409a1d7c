//! The `hookd` command line: `serve`, `demo`, and client commands that talk to the REST API.

mod access;
mod client;
mod demo;
mod jobs;
mod serve;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// hookd: receiver hooks that turn an HTTP POST into an action on a container orchestrator.
///
/// Run `hookd demo` to try it with a sample service, or `hookd serve` with a config file.
/// The client commands talk to a running hookd at HOOKD_URL with the API token HOOKD_TOKEN.
#[derive(Parser)]
#[command(name = "hookd", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hookd server (embedded defaults when no config is given).
    Serve(serve::ServeArgs),
    /// Run hookd with a sample local service and two receivers, and print how to try them.
    Demo(demo::DemoArgs),
    /// Manage receiver hooks.
    #[command(subcommand)]
    Receivers(Box<client::ReceiversCommand>),
    /// POST to a trigger URL (or a receiver's, by id) and print the decision.
    Trigger(client::TriggerArgs),
    /// Show a receiver's execution history, newest first.
    Executions(client::ExecutionsArgs),
    /// List the services of a project's backend with their current scale.
    Services(client::ServicesArgs),
    /// List a project's host pools and their hosts (scaleHost).
    Pools(client::ServicesArgs),
    /// Follow long actions (upgrades): list, get, watch.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// API tokens: list, create (the secret is shown once), revoke.
    #[command(subcommand)]
    Tokens(access::TokensCommand),
    /// Projects: list, create (bound to a configured backend), delete.
    #[command(subcommand)]
    Projects(access::ProjectsCommand),
    /// The keys that sign trigger URLs: list, rotate, retire.
    #[command(subcommand)]
    Keys(access::KeysCommand),
    /// Who changed what, newest first.
    Audit(access::AuditArgs),
    /// Print a shell completion script (for example: hookd completions bash >
    /// /usr/local/share/bash-completion/completions/hookd).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, hookd(1), in roff; with --dir, write it and one page per command
    /// (hookd-receivers-create.1, …) there (for example: hookd man --dir /usr/local/share/man/man1).
    Man {
        /// Write hookd.1 and a page per command into this directory instead of printing hookd.1.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// A tiny worker process used by `hookd demo` as its sample service.
    #[command(hide = true)]
    SampleWorker,
    /// Runs one replica of a local service and everything it starts (hookd starts these).
    #[command(hide = true)]
    KeepReplica(crate::backend::local::keeper::KeeperArgs),
}

/// Where the client commands find hookd.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Base URL of the hookd API.
    #[arg(long = "url", env = "HOOKD_URL", hide_env_values = true, default_value = "http://127.0.0.1:8085")]
    pub url: String,
    /// API token (printed by hookd at its first start).
    #[arg(long = "token", env = "HOOKD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of certificate authorities to trust for https URLs, beside the system's.
    #[arg(long = "cacert", env = "HOOKD_CACERT", hide_env_values = true)]
    pub cacert: Option<std::path::PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        // A keeper runs one per replica: no async runtime, no threads.
        Command::KeepReplica(args) => return crate::backend::local::keeper::run(args),
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(async {
        match command {
            Command::Serve(args) => serve::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Receivers(cmd) => client::receivers(*cmd).await,
            Command::Trigger(args) => client::trigger(args).await,
            Command::Executions(args) => client::executions(args).await,
            Command::Services(args) => client::services(args).await,
            Command::Pools(args) => client::pools(args).await,
            Command::Jobs(cmd) => jobs::run(cmd).await,
            Command::Tokens(cmd) => access::tokens(cmd).await,
            Command::Projects(cmd) => access::projects(cmd).await,
            Command::Keys(cmd) => access::keys(cmd).await,
            Command::Audit(args) => access::audit(args).await,
            Command::Completions { shell } => {
                // Into memory first: clap_complete panics on a closed pipe (`| head`).
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "hookd", &mut script);
                std::io::Write::write_all(&mut std::io::stdout(), &script).map_err(Into::into)
            }
            Command::Man { dir: None } => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut std::io::stdout())
                .map_err(Into::into),
            Command::Man { dir: Some(dir) } => {
                std::fs::create_dir_all(&dir).map_err(anyhow::Error::from)?;
                let command = <Cli as clap::CommandFactory>::command();
                clap_mangen::generate_to(command, &dir)
                    .map_err(|e| anyhow::anyhow!("writing the man pages into {}: {e}", dir.display()))
            }
            Command::SampleWorker => demo::sample_worker().await,
            Command::KeepReplica(_) => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command and every option says what it is for in `--help` (issue 13).
    #[test]
    fn every_command_and_option_is_described() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if !arg.is_hide_set() && !["help", "version"].contains(&id) && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(here.clone());
                }
                walk(sub, &here, missing);
            }
        }
        let command = super::Cli::command();
        command.clone().debug_assert();
        let mut missing = vec![];
        walk(&command, "hookd", &mut missing);
        assert!(missing.is_empty(), "undescribed in --help: {missing:#?}");
    }
}
