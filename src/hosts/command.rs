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
/// How long a script's pipes are read after it exited.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

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
        self.run_hiding(what, argv, env, &[]).await
    }

    /// [`Script::run`], with `secrets` (a join token) never in what it reports.
    pub async fn run_hiding(
        &self,
        what: &str,
        argv: &[String],
        env: &[(&str, String)],
        secrets: &[&str],
    ) -> Result<String, HostError> {
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
        if let Ok(job) = super::JOB.try_with(String::clone) {
            command.env("HOOKD_JOB", job);
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
        let (mut out, mut err) = (Capped::new(STDOUT_CAP), Capped::new(STDERR_CAP));
        let (mut out_open, mut err_open, mut status) = (true, true, None);
        let (mut out_buf, mut err_buf) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
        let mut until = tokio::time::Instant::now() + self.timeout;
        while out_open || err_open || status.is_none() {
            tokio::select! {
                read = stdout.read(&mut out_buf), if out_open => match read {
                    Ok(n @ 1..) => out.push(&out_buf[..n]),
                    _ => out_open = false,
                },
                read = stderr.read(&mut err_buf), if err_open => match read {
                    Ok(n @ 1..) => err.push(&err_buf[..n]),
                    _ => err_open = false,
                },
                exited = child.wait(), if status.is_none() => {
                    status = Some(exited);
                    // Something the script left running may hold its pipes open: what
                    // came within a moment of its exit is its output.
                    until = until.min(tokio::time::Instant::now() + OUTPUT_GRACE);
                }
                _ = tokio::time::sleep_until(until) => {
                    if status.is_some() {
                        break;
                    }
                    kill_group(pid);
                    return Err(HostError::Failed(format!(
                        "the {what} command did not finish within {} s; it was killed",
                        self.timeout.as_secs()
                    )));
                }
            }
        }
        let status = status.expect("the loop ends once the script exited");
        let (out, out_total) = out.finish();
        let (err, err_total) = err.finish();
        // Hidden before anything is cut: a cut through a secret would leave part of it.
        let hide = |bytes: &[u8], truncated: bool| {
            let mut text = String::from_utf8_lossy(bytes).into_owned();
            // Cut through the front: a secret's tail may begin it.
            let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(0);
            if truncated && longest > 0 {
                text = text.chars().skip(longest).collect();
            }
            secrets.iter().filter(|s| !s.is_empty()).fold(text, |text, secret| text.replace(secret, "<secret>"))
        };
        // Whatever the script left behind in its group goes with it.
        kill_group(pid);
        let stdout = match secrets.is_empty() {
            true => String::from_utf8_lossy(&out).into_owned(),
            false => hide(&out, out_total > out.len()),
        };
        match status {
            Ok(status) if status.success() && out_total > STDOUT_CAP => Err(HostError::Failed(format!(
                "the {what} command printed {out_total} bytes; hookd reads at most {STDOUT_CAP}"
            ))),
            Ok(status) if status.success() => Ok(stdout),
            Ok(status) => Err(HostError::Failed(format!(
                "the {what} command failed ({status}): {}",
                tail(&hide(&err, err_total > err.len()), &stdout)
            ))),
            Err(e) => Err(HostError::Failed(format!("the {what} command could not be waited for: {e}"))),
        }
    }
}

/// A pipe's output as it comes: its last `cap` bytes kept, and how many came.
struct Capped {
    kept: Vec<u8>,
    total: usize,
    cap: usize,
}

impl Capped {
    fn new(cap: usize) -> Self {
        Self { kept: Vec::new(), total: 0, cap }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        self.kept.extend_from_slice(bytes);
        // Trimmed once it holds twice the cap: each byte is moved at most once more.
        if self.kept.len() > 2 * self.cap {
            self.kept.drain(..self.kept.len() - self.cap);
        }
    }

    fn finish(mut self) -> (Vec<u8>, usize) {
        if self.kept.len() > self.cap {
            self.kept.drain(..self.kept.len() - self.cap);
        }
        (self.kept, self.total)
    }
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
