//! What Swarm and Compose rollouts share: when a replica already runs the target image,
//! and how long a rollout may go without progress.

use std::time::Duration;

/// How often a Swarm rollout is polled.
pub const POLL: Duration = Duration::from_millis(500);

/// A Swarm rollout whose progress (replicas on the new image, or the update's state) stands
/// still this long, beyond the plan's interval, fails. Swarm retries a task that cannot
/// start forever; `failure_action: pause` normally ends such a rollout within seconds, and
/// this bound catches the rest (a pull that hangs, a node that never answers).
pub const STALL: Duration = Duration::from_secs(300);

/// A pull of the target image for Compose gets this long (a layer can be large).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// An image reference split into `name:tag` with Docker's defaults spelled out, and its
/// digest pin if any.
fn normalize(image: &str) -> (String, Option<&str>) {
    let (reference, digest) = match image.split_once('@') {
        Some((reference, digest)) => (reference, Some(digest)),
        None => (image, None),
    };
    let (name, tag) = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    };
    let name = name.strip_prefix("docker.io/").or_else(|| name.strip_prefix("index.docker.io/")).unwrap_or(name);
    let name = name.strip_prefix("library/").unwrap_or(name);
    (format!("{name}:{tag}"), digest)
}

/// Whether `running` is `target`: the same name and tag (`app` is `docker.io/library/app:latest`),
/// ignoring a digest pin that Swarm added to `running` unless `target` pins one itself.
pub fn same_image(running: &str, target: &str) -> bool {
    let (running, running_digest) = normalize(running);
    let (target, target_digest) = normalize(target);
    running == target && (target_digest.is_none() || running_digest == target_digest)
}

/// The name and tag to pull `image` by: without either, the engine would pull every tag.
pub fn pull_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), Some(tag.to_owned())),
        _ => (image.to_owned(), Some("latest".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_compare_by_name_and_tag_with_defaults_and_pins() {
        assert!(same_image("hookd-test/sleeper:2@sha256:abc", "hookd-test/sleeper:2"));
        assert!(same_image("nginx", "docker.io/library/nginx:latest"));
        assert!(same_image("registry:5000/team/app:v2", "registry:5000/team/app:v2"));
        assert!(!same_image("registry:5000/team/app", "registry:5000/team/app:v2"));
        assert!(!same_image("hookd-test/sleeper:1", "hookd-test/sleeper:2"));
        assert!(!same_image("app:v2@sha256:old", "app:v2@sha256:new"));
        assert!(same_image("app:v2@sha256:new", "app:v2@sha256:new"));
    }

    #[test]
    fn pulls_name_one_tag() {
        assert_eq!(pull_reference("registry:5000/app"), ("registry:5000/app".into(), Some("latest".into())));
        assert_eq!(pull_reference("registry:5000/app:v2"), ("registry:5000/app".into(), Some("v2".into())));
        assert_eq!(pull_reference("app@sha256:abc"), ("app@sha256:abc".into(), None));
    }
}
