//! The data directory: one hookd at a time, readable by its owner only.
//!
//! Two hookd on one data directory would each supervise the same local services and each
//! cache receivers the other deletes, so the second one refuses to start. The lock is an
//! `flock` on `hookd.lock`, which the kernel drops when the process dies (even by kill -9),
//! so a crash never leaves a stale lock behind.

use std::{
    fs::{File, OpenOptions, Permissions},
    io::{Read, Seek, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

const LOCK_FILE: &str = "hookd.lock";

/// Held while hookd runs; dropping it releases the directory.
pub struct DataDirLock {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl std::fmt::Debug for DataDirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDirLock").field("dir", &self.dir).finish()
    }
}

impl DataDirLock {
    /// Creates `dir` (mode 0700) if needed, tightens its mode, and locks it for this process.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        // Made 0700 at once, so a fresh directory needs no tightening (and no log line).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        restrict(dir, 0o700)?;
        let lock = lock_file(&dir.join(LOCK_FILE), &format!("the data directory {}", dir.display()))?;
        Ok(Self { dir: dir.to_owned(), _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A short id of this data directory, the same across restarts: processes hookd starts
    /// carry it, so the next start can find what a killed hookd left behind.
    pub fn instance_id(&self) -> String {
        let canonical = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
        hex::encode(&digest[..8])
    }
}

/// Takes an exclusive `flock` on `path` (created 0600) and writes this process's id in it.
/// `what` names the thing guarded, for the error a second hookd gets.
pub fn lock_file(path: &Path, what: &str) -> anyhow::Result<Flock<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
            anyhow::bail!(
                "{what} is in use by another hookd{who}; stop it first, or give this one another data \
                     directory (--data-dir or HOOKD_DATA_DIR)"
            );
        }
        Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    };
    restrict(path, 0o600)?;
    lock.set_len(0)?;
    lock.rewind()?;
    write!(lock, "{}", std::process::id())?;
    lock.flush()?;
    Ok(lock)
}

/// Sets `path`'s mode when it is looser than `mode`, saying so.
pub fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let current = meta.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode))
            .with_context(|| format!("restricting {} to mode {mode:o}", path.display()))?;
        tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{mode:o}"), "restricted permissions");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).unwrap();
        let err = DataDirLock::acquire(&data).unwrap_err().to_string();
        assert!(err.contains("in use by another hookd"), "{err}");
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains(&data.display().to_string()), "{err}");
        drop(first);
        DataDirLock::acquire(&data).expect("released on drop");
    }

    #[test]
    fn the_dir_and_lock_are_private() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join(LOCK_FILE)), 0o600);
        assert_eq!(lock.instance_id().len(), 16);
    }
}
