//! `hookd keep-replica`: the small process that runs one replica of a local service.
//!
//! hookd starts a keeper per replica; the keeper starts the service's command. The keeper
//! is a child subreaper, so every process the command starts stays in its tree however it
//! forks, daemonizes or leaves its process group. It stops the whole tree:
//!
//! - when hookd asks (SIGTERM): SIGTERM to all, SIGKILL to whatever is left after the grace
//!   period, even if the command itself exited at once;
//! - when hookd dies, even by kill -9 (the kernel sends the keeper SIGTERM): the same;
//! - when the command exits on its own: SIGKILL to whatever it left behind.
//!
//! It exits once no process of the tree is left, with the command's exit code (128 + the
//! signal if it was killed). It runs before any async runtime starts and uses only a few
//! system calls, so it costs little memory.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Args;
use nix::{
    errno::Errno,
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::{
        prctl,
        signal::{kill, killpg, SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::{getpid, getppid, Pid},
};

use super::containment::descendants;

#[derive(Args, Debug)]
pub struct KeeperArgs {
    /// The hookd that started this keeper: if it is already gone, start nothing.
    #[arg(long)]
    pub parent: i32,
    /// Milliseconds between SIGTERM and SIGKILL when stopping.
    #[arg(long)]
    pub grace_ms: u64,
    /// A cgroup (v2) directory to join before starting the command.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// The command and its arguments, the command as a resolved path.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// How often the keeper re-sends SIGKILL while waiting for the tree to be gone.
const KILL_EVERY: Duration = Duration::from_millis(50);

pub fn run(args: KeeperArgs) -> ExitCode {
    match keep(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hookd keep-replica: {e}");
            ExitCode::from(127)
        }
    }
}

/// Signals every process of the tree: the command's process group, every descendant that
/// left it, and (with a cgroup) every member but the keeper.
fn signal_tree(group: Pid, cgroup: Option<&PathBuf>, signal: Signal) {
    let _ = killpg(group, signal);
    let me = getpid();
    for pid in descendants(me.as_raw()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
    if let Some(dir) = cgroup {
        let members = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in members.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|&p| p != me.as_raw()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

/// Moves the keeper out of the replica's (now empty) cgroup and removes it, so nothing is
/// left behind even when hookd is gone.
fn leave_cgroup(cgroup: Option<&PathBuf>) {
    let Some(dir) = cgroup else { return };
    if let Some(parent) = dir.parent() {
        if std::fs::write(parent.join("cgroup.procs"), "0").is_ok() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn keep(args: &KeeperArgs) -> Result<u8, String> {
    let fail = |what: &str, e: Errno| format!("{what}: {e}");
    prctl::set_pdeathsig(Signal::SIGTERM).map_err(|e| fail("PR_SET_PDEATHSIG", e))?;
    if getppid().as_raw() != args.parent {
        return Ok(1);
    }
    prctl::set_child_subreaper(true).map_err(|e| fail("PR_SET_CHILD_SUBREAPER", e))?;
    if let Some(dir) = &args.cgroup {
        if let Err(e) = std::fs::write(dir.join("cgroup.procs"), "0") {
            eprintln!("hookd keep-replica: could not join the cgroup {}: {e}", dir.display());
        }
    }
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        mask.add(signal);
    }
    mask.thread_block().map_err(|e| fail("blocking signals", e))?;
    let signals =
        SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(|e| fail("signalfd", e))?;

    let (program, rest) = args.command.split_first().ok_or("no command given")?;
    let mut command = std::process::Command::new(program);
    command.args(rest).process_group(0);
    // SAFETY: only async-signal-safe calls (sigprocmask, prctl) run between fork and exec.
    unsafe {
        command.pre_exec(|| {
            SigSet::empty().thread_set_mask()?;
            prctl::set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| format!("could not start {program:?}: {e}"))?;
    let main = Pid::from_raw(child.id() as i32);
    drop(child); // reaped below with every other child

    let mut exit_code: Option<u8> = None;
    let mut stopping_since: Option<Instant> = None;
    let grace = Duration::from_millis(args.grace_ms);
    let cgroup = args.cgroup.as_ref();
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(WaitStatus::Exited(pid, code)) if pid == main => exit_code = Some(code as u8),
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == main => {
                    exit_code = Some(128u8.saturating_add(signal as u8))
                }
                Ok(_) | Err(Errno::EINTR) => {}
                // Nothing left of the tree.
                Err(Errno::ECHILD) => {
                    leave_cgroup(cgroup);
                    return Ok(exit_code.unwrap_or(1));
                }
                Err(e) => return Err(fail("waitpid", e)),
            }
        }
        let now = Instant::now();
        if exit_code.is_some() && stopping_since.is_none() {
            // The command ended on its own: the replica is over, and so is what it left.
            stopping_since = Some(now - grace);
        }
        let timeout = match stopping_since {
            Some(since) if now >= since + grace => {
                signal_tree(main, cgroup, Signal::SIGKILL);
                KILL_EVERY
            }
            Some(since) => (since + grace - now).min(KILL_EVERY * 20),
            None => Duration::from_secs(3600),
        };
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&signals), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(fail("poll", e)),
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let asked_to_stop =
                [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP].iter().any(|s| *s as u32 == info.ssi_signo);
            if asked_to_stop && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
                signal_tree(main, cgroup, Signal::SIGTERM);
            }
        }
    }
}
