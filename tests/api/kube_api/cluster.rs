//! The test API server's state: objects as the API server stores them, patches as it applies
//! them, and the Deployment and StatefulSet controllers' effect on `status`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};

/// The resources served, by plural name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Deployments,
    StatefulSets,
    Hpas,
}

impl Resource {
    pub fn parse(group: &str, version: &str, plural: &str) -> Option<Self> {
        match (group, version, plural) {
            ("apps", "v1", "deployments") => Some(Resource::Deployments),
            ("apps", "v1", "statefulsets") => Some(Resource::StatefulSets),
            ("autoscaling", "v2", "horizontalpodautoscalers") => Some(Resource::Hpas),
            _ => None,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Resource::Deployments => "Deployment",
            Resource::StatefulSets => "StatefulSet",
            Resource::Hpas => "HorizontalPodAutoscaler",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Deployments | Resource::StatefulSets => "apps/v1",
            Resource::Hpas => "autoscaling/v2",
        }
    }

    /// `deployments.apps`, as the API server's messages name it.
    pub fn qualified(self) -> &'static str {
        match self {
            Resource::Deployments => "deployments.apps",
            Resource::StatefulSets => "statefulsets.apps",
            Resource::Hpas => "horizontalpodautoscalers.autoscaling",
        }
    }

    pub fn scalable(self) -> bool {
        self != Resource::Hpas
    }
}

/// An API error as a `Status` object: code, reason, message.
#[derive(Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into() }
    }

    pub fn not_found(resource: Resource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", resource.qualified()))
    }

    pub fn conflict(resource: Resource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your \
                 changes to the latest version and try again",
                resource.qualified()
            ),
        )
    }

    pub fn invalid(resource: Resource, name: &str, why: &str) -> Self {
        Self::new(422, "Invalid", format!("{} \"{name}\" is invalid: {why}", resource.kind()))
    }
}

/// Where a workload's pods stand, as its controller sees them (not part of the API).
#[derive(Debug, Default)]
struct Pods {
    /// The template the newest pods run.
    template: String,
    updated: u32,
    /// Updated pods that are ready (a pod becomes ready a tick after it starts).
    ready: u32,
    old: u32,
    /// Milliseconds (server clock) of the last progress.
    progressed: u64,
    revision: u32,
}

#[derive(Default)]
pub struct Cluster {
    revision: u64,
    objects: BTreeMap<(Resource, String, String), Value>,
    pods: HashMap<(Resource, String, String), Pods>,
    /// Images whose pods never become ready.
    pub failing_images: HashSet<String>,
    /// Namespaces where the caller is forbidden everything.
    pub forbidden_namespaces: HashSet<String>,
    /// Every request: method, path and query.
    pub requests: Vec<String>,
    /// Every scale written: (milliseconds on the server's clock, name, replicas, user agent).
    pub scale_writes: Vec<(u64, String, i64, String)>,
    /// Another client's scale of a workload, written just before the next scale write to it.
    pub interpose: Option<(String, i64)>,
    /// Writes refused with 409.
    pub conflicts: u32,
    /// What hookd's token may do: the ClusterRole of deploy/kubernetes/rbac.yaml.
    pub rules: Vec<Rule>,
    /// A mutating admission webhook that pins each image's digest (`repo:tag@sha256:…`).
    pub pin_digests: bool,
    /// What hookd's token did: `group/resource/verb`.
    pub used: std::collections::BTreeSet<String>,
}

/// One RBAC policy rule.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

/// The rules of the ClusterRole in deploy/kubernetes/rbac.yaml, the manifest users apply.
pub fn shipped_rules() -> Vec<Rule> {
    let manifest = include_str!("../../../deploy/kubernetes/rbac.yaml");
    let role = manifest
        .split("\n---\n")
        .map(|doc| yaml_serde::from_str::<Value>(doc).expect("rbac.yaml is YAML"))
        .find(|doc| doc["kind"] == "ClusterRole")
        .expect("rbac.yaml has a ClusterRole");
    serde_json::from_value(role["rules"].clone()).expect("rules")
}

/// Whether `rules` allow `verb` on `resource` (`deployments`, `deployments/scale`) of `group`.
pub fn allowed(rules: &[Rule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups.iter().any(|g| g == group || g == "*")
            && r.resources.iter().any(|x| x == resource || x == "*")
            && r.verbs.iter().any(|v| v == verb || v == "*")
    })
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

impl Cluster {
    fn next_version(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    pub fn list(&self, resource: Resource, namespace: &str) -> Value {
        let items: Vec<&Value> =
            self.objects.iter().filter(|((r, ns, _), _)| *r == resource && ns == namespace).map(|(_, v)| v).collect();
        json!({
            "apiVersion": resource.api_version(),
            "kind": format!("{}List", resource.kind()),
            "metadata": { "resourceVersion": self.revision.to_string() },
            "items": items,
        })
    }

    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&(resource, namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    pub fn create(&mut self, resource: Resource, namespace: &str, mut object: Value) -> Result<Value, ApiError> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(ApiError::invalid(resource, "", "metadata.name: Required value: name is required"));
        }
        let key = (resource, namespace.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.qualified()),
            ));
        }
        validate(resource, &name, &object)?;
        let version = self.next_version();
        let metadata = object["metadata"].as_object_mut().expect("metadata is an object");
        metadata.insert("namespace".into(), json!(namespace));
        metadata.insert("uid".into(), json!(uuid::Uuid::now_v7().to_string()));
        metadata.insert("resourceVersion".into(), json!(version));
        metadata.insert("generation".into(), json!(1));
        metadata.insert("creationTimestamp".into(), json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()));
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind());
        if resource.scalable() {
            if object["spec"]["replicas"].is_null() {
                object["spec"]["replicas"] = json!(1);
            }
            object["status"] = json!({ "observedGeneration": 0 });
        }
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    /// Stores `object` over the current one if `resourceVersion` (when given) still matches;
    /// bumps `generation` when the spec changed.
    pub fn replace(
        &mut self,
        resource: Resource,
        namespace: &str,
        name: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let current = self.get(resource, namespace, name)?;
        let sent = object["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        if !sent.is_empty() && sent != current["metadata"]["resourceVersion"].as_str().unwrap_or_default() {
            return Err(ApiError::conflict(resource, name));
        }
        validate(resource, name, &object)?;
        if self.pin_digests {
            pin_digests(&mut object);
        }
        let mut generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        if object["spec"] != current["spec"] {
            generation += 1;
        }
        // Identity and status are the server's: a write of the object changes neither.
        let mut metadata = current["metadata"].clone();
        for field in ["labels", "annotations"] {
            if let Some(value) = object["metadata"].get(field) {
                metadata[field] = value.clone();
            }
        }
        metadata["generation"] = json!(generation);
        metadata["resourceVersion"] = json!(self.next_version());
        object["metadata"] = metadata;
        object["status"] = current["status"].clone();
        object["apiVersion"] = current["apiVersion"].clone();
        object["kind"] = current["kind"].clone();
        self.objects.insert((resource, namespace.to_owned(), name.to_owned()), object.clone());
        Ok(object)
    }

    pub fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let key = (resource, namespace.to_owned(), name.to_owned());
        self.pods.remove(&key);
        self.objects.remove(&key).ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// The `scale` subresource of a workload (autoscaling/v1 `Scale`).
    pub fn scale(&self, resource: Resource, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let object = self.get(resource, namespace, name)?;
        let labels = object["spec"]["selector"]["matchLabels"].as_object().cloned().unwrap_or_default();
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
        Ok(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": name, "namespace": namespace,
                "uid": object["metadata"]["uid"], "resourceVersion": object["metadata"]["resourceVersion"],
                "creationTimestamp": object["metadata"]["creationTimestamp"],
            },
            "spec": { "replicas": object["spec"]["replicas"] },
            "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector.join(",") },
        }))
    }

    /// Writes a `Scale`: its `spec.replicas`, guarded by its `resourceVersion` when set.
    pub fn write_scale(
        &mut self,
        resource: Resource,
        namespace: &str,
        name: &str,
        scale: &Value,
        agent: &str,
    ) -> Result<Value, ApiError> {
        if let Some((_, replicas)) = self.interpose.take_if(|(n, _)| n == name) {
            let mut other = self.scale(resource, namespace, name)?;
            other["spec"]["replicas"] = json!(replicas);
            self.write_scale(resource, namespace, name, &other, "another client")?;
        }
        let mut object = self.get(resource, namespace, name)?;
        let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                resource,
                name,
                &format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
            ));
        }
        object["spec"]["replicas"] = json!(replicas);
        object["metadata"]["resourceVersion"] = scale["metadata"]["resourceVersion"].clone();
        if let Err(e) = self.replace(resource, namespace, name, object) {
            self.conflicts += u32::from(e.code == 409);
            return Err(e);
        }
        self.scale_writes.push((now_ms(), name.to_owned(), replicas, agent.to_owned()));
        self.scale(resource, namespace, name)
    }

    /// One pass of the workload controllers: pods move one step towards the spec.
    pub fn reconcile(&mut self) {
        let now = now_ms();
        let keys: Vec<_> = self.objects.keys().filter(|(r, _, _)| r.scalable()).cloned().collect();
        for key in keys {
            let object = self.objects.get_mut(&key).expect("listed");
            let pods = self.pods.entry(key.clone()).or_insert_with(|| Pods { progressed: now, ..Pods::default() });
            let want = object["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
            let template = object["spec"]["template"].to_string();
            if template != pods.template {
                // A new template: every pod now runs an old one.
                pods.old += pods.updated;
                pods.updated = 0;
                pods.ready = 0;
                pods.template = template;
                pods.progressed = now;
                pods.revision += 1;
            }
            let images: Vec<&str> = object["spec"]["template"]["spec"]["containers"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["image"].as_str()).collect())
                .unwrap_or_default();
            let failing = images.iter().any(|i| self.failing_images.contains(*i));
            let before = (pods.updated, pods.ready, pods.old);
            let on_delete = object["spec"]["updateStrategy"]["type"] == "OnDelete" && pods.old > 0;
            if object["spec"]["paused"] == true || on_delete {
                // A paused Deployment's controller rolls nothing.
            } else if failing {
                // maxSurge 1: one new pod is started, and never becomes ready.
                pods.updated = pods.updated.max(1).min(want.max(1));
            } else if pods.ready < pods.updated {
                pods.ready += 1;
            } else if pods.updated < want {
                pods.updated += 1;
                pods.old = pods.old.saturating_sub(1);
            } else if pods.updated > want {
                pods.updated = want;
                pods.ready = pods.ready.min(want);
            } else if pods.old > 0 {
                pods.old -= 1;
            }
            if (pods.updated, pods.ready, pods.old) != before {
                pods.progressed = now;
            }
            let ready = if failing { pods.old } else { pods.ready + pods.old };
            let generation = object["metadata"]["generation"].clone();
            let name = key.2.clone();
            let status = match key.0 {
                Resource::Deployments => {
                    let deadline = object["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600) * 1000;
                    let done = pods.updated == want && pods.old == 0 && !failing;
                    let progressing = if failing && now - pods.progressed > deadline {
                        json!({ "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                "message": format!("ReplicaSet \"{name}-{}\" has timed out progressing.", pods.revision) })
                    } else if done {
                        json!({ "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                "message": format!("ReplicaSet \"{name}-{}\" has successfully progressed.", pods.revision) })
                    } else {
                        json!({ "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                                "message": format!("ReplicaSet \"{name}-{}\" is progressing.", pods.revision) })
                    };
                    json!({
                        "observedGeneration": generation, "replicas": pods.updated + pods.old,
                        "updatedReplicas": pods.updated, "readyReplicas": ready, "availableReplicas": ready,
                        "unavailableReplicas": (pods.updated + pods.old).saturating_sub(ready),
                        "conditions": [
                            { "type": "Available", "status": if ready >= want { "True" } else { "False" } },
                            progressing,
                        ],
                    })
                }
                _ => {
                    let update = format!("{name}-{}", pods.revision);
                    let current = if pods.old == 0 { update.clone() } else { format!("{name}-{}", pods.revision - 1) };
                    json!({
                        "observedGeneration": generation, "replicas": pods.updated + pods.old,
                        "updatedReplicas": pods.updated, "readyReplicas": ready, "availableReplicas": ready,
                        "currentReplicas": if pods.old == 0 { pods.updated } else { pods.old },
                        "currentRevision": current, "updateRevision": update,
                    })
                }
            };
            if object["status"] != status {
                object["status"] = status;
                self.revision += 1;
                object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
            }
        }
    }
}

fn pin_digests(object: &mut Value) {
    use sha2::Digest;
    for container in object["spec"]["template"]["spec"]["containers"].as_array_mut().into_iter().flatten() {
        let Some(image) = container["image"].as_str().filter(|i| !i.contains('@')) else { continue };
        let digest = hex::encode(sha2::Sha256::digest(image.as_bytes()));
        container["image"] = json!(format!("{image}@sha256:{digest}"));
    }
}

fn validate(resource: Resource, name: &str, object: &Value) -> Result<(), ApiError> {
    if !resource.scalable() {
        return Ok(());
    }
    if object["spec"]["replicas"].as_i64().is_some_and(|r| r < 0) {
        return Err(ApiError::invalid(
            resource,
            name,
            "spec.replicas: Invalid value: must be greater than or equal to 0",
        ));
    }
    let containers = object["spec"]["template"]["spec"]["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        return Err(ApiError::invalid(resource, name, "spec.template.spec.containers: Required value"));
    }
    for (i, c) in containers.into_iter().flatten().enumerate() {
        if c["image"].as_str().is_none_or(|i| i.trim().is_empty()) {
            return Err(ApiError::invalid(
                resource,
                name,
                &format!("spec.template.spec.containers[{i}].image: Required value"),
            ));
        }
    }
    Ok(())
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (_, Some(patch)) => {
            *target = Value::Object(Map::new());
            merge_patch(target, &Value::Object(patch.clone()));
        }
        _ => *target = patch.clone(),
    }
}

/// The merge keys of the lists hookd and kubectl patch (from the API types' `patchMergeKey`).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

/// A strategic merge patch: like a merge patch, but lists with a merge key merge by it, and
/// directives (`$setElementOrder/...`, `$retainKeys`) are read as the server reads them.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let (Some(target), Some(patch)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        match (merge_key(key), value) {
            (_, Value::Null) => {
                target.remove(key);
            }
            (Some(merge_key), Value::Array(items)) => {
                let list = target.entry(key.clone()).or_insert(json!([]));
                let Some(list) = list.as_array_mut() else { continue };
                for item in items {
                    match list
                        .iter_mut()
                        .find(|e| e.get(merge_key).is_some() && e.get(merge_key) == item.get(merge_key))
                    {
                        Some(existing) => strategic_merge_patch(existing, item),
                        None => list.push(item.clone()),
                    }
                }
            }
            (None, Value::Object(_)) => {
                let entry = target.entry(key.clone()).or_insert(json!({}));
                strategic_merge_patch(entry, value);
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// RFC 6902 JSON patch, the operations kubectl and clients send (`test` included).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    for op in patch.as_array().ok_or("a JSON patch is a list")? {
        let path = op["path"].as_str().ok_or("an operation has no path")?;
        let pointer = path.to_owned();
        match op["op"].as_str() {
            Some("replace") | Some("add") => {
                let (parent, last) = pointer.rsplit_once('/').ok_or("a bad path")?;
                let parent = target.pointer_mut(parent).ok_or_else(|| format!("{parent} does not exist"))?;
                match parent {
                    Value::Object(map) => {
                        map.insert(last.replace("~1", "/").replace("~0", "~"), op["value"].clone());
                    }
                    Value::Array(list) => {
                        let index: usize = last.parse().map_err(|_| "a bad index")?;
                        if op["op"] == "add" {
                            list.insert(index.min(list.len()), op["value"].clone());
                        } else {
                            *list.get_mut(index).ok_or("no such index")? = op["value"].clone();
                        }
                    }
                    _ => return Err(format!("{path} is not in an object or a list")),
                }
            }
            Some("remove") => {
                let (parent, last) = pointer.rsplit_once('/').ok_or("a bad path")?;
                match target.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(last);
                    }
                    Some(Value::Array(list)) if last.parse::<usize>().is_ok_and(|i| i < list.len()) => {
                        list.remove(last.parse::<usize>().expect("checked"));
                    }
                    _ => return Err(format!("{path} does not exist")),
                }
            }
            Some("test") => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("the test of {path} failed"));
                }
            }
            other => return Err(format!("the operation {other:?} is not supported")),
        }
    }
    Ok(())
}
