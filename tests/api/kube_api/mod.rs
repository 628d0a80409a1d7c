//! A Kubernetes API server for tests: none can be installed from the package registries CI
//! reaches, so this one speaks the real protocol for what hookd uses, and `kubectl` proves it
//! (tests/api/kubernetes.rs).
//!
//! Served, as Kubernetes 1.30 serves them: discovery (`/version`, `/api`, `/apis`, the
//! resource lists `kubectl` and kube-rs read), apps/v1 Deployments and StatefulSets (list,
//! get, create, replace, patch: merge, strategic merge, JSON patch; delete), their `scale`
//! subresource (autoscaling/v1 `Scale`: get, replace, patch, `resourceVersion` conflicts),
//! autoscaling/v2 HorizontalPodAutoscalers (list, get, create, delete), `Status` errors
//! (401, 403, 404, 409, 415, 422), bearer-token authentication, and controllers that move
//! `status` as pods would (rollouts, readiness, `ProgressDeadlineExceeded`). Not served:
//! watches, pods, ReplicaSets, server-side apply, field selectors, Table output.

pub mod cluster;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::{json, Value};
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

pub use cluster::{ApiError, Cluster, Resource};

/// hookd's bearer token: it may do what deploy/kubernetes/rbac.yaml grants, no more.
pub const TOKEN: &str = "hookd-test-token";
/// A cluster admin's token, for `kubectl` in tests.
pub const ADMIN_TOKEN: &str = "admin-test-token";

pub struct ApiServer {
    pub addr: SocketAddr,
    pub cluster: Arc<Mutex<Cluster>>,
    /// The server's self-signed certificate (PEM), the kubeconfig's certificate authority.
    pub certificate: String,
    tls: Arc<rustls::ServerConfig>,
    server: tokio::task::JoinHandle<()>,
    controller: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// Serves HTTPS on 127.0.0.1 with a fresh self-signed certificate: clients send bearer
    /// tokens over TLS only.
    pub async fn start() -> Self {
        let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("a certificate");
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![generated.cert.der().clone()], key)
            .expect("a TLS config");
        let certificate = generated.cert.pem();
        let cluster = Arc::new(Mutex::new(Cluster::default()));
        cluster.lock().unwrap().rules = cluster::shipped_rules();
        Self::start_on("127.0.0.1:0".parse().unwrap(), cluster, Arc::new(tls), certificate).await
    }

    async fn start_on(
        addr: SocketAddr,
        cluster: Arc<Mutex<Cluster>>,
        tls: Arc<rustls::ServerConfig>,
        certificate: String,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the test API server");
        let addr = listener.local_addr().unwrap();
        let state = cluster.clone();
        let app = Router::new().fallback(move |method, uri, headers, body| {
            let state = state.clone();
            async move { handle(&state, method, uri, headers, body) }
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
        let server = tokio::spawn(async move {
            // Aborting this task drops every connection with it, as a crashed server would.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                connections.spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let ticking = cluster.clone();
        let controller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                ticking.lock().unwrap().reconcile();
            }
        });
        Self { addr, cluster, certificate, tls, server, controller }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Stops answering (connections are refused) until [`ApiServer::restart`].
    pub async fn stop(&mut self) {
        self.server.abort();
        self.controller.abort();
        let _ = (&mut self.server).await;
        assert!(tokio::net::TcpStream::connect(self.addr).await.is_err(), "the test API server still answers");
    }

    /// Answers again on the same address, with the same objects.
    pub async fn restart(&mut self) {
        *self = Self::start_on(self.addr, self.cluster.clone(), self.tls.clone(), self.certificate.clone()).await;
    }

    /// A kubeconfig for this server (namespace `default`) with hookd's token (or the
    /// admin's), written into `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path, admin: bool) -> std::path::PathBuf {
        let (path, token) = match admin {
            true => (dir.join("kubeconfig-admin"), ADMIN_TOKEN),
            false => (dir.join("kubeconfig"), TOKEN),
        };
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
                 certificate-authority-data: {}\n\
                 contexts:\n- name: test\n  context:\n    cluster: test\n    user: hookd\n    namespace: default\n\
                 current-context: test\nusers:\n- name: hookd\n  user:\n    token: {token}\n",
                self.url(),
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.certificate),
            ),
        )
        .unwrap();
        path
    }

    /// Creates a Deployment `name` of `replicas` running `images` (containers `app`, `c1`, ...).
    pub fn deployment(&self, namespace: &str, name: &str, replicas: u32, images: &[&str]) {
        let object = workload(name, replicas, images, json!({ "progressDeadlineSeconds": 600 }));
        self.cluster.lock().unwrap().create(Resource::Deployments, namespace, object).unwrap();
    }

    pub fn statefulset(&self, namespace: &str, name: &str, replicas: u32, images: &[&str]) {
        let object = workload(name, replicas, images, json!({ "serviceName": name }));
        self.cluster.lock().unwrap().create(Resource::StatefulSets, namespace, object).unwrap();
    }

    /// An HPA (autoscaling/v2) targeting `kind/name`.
    pub fn hpa(&self, namespace: &str, name: &str, kind: &str, target: &str) {
        let object = json!({
            "metadata": { "name": name },
            "spec": {
                "scaleTargetRef": { "apiVersion": "apps/v1", "kind": kind, "name": target },
                "minReplicas": 1, "maxReplicas": 10,
            },
        });
        self.cluster.lock().unwrap().create(Resource::Hpas, namespace, object).unwrap();
    }

    pub fn object(&self, resource: Resource, namespace: &str, name: &str) -> Value {
        self.cluster.lock().unwrap().get(resource, namespace, name).unwrap()
    }

    pub fn replicas(&self, namespace: &str, name: &str) -> i64 {
        self.object(Resource::Deployments, namespace, name)["spec"]["replicas"].as_i64().unwrap()
    }

    /// Sets a Deployment's replicas as another client would (`kubectl scale`, an HPA).
    pub fn scale_behind(&self, namespace: &str, name: &str, replicas: i64) {
        let mut cluster = self.cluster.lock().unwrap();
        let mut scale = cluster.scale(Resource::Deployments, namespace, name).unwrap();
        scale["spec"]["replicas"] = json!(replicas);
        cluster.write_scale(Resource::Deployments, namespace, name, &scale, "another client").unwrap();
    }
}

fn workload(name: &str, replicas: u32, images: &[&str], mut spec: Value) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let name = if i == 0 { "app".to_owned() } else { format!("c{i}") };
            json!({ "name": name, "image": image })
        })
        .collect();
    let labels = json!({ "app": name });
    cluster::merge_patch(
        &mut spec,
        &json!({
            "replicas": replicas,
            "selector": { "matchLabels": labels },
            "template": { "metadata": { "labels": labels }, "spec": { "containers": containers } },
        }),
    );
    json!({ "metadata": { "name": name, "labels": { "app": name, "tier": "web" } }, "spec": spec })
}

fn status(error: ApiError) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": error.message, "reason": error.reason, "code": error.code,
    });
    (StatusCode::from_u16(error.code).unwrap(), [("content-type", "application/json")], body.to_string())
        .into_response()
}

fn ok(code: StatusCode, body: Value) -> Response {
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

fn handle(state: &Mutex<Cluster>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut cluster = state.lock().unwrap();
    cluster.requests.push(format!("{method} {}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("")));
    let admin = match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(bearer) if bearer == format!("Bearer {ADMIN_TOKEN}") => true,
        Some(bearer) if bearer == format!("Bearer {TOKEN}") => false,
        _ => return status(ApiError::new(401, "Unauthorized", "Unauthorized")),
    };
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    if let Some(document) = discovery(&segments) {
        return ok(StatusCode::OK, document);
    }
    let agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if let Some(denied) = rbac(&mut cluster, admin, &method, &segments) {
        return status(denied);
    }
    match resource_request(&mut cluster, &method, &segments, &headers, &body, &agent) {
        Ok((code, value)) => ok(code, value),
        Err(e) => status(e),
    }
}

/// 403 unless the caller may do this (an admin may do everything).
fn rbac(cluster: &mut Cluster, admin: bool, method: &Method, segments: &[&str]) -> Option<ApiError> {
    let ["apis", group, _, "namespaces", namespace, plural, rest @ ..] = segments else { return None };
    let verb = match (method.clone(), rest.len()) {
        (Method::GET, 0) => "list",
        (Method::GET, _) => "get",
        (Method::POST, _) => "create",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        (Method::DELETE, _) => "delete",
        _ => return None,
    };
    let resource = match rest {
        [_, sub] => format!("{plural}/{sub}"),
        _ => plural.to_string(),
    };
    let forbidden = cluster.forbidden_namespaces.contains(*namespace);
    if !admin {
        cluster.used.insert(format!("{group}/{resource}/{verb}"));
    }
    if (admin || cluster::allowed(&cluster.rules, group, &resource, verb)) && !forbidden {
        return None;
    }
    Some(ApiError::new(
        403,
        "Forbidden",
        format!(
            "{plural}.{group} is forbidden: User \"system:serviceaccount:hookd:hookd\" cannot {verb} resource \
             \"{resource}\" in API group \"{group}\" in the namespace \"{namespace}\""
        ),
    ))
}

/// `/apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME[/scale]]` (`/api/v1/...` is not served).
fn resource_request(
    cluster: &mut Cluster,
    method: &Method,
    segments: &[&str],
    headers: &HeaderMap,
    body: &[u8],
    agent: &str,
) -> Result<(StatusCode, Value), ApiError> {
    let not_found = || ApiError::new(404, "NotFound", "the server could not find the requested resource");
    let ["apis", group, version, "namespaces", namespace, plural, rest @ ..] = segments else {
        return Err(not_found());
    };
    let resource = Resource::parse(group, version, plural).ok_or_else(not_found)?;
    let parsed = || serde_json::from_slice::<Value>(body).map_err(|e| ApiError::new(400, "BadRequest", e.to_string()));
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    match (method.clone(), rest) {
        (Method::GET, []) => Ok((StatusCode::OK, cluster.list(resource, namespace))),
        (Method::POST, []) => Ok((StatusCode::CREATED, cluster.create(resource, namespace, parsed()?)?)),
        (Method::GET, [name]) => Ok((StatusCode::OK, cluster.get(resource, namespace, name)?)),
        (Method::PUT, [name]) => Ok((StatusCode::OK, cluster.replace(resource, namespace, name, parsed()?)?)),
        (Method::DELETE, [name]) => Ok((StatusCode::OK, cluster.delete(resource, namespace, name)?)),
        (Method::PATCH, [name]) => {
            let mut object = cluster.get(resource, namespace, name)?;
            let before = object["metadata"]["resourceVersion"].clone();
            patch(&mut object, content_type, &parsed()?)?;
            // A patch carries no precondition unless it sets resourceVersion itself.
            if object["metadata"]["resourceVersion"] == before {
                object["metadata"]["resourceVersion"] = Value::Null;
            }
            Ok((StatusCode::OK, cluster.replace(resource, namespace, name, object)?))
        }
        (method, [name, "scale"]) if resource.scalable() => {
            let scale = match method {
                Method::GET => return Ok((StatusCode::OK, cluster.scale(resource, namespace, name)?)),
                Method::PUT => parsed()?,
                Method::PATCH => {
                    let mut scale = cluster.scale(resource, namespace, name)?;
                    let before = scale["metadata"]["resourceVersion"].clone();
                    patch(&mut scale, content_type, &parsed()?)?;
                    if scale["metadata"]["resourceVersion"] == before {
                        scale["metadata"]["resourceVersion"] = Value::Null;
                    }
                    scale
                }
                _ => return Err(ApiError::new(405, "MethodNotAllowed", "the server does not allow this method")),
            };
            if scale["kind"].as_str().is_some_and(|k| k != "Scale") {
                return Err(ApiError::new(400, "BadRequest", format!("the body is a {}, not a Scale", scale["kind"])));
            }
            Ok((StatusCode::OK, cluster.write_scale(resource, namespace, name, &scale, agent)?))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn patch(object: &mut Value, content_type: &str, patch: &Value) -> Result<(), ApiError> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/merge-patch+json" => cluster::merge_patch(object, patch),
        "application/strategic-merge-patch+json" => cluster::strategic_merge_patch(object, patch),
        "application/json-patch+json" => {
            cluster::json_patch(object, patch).map_err(|why| ApiError::new(422, "Invalid", why))?
        }
        other => {
            return Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (not {other})")))
        }
    }
    Ok(())
}

/// Discovery, as clients read it before their first request.
fn discovery(segments: &[&str]) -> Option<Value> {
    let resource = |name: &str, kind: &str, short: &[&str], verbs: &[&str]| {
        json!({ "name": name, "singularName": kind.to_lowercase(), "namespaced": true, "kind": kind,
                "verbs": verbs, "shortNames": short })
    };
    let scale = |name: &str| {
        json!({ "name": name, "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1",
                "kind": "Scale", "verbs": ["get", "patch", "update"] })
    };
    let all = ["create", "delete", "get", "list", "patch", "update"];
    let group = |name: &str, versions: &[&str]| {
        let versions: Vec<Value> =
            versions.iter().map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v })).collect();
        json!({ "name": name, "versions": versions, "preferredVersion": versions[0] })
    };
    let list = |group_version: &str, resources: Vec<Value>| json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources });
    Some(match segments {
        ["version"] => json!({ "major": "1", "minor": "30", "gitVersion": "v1.30.0-hookd-test",
                               "platform": "linux/amd64", "goVersion": "go1.22", "compiler": "gc" }),
        ["api"] => json!({ "kind": "APIVersions", "versions": ["v1"],
                           "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }] }),
        ["api", "v1"] => list(
            "v1",
            vec![json!({ "name": "namespaces", "singularName": "namespace", "namespaced": false,
                                                 "kind": "Namespace", "verbs": ["get", "list"], "shortNames": ["ns"] })],
        ),
        ["apis"] => json!({ "kind": "APIGroupList", "apiVersion": "v1",
                            "groups": [group("apps", &["v1"]), group("autoscaling", &["v2"])] }),
        ["apis", "apps"] => group("apps", &["v1"]),
        ["apis", "autoscaling"] => group("autoscaling", &["v2"]),
        ["apis", "apps", "v1"] => list(
            "apps/v1",
            vec![
                resource("deployments", "Deployment", &["deploy"], &all),
                scale("deployments/scale"),
                resource("statefulsets", "StatefulSet", &["sts"], &all),
                scale("statefulsets/scale"),
            ],
        ),
        ["apis", "autoscaling", "v2"] => list(
            "autoscaling/v2",
            vec![resource("horizontalpodautoscalers", "HorizontalPodAutoscaler", &["hpa"], &all)],
        ),
        _ => return None,
    })
}
