//! The `command` host provider: the operator's scripts list, create and delete hosts, the
//! docker-machine-driver idea usable with terraform, a cloud CLI or anything.
//!
//! - `list` prints a JSON array: `[{"name", "labels": {..}, "created": RFC 3339 or ms, "healthy"}]`.
//! - `create` gets `HOOKD_HOST_NAME` and `HOOKD_HOST_LABELS` (a JSON object) and exits 0
//!   once the host is up.
//! - `delete` gets `HOOKD_HOST_NAME` and exits 0 once the host is gone (and when it was
//!   never there: hookd calls it again after a restart, and to roll back a failed create).
//!
//! Each runs in its own process group, killed whole at `timeout_seconds`; `HOOKD_POOL`
//! names the pool.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::{HostError, HostProvider};
use crate::domain::host::HostInfo;

/// Most of a script's output kept: the end of it says what went wrong.
const OUTPUT_TAIL: usize = 2000;
/// The most a script may print on stdout (a list of many thousand hosts), and the most of its
/// stderr kept: a script that prints without end must not fill hookd's memory.
const STDOUT_CAP: usize = 4 << 20;
const STDERR_CAP: usize = 64 << 10;

pub struct CommandProvider {
    script: Script,
    list: Vec<String>,
    create: Vec<String>,
    delete: Vec<String>,
}

/// Runs a pool's scripts: in their own process group, killed whole at the timeout.
pub(super) struct Script {
    pub pool: String,
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListedHost {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    created: Option<serde_json::Value>,
    #[serde(default = "healthy")]
    healthy: bool,
}

fn healthy() -> bool {
    true
}

impl CommandProvider {
    pub fn new(pool: &str, list: Vec<String>, create: Vec<String>, delete: Vec<String>, timeout: Duration) -> Self {
        Self { script: Script { pool: pool.to_owned(), timeout }, list, create, delete }
    }
}

impl Script {
    /// Runs `argv` with `env`; its stdout, or why it failed (exit status and output's end).
    pub async fn run(&self, what: &str, argv: &[String], env: &[(&str, String)]) -> Result<String, HostError> {
        let (program, args) = argv.split_first().ok_or_else(|| HostError::Failed(format!("no {what} command")))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("HOOKD_POOL", &self.pool)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // hookd's own settings (a database URL, an admin token) are none of a script's business.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("HOOKD_")) {
                command.env_remove(key);
            }
        }
        for (key, value) in env {
            command.env(key, value);
        }
        // A script outlives no killed hookd: the restarted one cleans up and runs it again,
        // and must not race a leftover run.
        // SAFETY: only prctl, async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| HostError::Failed(format!("the {what} command {program:?} could not start: {e}")))?;
        let pid = child.id().map(|p| p as i32);
        // Dropped unfinished (a job given up, a client gone): the whole group goes.
        let _group = Group(pid);
        let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let run = async {
            let (out, err, status) =
                tokio::join!(read_capped(&mut stdout, STDOUT_CAP), read_capped(&mut stderr, STDERR_CAP), child.wait());
            (out, err.0, status)
        };
        let ((out, out_total), err, status) = match tokio::time::timeout(self.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                kill_group(pid);
                return Err(HostError::Failed(format!(
                    "the {what} command did not finish within {} s; it was killed",
                    self.timeout.as_secs()
                )));
            }
        };
        // Whatever the script left behind in its group goes with it.
        kill_group(pid);
        let stdout = String::from_utf8_lossy(&out).into_owned();
        match status {
            Ok(status) if status.success() && out_total > STDOUT_CAP => Err(HostError::Failed(format!(
                "the {what} command printed {out_total} bytes; hookd reads at most {STDOUT_CAP}"
            ))),
            Ok(status) if status.success() => Ok(stdout),
            Ok(status) => Err(HostError::Failed(format!(
                "the {what} command failed ({status}): {}",
                tail(&String::from_utf8_lossy(&err), &stdout)
            ))),
            Err(e) => Err(HostError::Failed(format!("the {what} command could not be waited for: {e}"))),
        }
    }
}

/// Reads a pipe to its end, keeping its last `cap` bytes; returns them and how many came.
async fn read_capped(pipe: &mut (impl tokio::io::AsyncRead + Unpin), cap: usize) -> (Vec<u8>, usize) {
    let (mut kept, mut total, mut buf) = (Vec::new(), 0, vec![0u8; 16 << 10]);
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        total += n;
        kept.extend_from_slice(&buf[..n]);
        // Trimmed once it holds twice the cap: each byte is moved at most once more.
        if kept.len() > 2 * cap {
            kept.drain(..kept.len() - cap);
        }
    }
    if kept.len() > cap {
        kept.drain(..kept.len() - cap);
    }
    (kept, total)
}

/// Kills a script's process group when dropped.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

fn kill_group(pid: Option<i32>) {
    if let Some(pid) = pid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

fn tail(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
    let start = text.len().saturating_sub(OUTPUT_TAIL);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    text[start..].to_owned()
}

fn created(value: Option<serde_json::Value>) -> Result<i64, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(|| format!("created {n} is not milliseconds")),
        Some(serde_json::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("created {s:?} is not RFC 3339: {e}")),
        Some(other) => Err(format!("created {other} is neither RFC 3339 nor milliseconds")),
    }
}

#[async_trait]
impl HostProvider for CommandProvider {
    fn kind(&self) -> &'static str {
        "command"
    }

    async fn list(&self) -> Result<Vec<HostInfo>, HostError> {
        let out = self.script.run("list", &self.list, &[]).await?;
        let listed: Vec<ListedHost> = serde_json::from_str(&out)
            .map_err(|e| HostError::Failed(format!("the list command printed no host list: {e}")))?;
        listed
            .into_iter()
            .map(|h| {
                let created = created(h.created).map_err(|e| HostError::Failed(format!("host {}: {e}", h.name)))?;
                Ok(HostInfo { name: h.name, labels: h.labels, created, healthy: h.healthy })
            })
            .collect()
    }

    async fn create(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<(), HostError> {
        let labels = serde_json::to_string(labels).expect("labels serialize");
        self.script
            .run("create", &self.create, &[("HOOKD_HOST_NAME", name.to_owned()), ("HOOKD_HOST_LABELS", labels)])
            .await
            .map(|_| ())
    }

    async fn delete(&self, name: &str) -> Result<(), HostError> {
        self.script.run("delete", &self.delete, &[("HOOKD_HOST_NAME", name.to_owned())]).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(list: &str) -> CommandProvider {
        let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        CommandProvider::new("w", sh(list), sh("true"), sh("true"), Duration::from_secs(20))
    }

    #[tokio::test]
    async fn a_script_that_prints_without_end_is_cut_off_not_read_whole() {
        let flood = provider("head -c 20000000 /dev/zero");
        let err = flood.list().await.unwrap_err();
        assert!(matches!(&err, HostError::Failed(m) if m.contains("printed 20000000 bytes")), "{err:?}");
        let noisy = provider("head -c 5000000 /dev/zero >&2; echo 'the cloud said no' >&2; exit 4");
        let err = noisy.list().await.unwrap_err();
        let HostError::Failed(message) = err else { panic!("{err:?}") };
        assert!(message.ends_with("the cloud said no") && message.len() < 3000, "{}", &message[message.len() - 100..]);
    }
}
