//! The kubernetes backend (issue 16) against the test API server (`kube_api`), which the real
//! `kubectl` first proves honest.

use std::{path::PathBuf, time::Duration};

use hookd::config::{BackendConfig, BackendKind, ProjectConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    helpers::{eventually, spawn_app_with, TestApp},
    kube_api::{ApiServer, Resource},
    upgrade::{docker_hub, finished, push},
};

const WEB: &str = "example/web:1.0";
const PROXY: &str = "example/proxy:1.0";

struct Kube {
    api: ApiServer,
    app: TestApp,
    dir: tempfile::TempDir,
}

/// The test API server with `web` (a Deployment of 2 with a sidecar) and `db` (a StatefulSet
/// of 1) in `default`, and hookd whose project `default` is on it.
async fn kube() -> Kube {
    kube_with(|_| {}).await
}

async fn kube_with(customize: impl FnOnce(&mut hookd::config::Config)) -> Kube {
    let api = ApiServer::start().await;
    api.deployment("default", "web", 2, &[WEB, PROXY]);
    api.statefulset("default", "db", 1, &["example/db:1.0"]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), false);
    api.kubeconfig(dir.path(), true);
    let app = spawn_app_with(move |c| {
        let mut backend = BackendConfig::new("k8s", BackendKind::Kubernetes);
        backend.kubeconfig = Some(kubeconfig);
        c.backends = vec![backend];
        c.projects = vec![ProjectConfig { name: "default".into(), backend: "k8s".into(), namespace: None }];
        customize(c);
    })
    .await;
    Kube { api, app, dir }
}

/// [`kube`] with a second project, `team`, in the namespace `payments`.
async fn kube_with_team() -> Kube {
    kube_with(|c| {
        c.projects.push(ProjectConfig {
            name: "team".into(),
            backend: "k8s".into(),
            namespace: Some("payments".into()),
        });
    })
    .await
}

fn scale_receiver(name: &str, service: &str, action: &str, extra: Value) -> Value {
    let mut config = json!({"serviceId": service, "action": action, "amount": 1, "min": 1, "max": 10});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"name": name, "driver": "scaleService", "scaleServiceConfig": config})
}

async fn url_of(app: &TestApp, body: Value) -> String {
    let (status, r) = app.create_receiver(body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r["url"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_services_are_listed_and_scaled_through_the_scale_subresource() {
    let k = kube().await;
    let (status, services) = k.app.get("/v1-webhooks/services").await;
    assert_eq!(status, StatusCode::OK, "{services}");
    let ids: Vec<&str> = services["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["deployment/web", "statefulset/db"], "{services}");
    let web = &services["data"][0];
    assert_eq!(
        (web["serviceKind"].as_str(), web["scale"].as_u64(), web["image"].as_str()),
        (Some("deployment"), Some(2), Some(WEB))
    );
    let running = eventually(Duration::from_secs(10), async || {
        k.app.get("/v1-webhooks/services").await.1["data"][0]["running"].as_u64() == Some(2)
    })
    .await;
    assert!(running, "ready replicas are reported as running");

    // A bare name is a Deployment; the receiver stores the one spelling.
    let (status, r) = k.app.create_receiver(scale_receiver("up", "web", "up", json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["scaleServiceConfig"]["serviceId"], "deployment/web");
    let up = r["url"].as_str().unwrap().to_owned();
    let (status, answer) = k.app.trigger(&up).await;
    assert_eq!(
        (status, answer["from"].as_u64(), answer["to"].as_u64()),
        (StatusCode::OK, Some(2), Some(3)),
        "{answer}"
    );
    assert_eq!(k.api.replicas("default", "web"), 3);
    let requests = k.api.cluster.lock().unwrap().requests.clone();
    let put = "PUT /apis/apps/v1/namespaces/default/deployments/web/scale";
    assert!(requests.iter().any(|r| r.starts_with(put)), "written through the scale subresource: {requests:?}");

    let db = url_of(&k.app, scale_receiver("db-up", "sts/db", "up", json!({}))).await;
    let (status, answer) = k.app.trigger(&db).await;
    assert_eq!((status, answer["to"].as_u64()), (StatusCode::OK, Some(2)), "{answer}");
    assert_eq!(k.api.object(Resource::StatefulSets, "default", "db")["spec"]["replicas"], 2);

    // Two spellings of one workload share its cooldown: they are one service.
    let other =
        url_of(&k.app, scale_receiver("down", "deployment/web", "down", json!({"cooldownDownSeconds": 3600}))).await;
    let (status, answer) = k.app.trigger(&other).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("skipped")), "{answer}");

    for (service, code) in [("deployment/nope", "unknown_service"), ("pod/web", "service_not_scalable")] {
        let (status, body) = k.app.create_receiver(scale_receiver("bad", service, "up", json!({}))).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{service}: {body}");
    }
}

/// Issue 16: a scale written by someone else between hookd's read and write is a 409; hookd
/// reads again and steps from what is there, never over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_a_conflicting_scale_is_read_again_not_overwritten() {
    let k = kube().await;
    let up = url_of(&k.app, scale_receiver("up", "web", "up", json!({}))).await;
    // Status updates change the resourceVersion too (as on a real API server): let them settle.
    let settled = eventually(Duration::from_secs(10), async || {
        k.api.object(Resource::Deployments, "default", "web")["status"]["readyReplicas"] == 2
    })
    .await;
    assert!(settled);
    k.api.cluster.lock().unwrap().interpose = Some(("web".into(), 7));
    let (status, answer) = k.app.trigger(&up).await;
    assert_eq!(
        (status, answer["from"].as_u64(), answer["to"].as_u64()),
        (StatusCode::OK, Some(7), Some(8)),
        "{answer}"
    );
    assert_eq!(k.api.replicas("default", "web"), 8);
    let writes = k.api.cluster.lock().unwrap().scale_writes.clone();
    let values: Vec<i64> = writes.iter().map(|w| w.2).collect();
    assert_eq!(values, [7, 8], "the other writer's 7, then hookd's step from it");
    let conflicts = k.api.cluster.lock().unwrap().conflicts;
    assert!(conflicts >= 1, "hookd's first write was refused with 409");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_an_hpa_on_the_workload_refuses_the_receiver_unless_it_opts_in() {
    let k = kube().await;
    k.api.hpa("default", "web-hpa", "Deployment", "web");
    let (status, body) = k.app.create_receiver(scale_receiver("up", "web", "up", json!({}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("service_autoscaled")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("HorizontalPodAutoscaler default/web-hpa") && message.contains("allowAutoscaler"),
        "{message}"
    );
    // An HPA on a Deployment of another name, or on the StatefulSet, is no reason.
    k.api.hpa("default", "db-hpa", "Deployment", "db");
    let (status, body) = k.app.create_receiver(scale_receiver("db", "statefulset/db", "up", json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, r) = k.app.create_receiver(scale_receiver("up", "web", "up", json!({"allowAutoscaler": true}))).await;
    assert_eq!((status, r["scaleServiceConfig"]["allowAutoscaler"].as_bool()), (StatusCode::OK, Some(true)), "{r}");
    let (status, answer) = k.app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!((status, answer["to"].as_u64()), (StatusCode::OK, Some(3)), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_an_upgrade_sets_the_pushed_repositorys_container_and_follows_the_rollout() {
    let k = kube().await;
    let (status, r) = k
        .app
        .create_receiver(json!({"name": "deploy", "driver": "serviceUpgrade",
            "serviceUpgradeConfig": {"serviceSelector": {"tier": "web"}, "tag": "2.0"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    // The sidecar's repository: its container is the one that changes.
    let (status, answer) = push(&k.app, &r, &docker_hub("example/proxy", "2.0")).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::ACCEPTED, Some("started")), "{answer}");
    let job = finished(&k.app, answer["jobUrl"].as_str().unwrap()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["services"][0]["service"], "deployment/web", "{job}");
    let web = k.api.object(Resource::Deployments, "default", "web");
    let containers = &web["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        (containers[0]["image"].as_str(), containers[1]["image"].as_str()),
        (Some(WEB), Some("example/proxy:2.0"))
    );
    let status = &web["status"];
    assert_eq!((status["updatedReplicas"].as_u64(), status["availableReplicas"].as_u64()), (Some(2), Some(2)), "{web}");
    assert_eq!(status["observedGeneration"], web["metadata"]["generation"]);
    let requests = k.api.cluster.lock().unwrap().requests.clone();
    assert!(
        requests.iter().any(|r| r.starts_with("PATCH /apis/apps/v1/namespaces/default/deployments/web")),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_progress_deadline_exceeded_fails_the_job_with_its_message() {
    let k = kube().await;
    // A deadline of 1 s, and an image whose pods never become ready.
    let mut web = k.api.object(Resource::Deployments, "default", "web");
    web["spec"]["progressDeadlineSeconds"] = json!(1);
    k.api.cluster.lock().unwrap().replace(Resource::Deployments, "default", "web", web).unwrap();
    k.api.cluster.lock().unwrap().failing_images.insert("example/web:2.0".into());
    let (_, r) = k
        .app
        .create_receiver(json!({"name": "deploy", "driver": "serviceUpgrade",
            "serviceUpgradeConfig": {"serviceSelector": {"tier": "web"}, "tag": "2.0"}}))
        .await;
    let (status, answer) = push(&k.app, &r, &docker_hub("example/web", "2.0")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job = finished(&k.app, answer["jobUrl"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["services"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("ProgressDeadlineExceeded") && error.contains("has timed out progressing"), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_api_server_down_is_503_and_its_refusals_are_4xx() {
    let mut k = kube().await;
    let up = url_of(&k.app, scale_receiver("up", "web", "up", json!({}))).await;
    k.api.stop().await;
    let (status, answer) = k.app.trigger(&up).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("backend_unavailable")),
        "{answer}"
    );
    assert!(answer["message"].as_str().unwrap().contains(&k.api.addr.to_string()), "names the API server: {answer}");
    let (status, _) = k.app.get("/v1-webhooks/services").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    k.api.restart().await;
    let (status, answer) = k.app.trigger(&up).await;
    assert_eq!((status, answer["to"].as_u64()), (StatusCode::OK, Some(3)), "the 503 did nothing: {answer}");

    // RBAC denies the namespace now: 403 from the API server is a refusal, not a retry.
    k.api.cluster.lock().unwrap().forbidden_namespaces.insert("default".into());
    let (status, answer) = k.app.trigger(&up).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("403 Forbidden"), "{answer}");
    k.api.cluster.lock().unwrap().forbidden_namespaces.clear();
    assert_eq!(k.api.replicas("default", "web"), 3);
}

/// deploy/kubernetes/rbac.yaml grants what hookd uses and nothing more: the test API server
/// enforces it on hookd's token, and hookd, scaling, checking for HPAs and upgrading, uses
/// every rule it grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_the_shipped_role_is_exactly_what_hookd_uses() {
    let k = kube().await;
    let (status, r) = k.app.create_receiver(scale_receiver("up", "web", "up", json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let db = url_of(&k.app, scale_receiver("db", "statefulset/db", "up", json!({}))).await;
    assert_eq!(k.app.trigger(r["url"].as_str().unwrap()).await.0, StatusCode::OK);
    assert_eq!(k.app.trigger(&db).await.0, StatusCode::OK);
    let (_, r) = k
        .app
        .create_receiver(json!({"name": "deploy", "driver": "serviceUpgrade",
            "serviceUpgradeConfig": {"serviceSelector": {"tier": "web"}, "tag": "2.0"}}))
        .await;
    let (_, answer) = push(&k.app, &r, &docker_hub("example/web", "2.0")).await;
    assert_eq!(finished(&k.app, answer["jobUrl"].as_str().unwrap()).await["state"], "succeeded");
    let (_, sts) = k
        .app
        .create_receiver(json!({"name": "db-deploy", "driver": "serviceUpgrade",
            "serviceUpgradeConfig": {"serviceSelector": {"app": "db"}, "tag": "2.0"}}))
        .await;
    let (_, answer) = push(&k.app, &sts, &docker_hub("example/db", "2.0")).await;
    let job = finished(&k.app, answer["jobUrl"].as_str().unwrap()).await;
    assert_eq!(job["state"], "succeeded", "a StatefulSet rolls too: {job}");
    let db = k.api.object(Resource::StatefulSets, "default", "db");
    assert_eq!(db["status"]["currentRevision"], db["status"]["updateRevision"], "{db}");
    let used = k.api.cluster.lock().unwrap().used.clone();
    let mut granted = std::collections::BTreeSet::new();
    for rule in crate::kube_api::cluster::shipped_rules() {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    granted.insert(format!("{group}/{resource}/{verb}"));
                }
            }
        }
    }
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(unused.is_empty(), "rbac.yaml grants what hookd never used: {unused:?}");
    let denied: Vec<_> = used.difference(&granted).collect();
    assert!(denied.is_empty(), "hookd needed what rbac.yaml does not grant: {denied:?}");
}

/// Projects map to namespaces: named in the config, or one per project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_each_project_works_in_its_own_namespace() {
    let k = kube_with_team().await;
    k.api.deployment("payments", "web", 1, &[WEB]);
    let (_, services) = k.app.get("/v1-webhooks/services?projectId=team").await;
    let web = &services["data"][0];
    assert_eq!((web["id"].as_str(), web["scale"].as_u64()), (Some("deployment/web"), Some(1)), "{services}");
    let (status, r) = k
        .app
        .request(
            reqwest::Method::POST,
            "/v1-webhooks/receivers?projectId=team",
            Some(scale_receiver("up", "web", "up", json!({}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (status, answer) = k.app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!((status, answer["to"].as_u64()), (StatusCode::OK, Some(2)), "{answer}");
    assert_eq!((k.api.replicas("payments", "web"), k.api.replicas("default", "web")), (2, 2));
}

async fn upgrade_job(k: &Kube, project: &str, repository: &str) -> Value {
    let receivers = k.app.get(&format!("/v1-webhooks/receivers?projectId={project}")).await.1;
    let existing = receivers["data"].as_array().unwrap().iter().find(|r| r["name"] == "deploy").cloned();
    let r = match existing {
        Some(r) => r,
        None => {
            let body = json!({"name": "deploy", "driver": "serviceUpgrade",
                "serviceUpgradeConfig": {"serviceSelector": {"tier": "web"}, "tag": "2.0"}});
            let path = format!("/v1-webhooks/receivers?projectId={project}");
            let (status, r) = k.app.request(reqwest::Method::POST, &path, Some(body)).await;
            assert_eq!(status, StatusCode::OK, "{r}");
            r
        }
    };
    let (status, answer) = push(&k.app, &r, &docker_hub(repository, "2.0")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    finished(&k.app, answer["jobUrl"].as_str().unwrap()).await
}

fn images(k: &Kube, resource: Resource, namespace: &str, name: &str) -> Vec<String> {
    let object = k.api.object(resource, namespace, name);
    let containers = object["spec"]["template"]["spec"]["containers"].as_array().unwrap().clone();
    containers.iter().map(|c| c["image"].as_str().unwrap().to_owned()).collect()
}

/// Issue 16, after an attacker's pass: every container of the repository is set; a paused
/// Deployment or an OnDelete StatefulSet fails at once, saying why; a digest pinned by an
/// admission webhook is no "change by someone else"; a project's namespace holds for jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_upgrades_set_every_matching_container_and_refuse_what_cannot_roll() {
    let k = kube_with_team().await;
    k.api.deployment("default", "multi", 2, &["example/multi:1.0", "example/multi:1.0", PROXY]);
    let job = upgrade_job(&k, "default", "example/multi").await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        images(&k, Resource::Deployments, "default", "multi"),
        ["example/multi:2.0", "example/multi:2.0", PROXY]
    );

    k.api.deployment("default", "held", 1, &["example/held:1.0"]);
    let mut held = k.api.object(Resource::Deployments, "default", "held");
    held["spec"]["paused"] = json!(true);
    k.api.cluster.lock().unwrap().replace(Resource::Deployments, "default", "held", held).unwrap();
    let job = upgrade_job(&k, "default", "example/held").await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["services"][0]["error"].as_str().unwrap().contains("paused"), "{job}");

    k.api.statefulset("default", "od", 1, &["example/od:1.0"]);
    let mut od = k.api.object(Resource::StatefulSets, "default", "od");
    od["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    k.api.cluster.lock().unwrap().replace(Resource::StatefulSets, "default", "od", od).unwrap();
    let job = upgrade_job(&k, "default", "example/od").await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["services"][0]["error"].as_str().unwrap().contains("OnDelete"), "{job}");

    k.api.cluster.lock().unwrap().pin_digests = true;
    let job = upgrade_job(&k, "default", "example/web").await;
    assert_eq!(job["state"], "succeeded", "a pinned digest is the pushed image: {job}");
    assert!(images(&k, Resource::Deployments, "default", "web")[0].starts_with("example/web:2.0@sha256:"));
    k.api.cluster.lock().unwrap().pin_digests = false;

    k.api.deployment("payments", "web", 1, &["example/pay:1.0"]);
    k.api.deployment("default", "pay", 1, &["example/pay:1.0"]);
    let job = upgrade_job(&k, "team", "example/pay").await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(images(&k, Resource::Deployments, "payments", "web"), ["example/pay:2.0"]);
    assert_eq!(
        images(&k, Resource::Deployments, "default", "pay"),
        ["example/pay:1.0"],
        "default is another project's"
    );
}

/// Projects made through the API get a namespace of their own, or are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_projects_made_through_the_api_never_share_a_namespace() {
    let k = kube().await;
    let body = json!({"name": "teamx", "backend": "k8s"});
    let (status, answer) = k.app.request(reqwest::Method::POST, "/v1-webhooks/projects", Some(body.clone())).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("backend_refuses_project")),
        "{answer}"
    );
    assert!(answer["message"].as_str().unwrap().contains("namespace_per_project"), "{answer}");

    let k = kube_with(|c| c.backends[0].namespace_per_project = true).await;
    k.api.deployment("teamx", "api", 3, &[WEB]);
    let (status, answer) = k.app.request(reqwest::Method::POST, "/v1-webhooks/projects", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, services) = k.app.get("/v1-webhooks/services?projectId=teamx").await;
    let ids: Vec<&str> = services["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["deployment/api"], "{services}");
}

/// The trigger-to-scale-written latency: from sending a trigger to the API server storing
/// the scale, over plain POSTs (`--nocapture` prints it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_trigger_to_scale_written_latency() {
    let k = kube().await;
    let up = url_of(&k.app, scale_receiver("up", "web", "up", json!({"max": 1000}))).await;
    let down =
        url_of(&k.app, scale_receiver("down", "web", "down", json!({"max": 1000, "cooldownDownSeconds": 0}))).await;
    let mut latencies = Vec::new();
    for i in 0..200 {
        let sent = crate::kube_api::cluster::now_ms();
        let (status, answer) = k.app.trigger(if i % 2 == 0 { &up } else { &down }).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let written = k.api.cluster.lock().unwrap().scale_writes.last().unwrap().0;
        latencies.push(written.saturating_sub(sent));
    }
    latencies.sort();
    let (p50, p99) = (latencies[latencies.len() / 2], latencies[latencies.len() * 99 / 100]);
    eprintln!("kubernetes: trigger to scale written, 200 triggers: p50 {p50} ms, p99 {p99} ms");
    assert_eq!(k.api.cluster.lock().unwrap().scale_writes.len(), 200);
    assert_eq!(k.api.replicas("default", "web"), 2);
}

/// `HOOKD_TEST_KUBECTL` (`:`-separated), else `kubectl` on the PATH.
fn kubectls() -> Vec<PathBuf> {
    std::env::var("HOOKD_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into()).split(':').map(PathBuf::from).collect()
}

async fn kubectl(program: &PathBuf, k: &Kube, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(program)
        .arg("--kubeconfig")
        .arg(k.dir.path().join("kubeconfig-admin"))
        .arg("--cache-dir")
        .arg(k.dir.path().join("cache"))
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

async fn kubectl_ok(program: &PathBuf, k: &Kube, args: &[&str]) -> String {
    let (ok, out) = kubectl(program, k, args).await;
    assert!(ok, "kubectl {args:?} failed: {out}");
    out
}

/// The test API server is honest: the real `kubectl` gets, scales (by patch, and by get and
/// update with a precondition) and sets images on it, and reads its errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl: ./scripts/test.sh installs Debian's kubernetes-client"]
async fn issue_16_kubectl_gets_scales_and_sets_images_on_the_test_api_server() {
    for program in kubectls() {
        let k = kube().await;
        let version = kubectl_ok(&program, &k, &["version", "--client"]).await;
        eprintln!("kubectl: {}", version.lines().next().unwrap_or_default());
        let get = |name: &'static str, path: &'static str| {
            let (program, k) = (&program, &k);
            async move { kubectl_ok(program, k, &["get", name, "-o", &format!("jsonpath={{{path}}}")]).await }
        };
        assert_eq!(get("deployment/web", ".spec.replicas").await, "2");
        assert_eq!(kubectl_ok(&program, &k, &["get", "deployments", "-o", "name"]).await.trim(), "deployment.apps/web");
        assert_eq!(get("sts/db", ".spec.serviceName").await, "db");

        let out = kubectl_ok(&program, &k, &["scale", "deployment/web", "--replicas=5"]).await;
        assert!(out.contains("deployment.apps/web scaled"), "{out}");
        assert_eq!(k.api.replicas("default", "web"), 5);
        let (ok, out) =
            kubectl(&program, &k, &["scale", "deployment/web", "--current-replicas=3", "--replicas=6"]).await;
        assert!(!ok && out.contains("Expected replicas to be 3, was 5"), "{out}");
        kubectl_ok(&program, &k, &["scale", "deployment/web", "--current-replicas=5", "--replicas=6"]).await;
        assert_eq!(k.api.replicas("default", "web"), 6);
        // A stale resourceVersion: kubectl refuses it itself on scale, and the API server
        // answers 409 to a replace, as kubectl shows it.
        let stale = get("deployment/web", ".metadata.resourceVersion").await;
        let object = kubectl_ok(&program, &k, &["get", "deployment/web", "-o", "json"]).await;
        let file = k.dir.path().join("web.json");
        std::fs::write(&file, object.replace("\"replicas\": 6", "\"replicas\": 9")).unwrap();
        k.api.scale_behind("default", "web", 4);
        let (ok, out) =
            kubectl(&program, &k, &["scale", "deployment/web", "--resource-version", &stale, "--replicas=9"]).await;
        assert!(!ok && out.contains("Expected resource version"), "{out}");
        let (ok, out) = kubectl(&program, &k, &["replace", "--validate=false", "-f", file.to_str().unwrap()]).await;
        assert!(!ok && out.contains("the object has been modified"), "{out}");
        assert_eq!(k.api.replicas("default", "web"), 4);
        kubectl_ok(&program, &k, &["scale", "statefulset/db", "--replicas=3"]).await;
        assert_eq!(k.api.object(Resource::StatefulSets, "default", "db")["spec"]["replicas"], 3);

        let out =
            kubectl_ok(&program, &k, &["set", "image", "deployment/web", "app=registry.example:5000/team/web:3.0"])
                .await;
        assert!(out.contains("image updated"), "{out}");
        let web = k.api.object(Resource::Deployments, "default", "web");
        let containers = &web["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "registry.example:5000/team/web:3.0");
        assert_eq!(containers[1]["image"], PROXY, "the sidecar is left alone");
        let rolled =
            eventually(Duration::from_secs(10), async || get("deployment/web", ".status.updatedReplicas").await == "4")
                .await;
        assert!(rolled, "the controller rolled the pods, as kubectl sees it");

        let (ok, out) = kubectl(&program, &k, &["get", "deployment/nope"]).await;
        assert!(!ok && out.contains("deployments.apps \"nope\" not found"), "{out}");
        let (ok, out) = kubectl(&program, &k, &["scale", "deployment/web", "--replicas=-1"]).await;
        assert!(!ok, "{out}");
        k.api.cluster.lock().unwrap().forbidden_namespaces.insert("default".into());
        let (ok, out) = kubectl(&program, &k, &["get", "deployments"]).await;
        assert!(!ok && out.contains("forbidden") && out.contains("cannot list resource"), "{out}");
        k.api.cluster.lock().unwrap().forbidden_namespaces.clear();

        // hookd and kubectl scale one Deployment at once: no write of hookd's lands on a scale
        // it did not read (each step of 1 follows the write before it).
        let up = url_of(&k.app, scale_receiver("up", "web", "up", json!({"max": 1000}))).await;
        let before = k.api.cluster.lock().unwrap().scale_writes.len();
        let hookd = async {
            for _ in 0..20 {
                let (status, answer) = k.app.trigger(&up).await;
                assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE, "{answer}");
            }
        };
        let other = async {
            for n in [20, 40, 60, 80, 100] {
                kubectl_ok(&program, &k, &["scale", "deployment/web", &format!("--replicas={n}")]).await;
            }
        };
        tokio::join!(hookd, other);
        let writes = k.api.cluster.lock().unwrap().scale_writes[before..].to_vec();
        for pair in writes.windows(2) {
            let (previous, write) = (&pair[0], &pair[1]);
            if write.3.starts_with("hookd/") {
                assert_eq!(write.2, previous.2 + 1, "hookd stepped from the scale before it: {writes:?}");
            }
        }
        assert!(writes.iter().filter(|w| w.3.starts_with("hookd/")).count() >= 10, "{writes:?}");
    }
}
