//! The node's libp2p identity, kept in a file so the peer id survives restarts.

use std::io::Write;
use std::path::Path;

use libp2p::identity::Keypair;

use crate::NetError;

fn setup(path: &Path, e: impl std::fmt::Display) -> NetError {
    NetError::Setup {
        what: "identity key",
        reason: format!("{}: {e}", path.display()),
    }
}

/// Loads the ed25519 identity at `path` (libp2p protobuf encoding), or creates one there
/// (mode 0600, never overwriting) when the file does not exist.
pub fn load_or_create_identity(path: &Path) -> Result<Keypair, NetError> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| setup(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| setup(path, e))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(|e| setup(path, e))?;
            f.write_all(&bytes).map_err(|e| setup(path, e))?;
            f.sync_all().map_err(|e| setup(path, e))?;
            Ok(key)
        }
        Err(e) => Err(setup(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("vouch-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p2p-key");
        let a = load_or_create_identity(&path).unwrap();
        let b = load_or_create_identity(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        std::fs::write(&path, b"junk").unwrap();
        assert!(load_or_create_identity(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
