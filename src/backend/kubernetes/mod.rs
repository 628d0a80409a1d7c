//! The `kubernetes` backend: Deployments and StatefulSets, through the API server (kube-rs).
//!
//! A service is `deployment/NAME` or `statefulset/NAME` (a bare `NAME` is a Deployment) in
//! the namespace of its project. Scale goes through the `scale` subresource with its
//! `resourceVersion`, so a `kubectl scale` or an HPA in between is a conflict (read again),
//! never overwritten blindly. An upgrade sets the image of the container running the pushed
//! repository and follows the workload's own rollout.

mod rollout;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use async_trait::async_trait;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::{v1::Scale, v2::HorizontalPodAutoscaler},
    core::v1::PodSpec,
};
use kube::{
    api::{Api, ListParams, ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    Client,
};

use super::{Backend, BackendError, Journal, RolloutObserver, RolloutPlan, ScaleState, ServiceInfo};
use crate::{
    config::BackendConfig,
    domain::{ProjectName, ServiceId, ServiceKey},
};

/// A call to the API server is abandoned after this long (connect: a third of it).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Who hookd is in `managedFields`.
const FIELD_MANAGER: &str = "hookd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Deployment,
    StatefulSet,
}

impl Workload {
    fn as_str(self) -> &'static str {
        match self {
            Workload::Deployment => "deployment",
            Workload::StatefulSet => "statefulset",
        }
    }

    /// The `kind` an HPA's `scaleTargetRef` names.
    fn kind(self) -> &'static str {
        match self {
            Workload::Deployment => "Deployment",
            Workload::StatefulSet => "StatefulSet",
        }
    }
}

/// `deployment/web` (or `deploy/web`, `deployments.apps/web`, a bare `web`) → a Deployment `web`.
fn workload(id: &ServiceId) -> Result<(Workload, &str), BackendError> {
    let (kind, name) = id.as_str().split_once('/').unwrap_or(("deployment", id.as_str()));
    let kind = match kind.strip_suffix(".apps").unwrap_or(kind) {
        "deployment" | "deployments" | "deploy" => Workload::Deployment,
        "statefulset" | "statefulsets" | "sts" => Workload::StatefulSet,
        other => {
            return Err(BackendError::Refused(format!(
                "hookd scales Deployments and StatefulSets, named deployment/NAME or statefulset/NAME, not {other:?}"
            )))
        }
    };
    // Names go into the request path: only what Kubernetes names can be (DNS-1123 subdomains).
    let bytes = name.as_bytes();
    let valid = (1..=253).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric();
    if !valid {
        return Err(BackendError::Refused(format!(
            "{name:?} is not a Kubernetes name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        )));
    }
    Ok((kind, name))
}

pub struct KubernetesBackend {
    name: String,
    client: Client,
    namespace: String,
    /// Projects that name no namespace use their own name as one.
    per_project: bool,
    /// The API server's URL, for error messages.
    server: String,
}

impl KubernetesBackend {
    /// Reads the kubeconfig (or the in-cluster service account) now; connects lazily, so an
    /// API server that is down at start makes calls fail (503), not hookd.
    pub async fn start(config: &BackendConfig) -> anyhow::Result<Self> {
        let options = KubeConfigOptions { context: config.context.clone(), ..KubeConfigOptions::default() };
        let found = match &config.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &options).await.map_err(anyhow::Error::from)
            }
            None if config.context.is_some() => {
                kube::Config::from_kubeconfig(&options).await.map_err(anyhow::Error::from)
            }
            None => kube::Config::infer().await.map_err(anyhow::Error::from),
        };
        let mut kube =
            found.with_context(|| format!("backend {:?}: no Kubernetes API server configured", config.name))?;
        kube.connect_timeout = Some(TIMEOUT / 3);
        kube.read_timeout = Some(TIMEOUT);
        kube.write_timeout = Some(TIMEOUT);
        // Who acts, in the API server's audit log.
        kube.headers.push((
            reqwest::header::USER_AGENT,
            reqwest::header::HeaderValue::from_static(concat!("hookd/", env!("CARGO_PKG_VERSION"))),
        ));
        let namespace = config.namespace.clone().unwrap_or_else(|| kube.default_namespace.clone());
        let server = kube.cluster_url.to_string().trim_end_matches('/').to_owned();
        let client =
            Client::try_from(kube).with_context(|| format!("backend {:?}: a client for {server}", config.name))?;
        tracing::info!(backend = %config.name, %server, %namespace, "Kubernetes backend");
        Ok(Self { name: config.name.clone(), client, namespace, per_project: config.namespace_per_project, server })
    }

    /// The backend contract: 409 is `Conflict` (read again), other 4xx `Refused` (except
    /// 408 and 429, which pass), 5xx and transport errors `Unavailable` (503, retry later).
    fn error(&self, e: kube::Error) -> BackendError {
        match e {
            kube::Error::Api(answer) if answer.code == 409 => BackendError::Conflict,
            kube::Error::Api(answer) if (400..500).contains(&answer.code) && ![408, 429].contains(&answer.code) => {
                BackendError::Refused(format!(
                    "the Kubernetes API refused ({} {}): {}",
                    answer.code,
                    answer.reason,
                    answer.message.trim()
                ))
            }
            kube::Error::Api(answer) => BackendError::Unavailable(format!(
                "the Kubernetes API answered {} {}: {}",
                answer.code,
                answer.reason,
                answer.message.trim()
            )),
            other => BackendError::Unavailable(format!("cannot reach the Kubernetes API at {}: {other}", self.server)),
        }
    }

    /// A 404 on a workload means it does not exist; anything else maps as usual.
    fn not_found_or(&self, id: &ServiceId, e: kube::Error) -> BackendError {
        match e {
            kube::Error::Api(answer) if answer.code == 404 && answer.reason == "NotFound" => {
                BackendError::ServiceNotFound(id.clone())
            }
            other => self.error(other),
        }
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn statefulsets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn get_scale(&self, id: &ServiceId) -> Result<Scale, BackendError> {
        let (kind, name) = workload(id)?;
        let scale = match kind {
            Workload::Deployment => self.deployments().get_scale(name).await,
            Workload::StatefulSet => self.statefulsets().get_scale(name).await,
        };
        scale.map_err(|e| self.not_found_or(id, e))
    }
}

/// A scale's `resourceVersion` as the number [`ScaleState`] carries. The API server's are
/// numbers (etcd revisions); an opaque one is hashed, which only has to be stable.
fn version(scale: &Scale) -> u64 {
    let raw = scale.metadata.resource_version.as_deref().unwrap_or("");
    raw.parse().unwrap_or_else(|_| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        raw.hash(&mut hasher);
        hasher.finish()
    })
}

fn replicas(value: Option<i32>) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

fn info(
    kind: Workload,
    metadata: ObjectMeta,
    pod: Option<&PodSpec>,
    desired: Option<i32>,
    ready: Option<i32>,
    last_error: Option<String>,
) -> ServiceInfo {
    let mut images = pod.map(|p| p.containers.iter().map(|c| c.image.clone().unwrap_or_default()).collect::<Vec<_>>());
    let mut images = images.take().unwrap_or_default().into_iter();
    ServiceInfo {
        id: ServiceId::parse(&format!("{}/{}", kind.as_str(), metadata.name.unwrap_or_default()))
            .unwrap_or_else(|_| ServiceId::parse("unnamed").expect("a valid id")),
        kind: kind.as_str(),
        // The API server defaults an unset replicas to 1.
        desired: replicas(desired.or(Some(1))),
        running: replicas(ready),
        image: images.next().unwrap_or_default(),
        other_images: images.collect(),
        labels: metadata.labels.unwrap_or_default(),
        last_error,
    }
}

fn deployment_info(d: Deployment) -> ServiceInfo {
    let spec = d.spec.as_ref();
    let status = d.status.as_ref();
    // A stalled or failing rollout is what a person wants to see.
    let last_error = status.and_then(|s| s.conditions.as_ref()).and_then(|conditions| {
        conditions
            .iter()
            .find(|c| {
                (c.type_ == "Progressing" && c.status == "False") || (c.type_ == "ReplicaFailure" && c.status == "True")
            })
            .map(|c| format!("{}: {}", c.reason.as_deref().unwrap_or(&c.type_), c.message.as_deref().unwrap_or("")))
    });
    info(
        Workload::Deployment,
        d.metadata,
        spec.and_then(|s| s.template.spec.as_ref()),
        spec.and_then(|s| s.replicas),
        status.and_then(|s| s.ready_replicas),
        last_error,
    )
}

fn statefulset_info(s: StatefulSet) -> ServiceInfo {
    let spec = s.spec.as_ref();
    info(
        Workload::StatefulSet,
        s.metadata,
        spec.and_then(|s| s.template.spec.as_ref()),
        spec.and_then(|s| s.replicas),
        s.status.as_ref().and_then(|s| s.ready_replicas),
        None,
    )
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    async fn list_services(&self) -> Result<Vec<ServiceInfo>, BackendError> {
        let params = ListParams::default();
        let deployments = self.deployments().list(&params).await.map_err(|e| self.error(e))?;
        let statefulsets = self.statefulsets().list(&params).await.map_err(|e| self.error(e))?;
        let mut services: Vec<ServiceInfo> = deployments.items.into_iter().map(deployment_info).collect();
        services.extend(statefulsets.items.into_iter().map(statefulset_info));
        services.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        Ok(services)
    }

    async fn service(&self, id: &ServiceId) -> Result<ServiceInfo, BackendError> {
        let (kind, name) = workload(id)?;
        match kind {
            Workload::Deployment => {
                self.deployments().get(name).await.map(deployment_info).map_err(|e| self.not_found_or(id, e))
            }
            Workload::StatefulSet => {
                self.statefulsets().get(name).await.map(statefulset_info).map_err(|e| self.not_found_or(id, e))
            }
        }
    }

    fn canonical(&self, id: &ServiceId) -> ServiceId {
        match workload(id) {
            Ok((kind, name)) => ServiceId::parse(&format!("{}/{name}", kind.as_str())).unwrap_or_else(|_| id.clone()),
            Err(_) => id.clone(),
        }
    }

    /// Workloads of one name in two namespaces are two services.
    fn service_key(&self, id: &ServiceId) -> ServiceKey {
        ServiceKey::new(&format!("{}/{}", self.name, self.namespace), &self.canonical(id))
    }

    async fn check_zero(&self, id: &ServiceId) -> Result<(), BackendError> {
        match self.autoscaled_by(id).await? {
            Some(hpa) => Err(BackendError::Refused(format!(
                "{id} cannot be scaled to 0 alongside {hpa}: an HPA turns itself off at 0 replicas and does not \
                 scale the workload back up"
            ))),
            None => Ok(()),
        }
    }

    async fn autoscaled_by(&self, id: &ServiceId) -> Result<Option<String>, BackendError> {
        let (kind, name) = workload(id)?;
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = hpas.list(&ListParams::default()).await.map_err(|e| match self.error(e) {
            BackendError::Refused(why) => BackendError::Refused(format!(
                "hookd cannot tell whether an HPA scales {id}: {why}. Grant it list on \
                 horizontalpodautoscalers (see deploy/kubernetes/rbac.yaml), or set allowAutoscaler"
            )),
            other => other,
        })?;
        Ok(list
            .items
            .into_iter()
            .find(|hpa| {
                let target = hpa.spec.as_ref().map(|s| &s.scale_target_ref);
                target.is_some_and(|t| {
                    t.kind == kind.kind()
                        && t.name == name
                        && t.api_version.as_deref().is_none_or(|v| v == "apps/v1" || v == "apps")
                })
            })
            .map(|hpa| {
                format!("the HorizontalPodAutoscaler {}/{}", self.namespace, hpa.metadata.name.unwrap_or_default())
            }))
    }

    fn scoped(
        &self,
        project: &ProjectName,
        namespace: Option<&str>,
        made_through_api: bool,
    ) -> Result<Option<Arc<dyn Backend>>, String> {
        let namespace = match (namespace, self.per_project) {
            (Some(namespace), _) => namespace,
            (None, true) => project.as_str(),
            // Projects made through the API would all share one namespace, each reaching the
            // others' workloads.
            (None, false) if made_through_api => {
                return Err(format!(
                    "the Kubernetes backend {} puts every project in the namespace {}; projects made through the \
                     API need a namespace of their own: set namespace_per_project = true on the backend, or \
                     declare the project in the config file with its namespace",
                    self.name, self.namespace
                ))
            }
            (None, false) => return Ok(None),
        };
        crate::config::check_namespace(namespace)
            .map_err(|e| format!("project {project} cannot use the Kubernetes backend {}: {e}", self.name))?;
        Ok(Some(Arc::new(Self {
            name: self.name.clone(),
            client: self.client.clone(),
            namespace: namespace.to_owned(),
            per_project: self.per_project,
            server: self.server.clone(),
        })))
    }

    async fn read_scale(&self, id: &ServiceId) -> Result<ScaleState, BackendError> {
        let scale = self.get_scale(id).await?;
        let desired = scale.spec.as_ref().and_then(|s| s.replicas);
        Ok(ScaleState { scale: replicas(desired), version: version(&scale) })
    }

    async fn write_scale(
        &self,
        id: &ServiceId,
        expected: ScaleState,
        scale: u32,
        journal: &dyn Journal,
    ) -> Result<(), BackendError> {
        let (kind, name) = workload(id)?;
        let current = self.get_scale(id).await?;
        if version(&current) != expected.version {
            return Err(BackendError::Conflict);
        }
        let replicas =
            i32::try_from(scale).map_err(|_| BackendError::Refused(format!("{scale} replicas is too many")))?;
        // The version just read goes back with the write: the API server refuses it (409)
        // if anyone changed the scale in between.
        let wanted = Scale {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.namespace.clone()),
                resource_version: current.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::autoscaling::v1::ScaleSpec { replicas: Some(replicas) }),
            status: None,
        };
        let body = serde_json::to_vec(&wanted).map_err(|e| BackendError::Refused(e.to_string()))?;
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        journal.commit(None).await?;
        let written = match kind {
            Workload::Deployment => self.deployments().replace_scale(name, &params, body).await,
            Workload::StatefulSet => self.statefulsets().replace_scale(name, &params, body).await,
        };
        written.map(|_| ()).map_err(|e| self.not_found_or(id, e))
    }

    fn can_upgrade(&self) -> bool {
        true
    }

    /// Kubernetes rolls the pods itself, by the workload's own strategy (`maxSurge`,
    /// `maxUnavailable`, a StatefulSet's `partition`): hookd sets the image and follows.
    async fn upgrade(
        &self,
        id: &ServiceId,
        image: &str,
        plan: RolloutPlan,
        observer: &dyn RolloutObserver,
    ) -> Result<(), BackendError> {
        let _ = plan;
        rollout::upgrade(self, id, image, observer).await
    }

    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ErrorResponse;

    async fn backend(url: &str) -> KubernetesBackend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n\
                 contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n    namespace: team\n\
                 current-context: ctx\nusers:\n- name: u\n  user:\n    token: secret\n"
            ),
        )
        .unwrap();
        let mut config = BackendConfig::new("k8s", crate::config::BackendKind::Kubernetes);
        config.kubeconfig = Some(path);
        KubernetesBackend::start(&config).await.unwrap()
    }

    #[test]
    fn services_are_deployments_unless_named_statefulsets() {
        let id = |s: &str| ServiceId::parse(s).unwrap();
        assert_eq!(workload(&id("web")).unwrap(), (Workload::Deployment, "web"));
        assert_eq!(workload(&id("deploy/web")).unwrap(), (Workload::Deployment, "web"));
        assert_eq!(workload(&id("deployments.apps/web")).unwrap(), (Workload::Deployment, "web"));
        assert_eq!(workload(&id("sts/db")).unwrap(), (Workload::StatefulSet, "db"));
        assert!(matches!(workload(&id("pod/web")), Err(BackendError::Refused(m)) if m.contains("pod")));
        for bad in ["deployment/web?x=1", "deployment/../secrets", "deployment/Web", "deployment/-web", "deployment/"] {
            assert!(matches!(workload(&id(bad)), Err(BackendError::Refused(_))), "{bad}");
        }
    }

    /// Issue 16: the backend contract for the API server's answers.
    #[tokio::test]
    async fn issue_16_api_answers_map_to_the_backend_contract() {
        // https: the TLS stack must build without a process-wide crypto provider.
        let backend = backend("https://127.0.0.1:9").await;
        assert_eq!(backend.namespace, "team", "the context's namespace is the default");
        let answer = |code: u16, reason: &str| {
            kube::Error::Api(ErrorResponse {
                status: "Failure".into(),
                message: "no".into(),
                reason: reason.into(),
                code,
            })
        };
        assert!(matches!(backend.error(answer(409, "Conflict")), BackendError::Conflict));
        for (code, reason) in [(403, "Forbidden"), (422, "Invalid"), (400, "BadRequest")] {
            assert!(matches!(backend.error(answer(code, reason)), BackendError::Refused(m) if m.contains(reason)));
        }
        for (code, reason) in [(500, "InternalError"), (503, "ServiceUnavailable"), (429, "TooManyRequests")] {
            assert!(matches!(backend.error(answer(code, reason)), BackendError::Unavailable(_)));
        }
        let id = ServiceId::parse("deployment/web").unwrap();
        assert!(matches!(backend.not_found_or(&id, answer(404, "NotFound")), BackendError::ServiceNotFound(_)));
        let down = backend.read_scale(&id).await.unwrap_err();
        assert!(matches!(&down, BackendError::Unavailable(m) if m.contains("127.0.0.1:9")), "{down:?}");
    }

    #[tokio::test]
    async fn projects_get_their_namespace_and_their_own_service_keys() {
        let mut root = backend("http://127.0.0.1:9").await;
        let project = ProjectName::parse("team_a").unwrap();
        assert!(root.scoped(&project, None, false).unwrap().is_none());
        assert!(root.scoped(&project, None, true).err().unwrap().contains("namespace_per_project"));
        let scoped = root.scoped(&project, Some("payments"), false).unwrap().unwrap();
        let id = ServiceId::parse("web").unwrap();
        assert_ne!(scoped.service_key(&id), root.service_key(&id));
        assert_eq!(root.service_key(&id), root.service_key(&ServiceId::parse("deployment/web").unwrap()));
        root.per_project = true;
        let refused = root.scoped(&project, None, true).err().unwrap();
        assert!(refused.contains("team_a"), "{refused}");
        assert!(root.scoped(&ProjectName::parse("team-a").unwrap(), None, true).unwrap().is_some());
    }
}
