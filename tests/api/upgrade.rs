//! serviceUpgrade on the local backend (issue 12): a push becomes a durable job that rolls
//! the matching services onto the new image, in batches, and survives a kill -9.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app_with, spawn_process_with, TestApp};

/// A serviceUpgrade receiver for services labelled `app=web`.
async fn upgrade_receiver(app: &TestApp, name: &str, extra: Value) -> Value {
    let mut config = json!({"serviceSelector": {"app": "web"}, "tag": "2.0", "batchSize": 1, "intervalMillis": 1});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, r) =
        app.create_receiver(json!({"name": name, "driver": "serviceUpgrade", "serviceUpgradeConfig": config})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r
}

pub fn docker_hub(repo: &str, tag: &str) -> String {
    json!({"push_data": {"pushed_at": 1, "tag": tag, "pusher": "ci"},
           "repository": {"repo_name": repo, "name": repo.rsplit('/').next().unwrap(), "namespace": "example"}})
    .to_string()
}

pub async fn push(app: &TestApp, receiver: &Value, body: &str) -> (StatusCode, Value) {
    app.notify(receiver["url"].as_str().unwrap(), body).await
}

/// Follows a job until it finishes; returns it.
pub async fn finished(app: &TestApp, job_url: &str) -> Value {
    let path = job_url.strip_prefix(&app.base).expect("a job URL on this hookd");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = app.get(path).await.1;
        if job["state"] != "running" {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `HOOKD_IMAGE` of each live process of `service`.
fn images(app: &TestApp, service: &str) -> Vec<String> {
    let mut images: Vec<String> = app
        .live_pids(service)
        .into_iter()
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .find_map(|e| e.strip_prefix(b"HOOKD_IMAGE=").map(|v| String::from_utf8_lossy(v).into_owned()))
        })
        .collect();
    images.sort();
    images
}

#[tokio::test]
async fn a_docker_hub_push_upgrades_the_matching_local_service_in_batches() {
    let app = spawn_app_with(|c| c.backends[0].services[0].scale = 4).await;
    app.wait_for_processes("web", 4).await;
    let r = upgrade_receiver(&app, "web-deploy", json!({"batchSize": 2, "intervalMillis": 1})).await;
    assert_eq!(r["serviceUpgradeConfig"]["type"], "serviceUpgrade");
    let started = std::time::Instant::now();
    let (status, answer) = push(&app, &r, &docker_hub("example/web", "2.0")).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::ACCEPTED, Some("started")), "{answer}");
    let job = finished(&app, answer["jobUrl"].as_str().expect("jobUrl")).await;
    eprintln!("local: a push rolled 4 processes, 2 at a time, 1 s apart, in {:?}", started.elapsed());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["services"][0]["image"], "example/web:2.0");
    assert_eq!((job["services"][0]["updated"].as_u64(), job["services"][0]["total"].as_u64()), (Some(4), Some(4)));
    app.wait_for_processes("web", 4).await;
    assert_eq!(images(&app, "web"), vec!["example/web:2.0"; 4]);
    assert_eq!(images(&app, "api"), vec!["example/api:1.0"], "api does not carry app=web");
    let (_, services) = app.get("/v1-webhooks/services").await;
    let web = services["data"].as_array().unwrap().iter().find(|s| s["id"] == "web").unwrap().clone();
    assert_eq!(web["image"], "example/web:2.0");

    // Batches of 2, a second apart: the new processes started in two groups.
    let mut starts: Vec<u64> = app.live_pids("web").iter().map(|pid| start_ticks(*pid)).collect();
    starts.sort();
    let ticks = 100; // USER_HZ
    assert!(starts[2] - starts[1] >= ticks * 9 / 10, "a batch waits intervalMillis (seconds): {starts:?}");
    assert!(starts[1] - starts[0] < ticks / 2 && starts[3] - starts[2] < ticks / 2, "two per batch: {starts:?}");

    // The history names the job; the receiver lists it.
    let history = app.executions(&r).await;
    assert_eq!(history[0]["job"], answer["job"]);
    let (_, jobs) = app.get(&format!("/v1-webhooks/receivers/{}/jobs", r["id"].as_str().unwrap())).await;
    assert_eq!(jobs["data"][0]["id"], answer["job"]);
}

fn start_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(19).unwrap().parse().unwrap()
}

/// rancher/rancher#8463: Rancher upgraded every labelled service to whatever repository was
/// pushed. A push of another repository, a wrong tag, or a push no service's labels match
/// is answered 200 `skipped` with the reason, and nothing restarts.
#[tokio::test]
async fn issue_12_pushes_that_match_nothing_are_skipped_with_the_reason() {
    let app = spawn_app_with(|_| {}).await;
    app.wait_for_processes("web", 1).await;
    let r = upgrade_receiver(&app, "web-deploy", json!({})).await;
    let before = app.live_pids("web");
    for (body, reason) in [
        (docker_hub("example/api", "2.0"), "repository"),
        (docker_hub("evil/web", "2.0"), "repository"),
        (docker_hub("example/web", "2.1"), "tag"),
        (docker_hub("example/web", "1.0"), "tag"),
    ] {
        let (status, answer) = push(&app, &r, &body).await;
        assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("skipped")), "{answer}");
        assert_eq!(answer["reason"], reason, "{answer}");
    }
    let other = upgrade_receiver(&app, "nobody", json!({"serviceSelector": {"app": "nothing"}})).await;
    let (_, answer) = push(&app, &other, &docker_hub("example/web", "2.0")).await;
    assert_eq!(answer["reason"], "no_service", "{answer}");
    let (status, answer) = push(&app, &r, r#"{"push_data": {}}"#).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_payload")), "{answer}");
    let (status, answer) = app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a push receiver needs a push: {answer}");
    assert_eq!(app.live_pids("web"), before, "nothing restarted");

    // The right push acts once; the same push again (a registry retrying) is a duplicate.
    let (status, first) = push(&app, &r, &docker_hub("example/web", "2.0")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = push(&app, &r, &docker_hub("example/web", "2.0")).await;
    assert_eq!((status, again["reason"].as_str()), (StatusCode::OK, Some("duplicate")), "{again}");
    finished(&app, first["jobUrl"].as_str().unwrap()).await;
}

#[tokio::test]
async fn a_native_push_with_a_digest_and_tag_policies() {
    let app = spawn_app_with(|_| {}).await;
    app.wait_for_processes("web", 1).await;
    let glob = upgrade_receiver(&app, "glob", json!({"tag": "2.*", "tagPolicy": "glob"})).await;
    let body = json!({"image": "example/web", "tag": "2.5", "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}).to_string();
    let (status, answer) = push(&app, &glob, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job = finished(&app, answer["jobUrl"].as_str().unwrap()).await;
    assert_eq!(
        job["services"][0]["image"],
        "example/web:2.5@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "{job}"
    );
    let (_, again) = push(&app, &glob, &json!({"image": "example/web:2.5", "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}).to_string()).await;
    assert_eq!(again["reason"], "duplicate", "the same push again: {again}");
    let other = upgrade_receiver(&app, "glob-too", json!({"tag": "2.*", "tagPolicy": "glob"})).await;
    let (_, again) = push(&app, &other, &json!({"image": "example/web:2.5", "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}).to_string()).await;
    assert_eq!(again["reason"], "current", "the image it runs is a no-op: {again}");

    let semver =
        upgrade_receiver(&app, "semver", json!({"tag": "", "tagPolicy": "semver", "semverBound": "minor"})).await;
    for (tag, outcome) in [("3.0.0", "skipped"), ("2.4.0", "skipped"), ("2.6.1", "started")] {
        let body = json!({"image": format!("example/web:{tag}")}).to_string();
        let (_, answer) = push(&app, &semver, &body).await;
        assert_eq!(answer["outcome"], outcome, "{tag}: {answer}");
        if let Some(url) = answer["jobUrl"].as_str() {
            finished(&app, url).await;
        }
    }
    let (status, err) = app
        .create_receiver(json!({"name": "bad", "driver": "serviceUpgrade",
            "serviceUpgradeConfig": {"serviceSelector": {"app": "web"}, "tag": "[", "tagPolicy": "regex"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
}

/// A kill -9 of hookd mid-job: the restarted hookd resumes the job and finishes it.
#[tokio::test]
async fn a_job_survives_a_kill_9_of_hookd_and_finishes() {
    let mut app = spawn_process_with(|c| c.backends[0].services[0].scale = 3).await;
    app.wait_for_processes("web", 3).await;
    let r = upgrade_receiver(&app, "web-deploy", json!({"batchSize": 1, "intervalMillis": 2})).await;
    let (status, answer) = push(&app, &r, &docker_hub("example/web", "2.0")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job_path = answer["jobUrl"].as_str().unwrap().strip_prefix(&app.base).unwrap().to_owned();
    let mid =
        eventually(Duration::from_secs(10), || async { app.get(&job_path).await.1["services"][0]["updated"] == 1 })
            .await;
    assert!(mid, "the first batch went through");
    app.kill9();
    app.start_again().await;
    let job_url = format!("{}{job_path}", app.base);
    let job = finished(&app, &job_url).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    app.wait_for_processes("web", 3).await;
    assert_eq!(images(&app, "web"), vec!["example/web:2.0"; 3]);
    app.restart().await;
    app.wait_for_processes("web", 3).await;
    assert_eq!(images(&app, "web"), vec!["example/web:2.0"; 3], "the new image is durable");
}

/// Every registry format, from its sample in `tests/fixtures/registry/`, through a real
/// HTTP trigger: each push upgrades a local service running the pushed repository, and an
/// envelope without a push of a tagged image is skipped.
#[tokio::test]
async fn every_registry_format_through_a_real_trigger() {
    use hookd::payload::registry;
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/registry")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let body = std::fs::read_to_string(&path).unwrap();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let (format, pushes) = registry::parse(body.as_bytes(), None).expect("every sample parses");
            samples.push((name, format, pushes, body));
        }
    }
    assert!(samples.len() >= 8, "a sample per format");
    let with_push: Vec<_> = samples.iter().filter(|(_, _, p, _)| !p.is_empty()).cloned().collect();
    let marker_services = with_push.clone();
    let app = spawn_app_with(move |c| {
        let template = c.backends[0].services[0].clone();
        for (i, (name, _, pushes, _)) in marker_services.iter().enumerate() {
            let image = pushes[0].image().expect("an image");
            let mut service = template.clone();
            service.name = format!("fmt{i}");
            service.image = image.with_tag("0.0.1-old", None);
            service.labels = [("fmt".to_owned(), name.clone())].into();
            service.env.insert("HOOKD_TEST_MARKER".into(), format!("x/fmt{i}"));
            c.backends[0].services.push(service);
        }
    })
    .await;
    let mut formats = std::collections::BTreeSet::new();
    for (i, (name, format, pushes, body)) in with_push.iter().enumerate() {
        let r =
            upgrade_receiver(&app, name, json!({"serviceSelector": {"fmt": name}, "tag": ".*", "tagPolicy": "regex"}))
                .await;
        let (status, answer) = push(&app, &r, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name} ({}): {answer}", format.as_str());
        let job = finished(&app, answer["jobUrl"].as_str().unwrap()).await;
        assert_eq!(job["state"], "succeeded", "{name}: {job}");
        let expected = pushes[0].image().unwrap().with_tag(&pushes[0].tag, pushes[0].digest.as_deref());
        assert_eq!(job["services"][0]["image"], expected.as_str(), "{name}: fmt{i}");
        formats.insert(format.as_str());
    }
    assert_eq!(formats.len(), registry::PayloadFormat::ALL.len(), "every format acted: {formats:?}");
    for (name, _, _, body) in samples.iter().filter(|(_, _, p, _)| p.is_empty()) {
        let r = upgrade_receiver(&app, &format!("none-{name}"), json!({})).await;
        let (status, answer) = push(&app, &r, body).await;
        assert_eq!((status, answer["reason"].as_str()), (StatusCode::OK, Some("no_push")), "{name}: {answer}");
    }
}

/// One lock per service: a scale trigger during an upgrade waits for the rollout, and the
/// replica it adds runs the new image.
#[tokio::test]
async fn a_scale_trigger_during_an_upgrade_waits_for_it() {
    let app = spawn_app_with(|c| c.backends[0].services[0].scale = 3).await;
    app.wait_for_processes("web", 3).await;
    let deploy = upgrade_receiver(&app, "deploy", json!({"batchSize": 1, "intervalMillis": 1})).await;
    let up = app.web_receiver("up", "up", json!({})).await;
    let (status, answer) = push(&app, &deploy, &docker_hub("example/web", "2.0")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job_path = answer["jobUrl"].as_str().unwrap().strip_prefix(&app.base).unwrap().to_owned();
    let running = eventually(Duration::from_secs(5), || async {
        app.get(&job_path).await.1["services"][0]["state"] == "running"
    })
    .await;
    assert!(running);
    let (status, scaled) = app.trigger(up["url"].as_str().unwrap()).await;
    assert_eq!((status, scaled["to"].as_u64()), (StatusCode::OK, Some(4)), "{scaled}");
    assert_eq!(app.get(&job_path).await.1["state"], "succeeded", "the scale waited for the rollout");
    app.wait_for_processes("web", 4).await;
    assert_eq!(images(&app, "web"), vec!["example/web:2.0"; 4]);
}

/// Review of issue 12: a trigger that waited past the limit for a service an upgrade holds
/// is answered 503 and never acts later (it used to hang, then act after the upgrade).
#[tokio::test]
async fn a_scale_trigger_blocked_by_a_long_upgrade_is_503_and_never_acts_later() {
    let app = spawn_app_with(|c| c.backends[0].services[0].scale = 2).await;
    app.wait_for_processes("web", 2).await;
    let deploy = upgrade_receiver(&app, "deploy", json!({"batchSize": 1, "intervalMillis": 12})).await;
    let up = app.web_receiver("up", "up", json!({})).await;
    let (status, answer) = push(&app, &deploy, &docker_hub("example/web", "2.0")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job_url = answer["jobUrl"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, busy) = app.trigger(up["url"].as_str().unwrap()).await;
    assert_eq!((status, busy["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("service_busy")), "{busy}");
    finished(&app, &job_url).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.desired_scale("web").await, 2, "the answered trigger did nothing, then or later");
}

/// Review of issue 12: a push decided while an earlier job held the service is decided
/// again at its turn, so a semver receiver never rolls backwards; a replica that dies on
/// the new image fails the job instead of passing it.
#[tokio::test]
async fn jobs_decide_again_at_their_turn_and_crashing_images_fail() {
    let crash = "case \"$HOOKD_IMAGE\" in *bad*) exit 3;; esac; exec sleep 100000";
    let app = spawn_app_with(move |c| {
        let api = &mut c.backends[0].services[1];
        api.command = "sh".into();
        api.args = vec!["-c".into(), crash.into()];
    })
    .await;
    app.wait_for_processes("web", 1).await;
    let semver = upgrade_receiver(&app, "semver", json!({"tag": "", "tagPolicy": "semver", "intervalMillis": 1})).await;
    let mut jobs = Vec::new();
    for tag in ["1.1.0", "1.4.0", "1.3.1"] {
        let (status, answer) = push(&app, &semver, &json!({"image": format!("example/web:{tag}")}).to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{tag}: {answer}");
        jobs.push(answer["jobUrl"].as_str().unwrap().to_owned());
    }
    let mut states = Vec::new();
    for url in &jobs {
        let job = finished(&app, url).await;
        states.push(job["services"][0]["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(states, ["done", "done", "skipped"], "1.3.1 after 1.4.0 would go backwards");
    assert_eq!(images(&app, "web"), vec!["example/web:1.4.0"]);

    let api = upgrade_receiver(&app, "api", json!({"serviceSelector": {"app": "api"}, "tag": "bad"})).await;
    let started = std::time::Instant::now();
    let (status, answer) = push(&app, &api, &json!({"image": "example/api:bad"}).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job = finished(&app, answer["jobUrl"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("exited"), "{job}");
    assert!(started.elapsed() < Duration::from_secs(20), "failed fast: {:?}", started.elapsed());
}

/// Review of issue 12: ten deliveries of one push at once start one job.
#[tokio::test]
async fn concurrent_deliveries_of_one_push_start_one_job() {
    let app = spawn_app_with(|_| {}).await;
    let r = upgrade_receiver(&app, "deploy", json!({})).await;
    let body = json!({"image": "example/web:2.0", "id": "evt-1"}).to_string();
    let answers = futures_util::future::join_all((0..10).map(|_| push(&app, &r, &body))).await;
    let started = answers.iter().filter(|(s, _)| *s == StatusCode::ACCEPTED).count();
    let duplicates = answers.iter().filter(|(_, a)| a["reason"] == "duplicate").count();
    assert_eq!((started, duplicates), (1, 9), "{answers:?}");
}
