//! A small load driver for `bench/run.sh`: sends exactly N POSTs over C keep-alive
//! connections, round-robin over a list of requests, and reads every answer, so the count of
//! 2xx answers is exact (wrk counts only the answers it read before its timer stopped).
//!
//! Usage: load ADDR REQUESTS_FILE CONNECTIONS REQUESTS
//! Each line of REQUESTS_FILE is a path, optionally followed by a tab and a JSON body.
//! Prints one JSON object: requests, ok (2xx), non_2xx, errors, seconds, rps, p50/p90/p99/max ms.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Default)]
struct Tally {
    ok: usize,
    non_2xx: usize,
    errors: usize,
    micros: Vec<u32>,
}

/// One request to send: a path and its body (empty for none).
struct Target {
    path: String,
    body: Bytes,
}

async fn connection(addr: String, targets: Arc<Vec<Target>>, next: Arc<AtomicUsize>, total: usize) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return tally;
        }
        if sender.is_none() {
            let Ok(stream) = TcpStream::connect(&addr).await else {
                tally.errors += 1;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let Ok((s, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                tally.errors += 1;
                continue;
            };
            tokio::spawn(conn);
            sender = Some(s);
        }
        let target = &targets[i % targets.len()];
        let mut request =
            Request::post(target.path.as_str()).header("host", addr.as_str()).header("user-agent", "hookd-bench");
        if !target.body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Full::new(target.body.clone())).expect("a valid request");
        let started = Instant::now();
        let s = sender.as_mut().expect("connected above");
        match s.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let _ = response.into_body().collect().await;
                tally.micros.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if status.is_success() {
                    tally.ok += 1;
                } else {
                    tally.non_2xx += 1;
                }
            }
            Err(_) => {
                tally.errors += 1;
                sender = None;
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, file, connections, requests] = args.as_slice() else {
        eprintln!("usage: load ADDR PATHS_FILE CONNECTIONS REQUESTS");
        std::process::exit(2);
    };
    let targets: Arc<Vec<Target>> = Arc::new(
        std::fs::read_to_string(file)
            .expect("requests file")
            .lines()
            .map(|line| {
                let (path, body) = line.split_once('\t').unwrap_or((line, ""));
                Target { path: path.to_owned(), body: Bytes::from(body.to_owned()) }
            })
            .collect(),
    );
    let total: usize = requests.parse().expect("REQUESTS is a number");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections.parse::<usize>().expect("CONNECTIONS is a number"))
        .map(|_| tokio::spawn(connection(addr.clone(), targets.clone(), next.clone(), total)))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.expect("connection task");
        all.ok += t.ok;
        all.non_2xx += t.non_2xx;
        all.errors += t.errors;
        all.micros.extend(t.micros);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.micros.sort_unstable();
    let pct = |p: f64| {
        all.micros
            .get(((all.micros.len() as f64 * p) as usize).min(all.micros.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{{\"requests\":{},\"ok\":{},\"non_2xx\":{},\"errors\":{},\"seconds\":{:.3},\"rps\":{:.0},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        total, all.ok, all.non_2xx, all.errors, seconds, (all.ok + all.non_2xx) as f64 / seconds,
        pct(0.50), pct(0.90), pct(0.99), pct(1.0)
    );
}
