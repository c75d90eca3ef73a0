//! Blobs by digest: the store the application provides and the request-response codec.
//!
//! Wire format (protocol `/vouch/<network id hex>/blob/1`): the request is the 32-byte
//! SHA-256 digest; the response is one tag byte, `0` (not found) or `1` (found) followed
//! by the blob until the stream ends. Readers stop at the configured cap, so a peer cannot
//! make us buffer more than `max_blob_bytes`.

use std::collections::HashMap;
use std::io;
use std::sync::RwLock;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;
use sha2::{Digest as _, Sha256};

/// Where the blobs a node serves come from (job specs, inputs, outputs, traces).
///
/// Called on the network task for each inbound request, so `get` must be quick: serve
/// from memory or a cache, not from a slow disk or the network.
pub trait BlobStore: Send + Sync + 'static {
    /// The bytes whose SHA-256 is `digest`, if this node has them.
    fn get(&self, digest: &[u8; 32]) -> Option<Vec<u8>>;
}

/// A store that has nothing; the default when the application serves no blobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBlobs;

impl BlobStore for NoBlobs {
    fn get(&self, _digest: &[u8; 32]) -> Option<Vec<u8>> {
        None
    }
}

/// An in-memory store keyed by SHA-256, for tests and small deployments.
#[derive(Debug, Default)]
pub struct MemoryBlobStore {
    blobs: RwLock<HashMap<[u8; 32], Vec<u8>>>,
}

impl MemoryBlobStore {
    /// Stores `bytes` and returns their SHA-256 digest.
    pub fn insert(&self, bytes: Vec<u8>) -> [u8; 32] {
        let digest = vouch_proto::Digest::of(&bytes).0;
        match self.blobs.write() {
            Ok(mut m) => m.insert(digest, bytes),
            Err(poisoned) => poisoned.into_inner().insert(digest, bytes),
        };
        digest
    }
}

impl BlobStore for MemoryBlobStore {
    fn get(&self, digest: &[u8; 32]) -> Option<Vec<u8>> {
        match self.blobs.read() {
            Ok(m) => m.get(digest).cloned(),
            Err(poisoned) => poisoned.get_ref().get(digest).cloned(),
        }
    }
}

/// Whether `bytes` are what `digest` names: their SHA-256; for a canonical job spec, its
/// job id (SPEC §2.5); or — for a workload's trace — the Merkle root (SPEC §7.3) of the
/// leaves they pack as `u16 length ‖ leaf`, repeated.
pub fn blob_matches(bytes: &[u8], digest: &[u8; 32]) -> bool {
    if vouch_proto::Digest::of(bytes).0 == *digest {
        return true;
    }
    // A job spec fetched by its job id: SHA-256("vouch/job/v1" ‖ canonical spec).
    if bytes.len() <= vouch_proto::MAX_SPEC_BYTES {
        let mut h = Sha256::new();
        h.update(vouch_proto::tags::JOB);
        h.update(bytes);
        if <[u8; 32]>::from(h.finalize()) == *digest {
            return true;
        }
    }
    let mut leaves: Vec<&[u8]> = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return false;
        }
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        if rest.len() < 2 + n || n > vouch_proto::MAX_LEAF_BYTES {
            return false;
        }
        leaves.push(&rest[2..2 + n]);
        rest = &rest[2 + n..];
    }
    !leaves.is_empty()
        && leaves.len() as u64 <= vouch_proto::MAX_TRACE_LEAVES
        && vouch_proto::merkle_root(&leaves).0 == *digest
}

const NOT_FOUND: u8 = 0;
const FOUND: u8 = 1;

/// The blob request-response codec; `max_bytes` caps what a response may carry.
#[derive(Debug, Clone)]
pub(crate) struct BlobCodec {
    pub(crate) max_bytes: usize,
}

impl request_response::Codec for BlobCodec {
    type Protocol = StreamProtocol;
    type Request = [u8; 32];
    type Response = Option<Vec<u8>>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<[u8; 32]>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut digest = [0u8; 32];
        io.read_exact(&mut digest).await?;
        Ok(digest)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Option<Vec<u8>>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut tag = [0u8; 1];
        io.read_exact(&mut tag).await?;
        match tag[0] {
            NOT_FOUND => Ok(None),
            FOUND => {
                let mut data = Vec::new();
                let cap = u64::try_from(self.max_bytes)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1);
                io.take(cap).read_to_end(&mut data).await?;
                if data.len() > self.max_bytes {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("blob over the {} byte limit", self.max_bytes),
                    ));
                }
                Ok(Some(data))
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown blob response tag {other}"),
            )),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        digest: [u8; 32],
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&digest).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Option<Vec<u8>>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match response {
            None => io.write_all(&[NOT_FOUND]).await?,
            Some(data) => {
                io.write_all(&[FOUND]).await?;
                io.write_all(&data).await?;
            }
        }
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;

    fn proto() -> StreamProtocol {
        StreamProtocol::new("/test/blob/1")
    }

    #[tokio::test]
    async fn response_round_trips_and_is_capped() {
        let mut codec = BlobCodec { max_bytes: 8 };
        let mut buf = Vec::new();
        codec
            .write_response(&proto(), &mut buf, Some(b"12345678".to_vec()))
            .await
            .unwrap();
        let got = codec
            .read_response(&proto(), &mut buf.as_slice())
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"12345678"[..]));

        let mut buf = Vec::new();
        codec
            .write_response(&proto(), &mut buf, Some(b"123456789".to_vec()))
            .await
            .unwrap();
        let err = codec
            .read_response(&proto(), &mut buf.as_slice())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let mut buf = Vec::new();
        codec
            .write_response(&proto(), &mut buf, None)
            .await
            .unwrap();
        assert_eq!(
            codec
                .read_response(&proto(), &mut buf.as_slice())
                .await
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_trace_matches_its_merkle_root_and_nothing_else() {
        let leaves: Vec<&[u8]> = vec![b"tok-1", b"tok-2", b"tok-3"];
        let root = vouch_proto::merkle_root(&leaves).0;
        let mut packed = Vec::new();
        for l in &leaves {
            packed.extend_from_slice(&(l.len() as u16).to_be_bytes());
            packed.extend_from_slice(l);
        }
        assert!(blob_matches(&packed, &root));
        assert!(blob_matches(b"abc", &vouch_proto::Digest::of(b"abc").0));
        let mut tampered = packed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(!blob_matches(&tampered, &root));
        assert!(
            !blob_matches(&packed[..packed.len() - 1], &root),
            "truncated"
        );
        assert!(!blob_matches(b"", &root));
    }

    #[test]
    fn a_spec_matches_its_job_id() {
        let spec = vouch_proto::JobSpec {
            image: vouch_proto::Digest::of(b"image"),
            command: vec![],
            env: vec![],
            input_digest: vouch_proto::Digest::of(b"in"),
            limits: vouch_proto::Limits {
                cpu_millis: 1000,
                memory_bytes: 64 << 20,
                output_bytes: 1 << 20,
                pids: 64,
                timeout_ms: 10_000,
                tmpfs_bytes: 16 << 20,
            },
            determinism: vouch_proto::Determinism::Deterministic,
            value_at_risk: vouch_proto::Amount(0),
            replicas: 1,
            nonce: String::new(),
        };
        let canonical = spec.canonical_bytes().unwrap();
        let id = spec.job_id().unwrap().0;
        assert!(blob_matches(&canonical, &id));
        let mut other = canonical.clone();
        other.push(b' ');
        assert!(!blob_matches(&other, &id));
    }

    #[test]
    fn memory_store_keys_by_sha256() {
        let s = MemoryBlobStore::default();
        let d = s.insert(b"abc".to_vec());
        assert_eq!(d, vouch_proto::Digest::of(b"abc").0);
        assert_eq!(s.get(&d).as_deref(), Some(&b"abc"[..]));
        assert_eq!(s.get(&[0u8; 32]), None);
    }
}
