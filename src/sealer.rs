//! Secrets hookd must be able to use again (HMAC keys of sender verification) are sealed with
//! a key kept in the data directory, beside the database but not in it: a copy of the database
//! alone (a backup, a dump) does not hold them in the clear.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use anyhow::Context;
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng},
    ChaCha20Poly1305, Key, Nonce,
};

const NONCE_BYTES: usize = 12;
/// What the store keeps sealed, so a replica with another key is refused at start.
const CHECK: &[u8] = b"hookd sealing key check";

pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// Reads the sealing key at `path`, creating it (0600) at the first start.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let key = match std::fs::read(path) {
            Ok(key) => key,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Written aside and renamed: a kill mid-write must not leave a short key behind.
                let key = ChaCha20Poly1305::generate_key(&mut OsRng).to_vec();
                let mut aside = path.as_os_str().to_owned();
                aside.push(".new");
                let aside = std::path::PathBuf::from(aside);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&aside)
                    .with_context(|| format!("creating {}", aside.display()))?;
                file.write_all(&key)?;
                file.sync_all()?;
                std::fs::rename(&aside, path).with_context(|| format!("creating {}", path.display()))?;
                std::fs::File::open(dir)?.sync_all()?;
                key
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        anyhow::ensure!(key.len() == 32, "{} must hold 32 bytes", path.display());
        Ok(Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) })
    }

    /// Makes sure every hookd sharing `store` seals with this key: the first stores a value
    /// sealed with it, and a hookd whose key cannot open that value is refused at start.
    pub async fn agree(&self, store: &dyn crate::store::Store, path: &Path) -> anyhow::Result<()> {
        use base64::{engine::general_purpose::STANDARD, Engine};
        let stored = store.sealing_check(&STANDARD.encode(self.seal(CHECK))).await?;
        let opens = STANDARD.decode(stored).ok().and_then(|sealed| self.open(&sealed)).is_some_and(|p| p == CHECK);
        anyhow::ensure!(
            opens,
            "the sealing key {} is not the one this database's sender secrets were sealed with: every hookd \
             sharing a database needs the same key (copy the first one's file and set sealing_key_file)",
            path.display()
        );
        Ok(())
    }

    /// Nonce and ciphertext.
    pub fn seal(&self, secret: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(self.cipher.encrypt(&nonce, secret).expect("sealing in memory does not fail"));
        out
    }

    /// `None` when the data was sealed with another key or altered.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher.decrypt(Nonce::from_slice(nonce), ciphertext).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_same_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sealing.key");
        let sealer = Sealer::load_or_create(&key).unwrap();
        let sealed = sealer.seal(b"hmac key");
        assert!(!sealed.windows(8).any(|w| w == b"hmac key"), "not in the clear");
        let again = Sealer::load_or_create(&key).unwrap();
        assert_eq!(again.open(&sealed).as_deref(), Some(&b"hmac key"[..]), "the key file is reused");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let other = Sealer::load_or_create(&tempfile::tempdir().unwrap().path().join("k")).unwrap();
        assert_eq!(other.open(&sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(sealer.open(&altered), None);
    }
}
