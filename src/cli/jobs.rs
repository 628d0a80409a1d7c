//! `hookd jobs`: long actions (upgrades) and their progress.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{
    client::{print_json, str_of, Api, ReceiverRef},
    ClientArgs,
};

#[derive(Subcommand)]
pub enum JobsCommand {
    /// A receiver's jobs, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        receiver: ReceiverRef,
        /// Print the JSON the API answered.
        #[arg(long)]
        json: bool,
    },
    /// One job and each service's progress.
    Get(JobArgs),
    /// Follows a job until it finishes; exits non-zero if it failed.
    Watch(JobArgs),
}

#[derive(Args)]
pub struct JobArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job's id (a trigger's answer names it).
    job: String,
    /// Print the JSON the API answered.
    #[arg(long)]
    json: bool,
}

fn print_job(job: &Value) {
    if let Some(hosts) = job["hosts"].as_object() {
        let pool = hosts["pool"].as_str().unwrap_or_default();
        println!("job {}  {}  (hosts of pool {pool})", str_of(job, "id"), str_of(job, "state"));
        for h in hosts["steps"].as_array().into_iter().flatten() {
            println!(
                "  {:<24}  {:<6}  {:<8}  {}",
                str_of(h, "name"),
                str_of(h, "action"),
                str_of(h, "state"),
                str_of(h, "error")
            );
        }
        if let Some(error) = job["error"].as_str() {
            println!("  failed: {error}");
        }
        return;
    }
    println!("job {}  {}  ({} replicas at a time)", str_of(job, "id"), str_of(job, "state"), job["batchSize"]);
    for s in job["services"].as_array().into_iter().flatten() {
        println!(
            "  {:<24}  {:<8}  {}/{}  {} -> {}  {}",
            str_of(s, "service"),
            str_of(s, "state"),
            s["updated"].as_u64().unwrap_or(0),
            s["total"].as_u64().unwrap_or(0),
            str_of(s, "from"),
            str_of(s, "image"),
            str_of(s, "error")
        );
    }
    if let Some(error) = job["error"].as_str() {
        println!("  failed: {error}");
    }
}

pub async fn run(command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { client, receiver, json } => {
            let api = Api::new(&client)?;
            let path = format!("{}/jobs", api.path_of(&receiver).await?);
            let page = api.call(reqwest::Method::GET, &path, None).await?;
            if json {
                print_json(&page["data"]);
                return Ok(());
            }
            println!("{:<32}  {:<9}  {:<24}  SERVICES/HOSTS", "JOB", "STATE", "CREATED");
            for job in page["data"].as_array().into_iter().flatten() {
                let services = job["services"].as_array().map_or(0, Vec::len)
                    + job["hosts"]["steps"].as_array().map_or(0, Vec::len);
                println!(
                    "{:<32}  {:<9}  {:<24}  {services}",
                    str_of(job, "id"),
                    str_of(job, "state"),
                    str_of(job, "created")
                );
            }
            Ok(())
        }
        JobsCommand::Get(args) => {
            let job = Api::new(&args.client)?
                .call(reqwest::Method::GET, &format!("/v1-webhooks/jobs/{}", args.job), None)
                .await?;
            if args.json {
                print_json(&job);
            } else {
                print_job(&job);
            }
            Ok(())
        }
        JobsCommand::Watch(args) => {
            let api = Api::new(&args.client)?;
            let mut last = Value::Null;
            let mut unreachable = 0;
            loop {
                let job = match api.call(reqwest::Method::GET, &format!("/v1-webhooks/jobs/{}", args.job), None).await {
                    Ok(job) => job,
                    // hookd restarting: the job goes on, so keep watching for a while.
                    Err(e) if e.to_string().starts_with("could not reach") && unreachable < 60 => {
                        unreachable += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                unreachable = 0;
                let moved = job["services"] != last["services"] || job["hosts"] != last["hosts"];
                if moved || job["state"] != last["state"] {
                    if args.json {
                        print_json(&job);
                    } else {
                        print_job(&job);
                    }
                }
                match job["state"].as_str() {
                    Some("succeeded") => return Ok(()),
                    Some("failed") => anyhow::bail!("the job failed: {}", str_of(&job, "error")),
                    _ => {}
                }
                last = job;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
