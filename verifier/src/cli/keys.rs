//! The verifier's ed25519 key on disk: PKCS#8 PEM, mode 0600, never overwritten.

use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;

use vouch_verifier::Key;

/// The key file inside a data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("verifier.pem")
}

/// Creates a new random key at `path` (mode 0600). Refuses to overwrite an existing file:
/// losing the verifier key orphans the ledger it signed.
pub fn generate(path: &Path) -> anyhow::Result<SigningKey> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom for a new key")?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the key as PKCS#8: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten; move it away first)",
            path.display()
        )
    })?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    Ok(key)
}

/// Reads a PKCS#8 PEM ed25519 key.
pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading key {} (create one with `vouch-verifier keys generate`)",
            path.display()
        )
    })?;
    SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a PKCS#8 PEM ed25519 key: {e}", path.display()))
}

/// A public key from a file holding either a PKCS#8 PEM private key or 64 hex characters.
pub fn load_public(path: &Path) -> anyhow::Result<Key> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    if let Ok(key) = SigningKey::from_pkcs8_pem(&text) {
        return Ok(Key::of(&key));
    }
    Key::from_hex(text.trim()).map_err(|_| {
        anyhow::anyhow!(
            "{}: neither a PKCS#8 PEM ed25519 key nor 64 hex characters",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_and_refuse_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = key_path(dir.path());
        let key = generate(&path).expect("generate");
        assert_eq!(load(&path).expect("load").to_bytes(), key.to_bytes());
        assert_eq!(load_public(&path).expect("public"), Key::of(&key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(generate(&path).is_err(), "must not overwrite");
        assert_eq!(load(&path).expect("load").to_bytes(), key.to_bytes());
    }
}
