//! Secrets hookd must be able to use again (HMAC keys of sender verification) are sealed with
//! a key kept in the data directory, beside the database but not in it: a copy of the database
//! alone (a backup, a dump) does not hold them in the clear.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use anyhow::Context;
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng},
    ChaCha20Poly1305, Key, Nonce,
};

const KEY_FILE: &str = "sealing.key";
const NONCE_BYTES: usize = 12;

pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// Reads the data directory's sealing key, creating it (0600) at the first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        let key = match std::fs::read(&path) {
            Ok(key) => key,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Written aside and renamed: a kill mid-write must not leave a short key behind.
                let key = ChaCha20Poly1305::generate_key(&mut OsRng).to_vec();
                let aside = data_dir.join(format!("{KEY_FILE}.new"));
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&aside)
                    .with_context(|| format!("creating {}", aside.display()))?;
                file.write_all(&key)?;
                file.sync_all()?;
                std::fs::rename(&aside, &path).with_context(|| format!("creating {}", path.display()))?;
                std::fs::File::open(data_dir)?.sync_all()?;
                key
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        anyhow::ensure!(key.len() == 32, "{} must hold 32 bytes", path.display());
        Ok(Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) })
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
        let sealer = Sealer::load_or_create(dir.path()).unwrap();
        let sealed = sealer.seal(b"hmac key");
        assert!(!sealed.windows(8).any(|w| w == b"hmac key"), "not in the clear");
        let again = Sealer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed).as_deref(), Some(&b"hmac key"[..]), "the key file is reused");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let other = Sealer::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(other.open(&sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(sealer.open(&altered), None);
    }
}
