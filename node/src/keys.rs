//! Operator keys: ed25519 in PKCS#8 PEM files (RFC 8410), readable by OpenSSL and friends.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use vouch_proto::OperatorKey;

use crate::error::NodeError;

/// Generates a new key and writes it to `path` with mode 0600. Refuses to overwrite an
/// existing file: losing an operator key loses its signing history's meaning.
pub fn generate(path: &Path) -> Result<SigningKey, NodeError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| NodeError::Key {
            path: path.into(),
            reason: format!("encoding: {e}"),
        })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::io(dir, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => NodeError::Key {
                path: path.into(),
                reason: "already exists; refusing to overwrite an operator key (move it away \
                         first if you really mean to replace it)"
                    .into(),
            },
            _ => NodeError::io(path, e),
        })?;
    file.write_all(pem.as_bytes())
        .map_err(|e| NodeError::io(path, e))?;
    file.sync_all().map_err(|e| NodeError::io(path, e))?;
    Ok(key)
}

/// Loads a PKCS#8 PEM ed25519 key. Warns (does not fail) when others can read it.
pub fn load(path: &Path) -> Result<SigningKey, NodeError> {
    let meta = std::fs::metadata(path).map_err(|e| NodeError::Key {
        path: path.into(),
        reason: format!("{e}; create one with `vouch-node keys generate`"),
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "operator key is readable by group or others; chmod 600 it");
    }
    let pem = std::fs::read_to_string(path).map_err(|e| NodeError::io(path, e))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| NodeError::Key {
        path: path.into(),
        reason: format!("not a PKCS#8 PEM ed25519 private key: {e}"),
    })
}

/// The public half of `key` as the protocol names it.
pub fn operator_key(key: &SigningKey) -> OperatorKey {
    OperatorKey(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_0600_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/op.pem");
        let key = generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        assert_eq!(load(&path).unwrap().to_bytes(), key.to_bytes());
        let err = generate(&path).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(
            load(&path).unwrap().to_bytes(),
            key.to_bytes(),
            "old key untouched"
        );
    }

    #[test]
    fn load_explains_missing_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load(&dir.path().join("nope.pem")).unwrap_err().to_string();
        assert!(missing.contains("keys generate"), "{missing}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        assert!(load(&junk).unwrap_err().to_string().contains("PKCS#8"));
    }
}
