//! Triggers on one service are serialized: no lost update, never past max, all recorded.

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_ups_end_at_exactly_max() {
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 50).await;
    let url = r["url"].as_str().unwrap().to_owned();
    let answers = join_all((0..200).map(|_| {
        let http = app.http.clone();
        let url = url.clone();
        async move {
            let response = http.post(&url).send().await.expect("sent");
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.expect("json"))
        }
    }))
    .await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "no 5xx, no 4xx");
    let scaled = answers.iter().filter(|(_, a)| a["outcome"] == "scaled").count();
    let unchanged = answers.iter().filter(|(_, a)| a["outcome"] == "unchanged").count();
    assert_eq!((scaled, unchanged), (49, 151));
    // Every scaled answer is a distinct step: no two triggers read the same scale.
    let mut targets: Vec<u64> =
        answers.iter().filter(|(_, a)| a["outcome"] == "scaled").map(|(_, a)| a["to"].as_u64().unwrap()).collect();
    targets.sort();
    assert_eq!(targets, (2..=50).collect::<Vec<u64>>());

    assert_eq!(app.desired_scale("web").await, 50);
    app.wait_for_processes("web", 50).await;
    assert_eq!(app.executions(&r).await.len(), 200, "every trigger is in the history");
}
