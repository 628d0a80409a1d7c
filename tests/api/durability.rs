//! Kill -9 under load loses no acknowledged trigger (issue 5): every trigger answered 2xx is
//! in the history when hookd comes back, and so are the receivers.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::{json, Value};

use crate::helpers::eventually;

struct Server {
    child: std::process::Child,
    base: String,
}

fn start(config: &std::path::Path, token: &str, port: u16) -> Server {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKD_ADMIN_TOKEN", token)
        .env("HOOKD_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Server { child, base: format!("http://127.0.0.1:{port}") }
}

async fn ready(http: &reqwest::Client, base: &str) {
    let url = format!("{base}/readyz");
    assert!(eventually(Duration::from_secs(20), || async { http.get(&url).send().await.is_ok() }).await);
}

async fn history(http: &reqwest::Client, base: &str, token: &str, receiver: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = format!("/v1-webhooks/receivers/{receiver}/executions?limit=1000");
    loop {
        let page: Value =
            http.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        ids.extend(page["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        match page["pagination"]["next"].as_str() {
            Some(next) => path = next.strip_prefix(base).unwrap().to_owned(),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_5_kill_9_under_load_loses_no_acknowledged_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::components::free_port();
    let config = dir.path().join("hookd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[[backend]]\nname = \"local\"\nkind = \"local\"\n\
             [[backend.service]]\nname = \"web\"\ncommand = \"sleep\"\nargs = [\"100000\"]\nscale = 2\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let token = hookd::auth::generate_token().expose().to_owned();
    let http = reqwest::Client::new();
    let mut server = start(&config, &token, port);
    ready(&http, &server.base).await;

    let mut receivers = Vec::new();
    for action in ["up", "down"] {
        let r: Value = http
            .post(format!("{}/v1-webhooks/receivers", server.base))
            .bearer_auth(&token)
            .json(&json!({"name": action, "driver": "scaleService", "scaleServiceConfig":
                {"serviceId": "web", "action": action, "min": 1, "max": 100, "cooldownDownSeconds": 0}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        receivers.push((r["id"].as_str().unwrap().to_owned(), r["url"].as_str().unwrap().to_owned()));
    }

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (http, acked, stop) = (http.clone(), acked.clone(), stop.clone());
            let url = receivers[w % 2].1.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(response) = http.post(&url).send().await else { return };
                    if response.status().is_success() {
                        if let Ok(answer) = response.json::<Value>().await {
                            acked.lock().unwrap().push(answer["execution"].as_str().unwrap().to_owned());
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().unwrap(); // SIGKILL, mid-load
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "the load ran: {} acknowledged triggers", acked.len());

    let mut server = start(&config, &token, port);
    ready(&http, &server.base).await;
    let mut recorded = std::collections::HashSet::new();
    for (id, _) in &receivers {
        recorded.extend(history(&http, &server.base, &token, id).await);
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !recorded.contains(*id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged triggers are missing from the history", lost.len(), acked.len());
    assert!(recorded.len() >= acked.len());
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
