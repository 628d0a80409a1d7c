//! Keeping every process a local service starts inside its replica, and finding them again.
//!
//! Three layers: each replica runs under a keeper process (`keeper.rs`) that is a child
//! subreaper and kills the whole tree when the replica stops or hookd dies; where cgroup v2
//! is writable, each replica also gets its own cgroup, which no process can leave; and every
//! process carries this data directory's instance id in its environment, so the next start
//! can kill whatever a killed hookd and its keepers left behind.

use std::{
    collections::HashMap,
    ffi::OsStr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// Carried by every process a local service starts: the data directory's instance id.
pub const INSTANCE_ENV: &str = "HOOKD_INSTANCE";

/// Every process now running, by parent.
fn children_by_parent() -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return children };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ')'.
        let ppid = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    children
}

/// Every live descendant of `root`, parents before children.
pub fn descendants(root: i32) -> Vec<i32> {
    let children = children_by_parent();
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            found.push(child);
            queue.push(child);
        }
    }
    found
}

/// Processes (not zombies) whose environment holds every one of `entries` ("KEY=value").
pub fn pids_with_env(entries: &[&str]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return pids };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if entries.iter().all(|e| vars.contains(&e.as_bytes())) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILLs the processes `find` returns until none is left (or `within` passes); returns
/// how many it killed.
fn kill_until_gone(find: impl Fn() -> Vec<i32>, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut killed = std::collections::HashSet::new();
    loop {
        let pids = find();
        if pids.is_empty() || Instant::now() >= deadline {
            return killed.len();
        }
        for pid in pids {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Carried by every process of one start of a replica: a random id, so a sweep after its
/// keeper died never reaches the replica started in its place.
pub const RUN_ENV: &str = "HOOKD_REPLICA_RUN";

/// Kills the processes of one start of a replica, found by their environment (when its
/// keeper died and cannot stop them).
pub fn sweep_replica(instance: &str, run: &str) -> usize {
    let entries = [format!("{INSTANCE_ENV}={instance}"), format!("{RUN_ENV}={run}")];
    let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
    kill_until_gone(|| pids_with_env(&entries), Duration::from_secs(5))
}

/// Kills everything a previous run of this data directory left running; returns how many.
pub fn reap_leftovers(instance: &str, cgroups: Option<&Cgroups>) -> usize {
    let marker = format!("{INSTANCE_ENV}={instance}");
    let mut reaped = kill_until_gone(|| pids_with_env(&[&marker]), Duration::from_secs(5));
    if let Some(cgroups) = cgroups {
        reaped += cgroups.reap_all();
    }
    reaped
}

/// Where `command` runs from: a path as given (relative to `workdir`), or the first
/// executable of that name on `path_var`. The error says what is wrong, for `lastError`.
pub fn resolve(command: &str, path_var: Option<&OsStr>, workdir: Option<&Path>) -> Result<PathBuf, String> {
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if command.contains('/') {
        let path = match workdir {
            Some(dir) if Path::new(command).is_relative() => dir.join(command),
            _ => PathBuf::from(command),
        };
        return match std::fs::metadata(&path) {
            Err(e) => Err(format!("{}: {e}", path.display())),
            Ok(_) if !executable(&path) => Err(format!("{} is not an executable file", path.display())),
            Ok(_) => Ok(path),
        };
    }
    let path_var = path_var.map(OsStr::to_owned).or_else(|| std::env::var_os("PATH")).unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(command))
        .find(|p| executable(p))
        .ok_or_else(|| format!("{command:?} was not found on PATH ({})", path_var.to_string_lossy()))
}

/// A cgroup v2 subtree for this data directory's replicas, one cgroup each.
pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    /// The subtree under hookd's own cgroup, when cgroup v2 is mounted and writable there
    /// and supports `cgroup.kill` (Linux 5.14).
    pub fn detect(instance: &str) -> Option<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim_start_matches('/').to_owned();
        let parent = mount.join(own);
        remove_empty_subtrees(&parent);
        let root = parent.join(format!("hookd-{instance}"));
        std::fs::create_dir_all(&root).ok()?;
        let probe = root.join("probe");
        let _ = std::fs::remove_dir(&probe);
        std::fs::create_dir(&probe).ok()?;
        let killable = probe.join("cgroup.kill").exists();
        let _ = std::fs::remove_dir(&probe);
        killable.then_some(Self { root })
    }

    /// The subtree of one backend.
    pub fn for_backend(&self, backend: &str) -> std::io::Result<Self> {
        let root = self.root.join(safe_name(backend));
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// The cgroup of one start of a replica (`web.2.17`); names are made safe for the file system.
    pub fn replica_dir(&self, service: &str, replica: u32, start: u64) -> PathBuf {
        self.root.join(format!("{}.{replica}.{start}", safe_name(service)))
    }

    /// A fresh, empty cgroup at `dir` (whatever an earlier one held is killed).
    pub fn prepare(&self, dir: &Path) -> std::io::Result<()> {
        if dir.exists() {
            Self::remove(dir);
        }
        std::fs::create_dir_all(dir)
    }

    /// SIGKILLs every process in the cgroup.
    pub fn kill(dir: &Path) {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }

    fn pids(dir: &Path) -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills what is left in the cgroup and removes it; returns how many processes it held.
    pub fn remove(dir: &Path) -> usize {
        let held = Self::pids(dir).len();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
            Self::kill(dir);
            std::thread::sleep(Duration::from_millis(20));
        }
        held
    }

    /// Kills and removes every cgroup below the root; returns how many processes they held.
    pub fn reap_all(&self) -> usize {
        fn reap(dir: &Path) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
            let subdirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
            subdirs.iter().map(|sub| reap(sub) + Cgroups::remove(sub)).sum()
        }
        reap(&self.root)
    }

    /// Removes the (empty) subtree itself, at shutdown.
    pub fn remove_root(&self) {
        self.reap_all();
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// Removes the empty `hookd-*` cgroups that hookds whose data directories are gone left
/// behind. Only empty cgroups can be removed, so a running hookd's are never touched.
fn remove_empty_subtrees(parent: &Path) {
    fn remove_empty(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for sub in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
                remove_empty(&sub);
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("hookd-") && entry.path().is_dir() {
            remove_empty(&entry.path());
        }
    }
}

/// A cgroup directory name for `name`: safe characters kept, a hash added if any was not.
fn safe_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if safe == name {
        return safe;
    }
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(name));
    format!("{safe}~{}", hex::encode(&digest[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_on_path_or_say_why_not() {
        assert_eq!(resolve("sh", Some(OsStr::new("/nonexistent:/bin")), None), Ok(PathBuf::from("/bin/sh")));
        let missing = resolve("no-such-command-x", Some(OsStr::new("/bin:/usr/bin")), None).unwrap_err();
        assert!(missing.contains("not found on PATH (/bin:/usr/bin)"), "{missing}");
        let absent = resolve("/nonexistent/worker", None, None).unwrap_err();
        assert!(absent.starts_with("/nonexistent/worker: "), "{absent}");
        let plain = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(plain.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let not_exec = resolve(plain.path().to_str().unwrap(), None, None).unwrap_err();
        assert!(not_exec.contains("not an executable file"), "{not_exec}");
        assert_eq!(resolve("./sh", None, Some(Path::new("/bin"))), Ok(PathBuf::from("/bin/./sh")));
    }

    #[test]
    fn a_process_tree_is_found_from_its_root() {
        let mut child = std::process::Command::new("sh").args(["-c", "sleep 30 & sleep 30 & wait"]).spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while descendants(pid).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let found = descendants(pid);
        assert_eq!(found.len(), 2, "{found:?}");
        for p in found {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        child.wait().unwrap();
    }
}
