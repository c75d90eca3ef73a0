//! Receipt catch-up: a node that was cut off (or restarted) asks each peer for the receipts
//! it has seen since the last time it asked, so nothing gossiped meanwhile is lost.
//!
//! Wire format (protocol `/vouch/<network id hex>/sync/1`): the request is 16 bytes,
//! `epoch ‖ cursor` (big-endian u64s); the response is `epoch ‖ next ‖ count (u32)` and
//! `count` signed receipts of 324 bytes each, at most [`SYNC_PAGE`]. `epoch` names one run
//! of the serving node's log (random per process); a request whose epoch is not the
//! server's current one, or whose cursor the log has already forgotten, is answered from
//! the oldest entry kept. Received receipts go through the same validator and duplicate
//! suppression as gossip, so a receipt reaches the application once, however it arrives.

use std::collections::VecDeque;
use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;
use vouch_proto::SIGNED_RECEIPT_LEN;

/// Most receipts in one sync response.
pub const SYNC_PAGE: usize = 256;

/// A page request: the log run the cursor belongs to, and the first position wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncRequest {
    pub(crate) epoch: u64,
    pub(crate) cursor: u64,
}

/// A page of receipts and where to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncResponse {
    pub(crate) epoch: u64,
    pub(crate) next: u64,
    pub(crate) receipts: Vec<[u8; SIGNED_RECEIPT_LEN]>,
}

/// The receipts this node has accepted or published, in arrival order, bounded: the oldest
/// are forgotten first.
#[derive(Debug)]
pub(crate) struct ReceiptLog {
    epoch: u64,
    /// Position of `entries[0]`.
    base: u64,
    entries: VecDeque<[u8; SIGNED_RECEIPT_LEN]>,
    capacity: usize,
}

impl ReceiptLog {
    pub(crate) fn new(epoch: u64, capacity: usize) -> Self {
        ReceiptLog {
            epoch,
            base: 0,
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn push(&mut self, receipt: &[u8]) {
        let Ok(r) = <[u8; SIGNED_RECEIPT_LEN]>::try_from(receipt) else {
            return;
        };
        self.entries.push_back(r);
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
            self.base += 1;
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The page that answers `req`.
    pub(crate) fn page(&self, req: SyncRequest) -> SyncResponse {
        let end = self.base + self.entries.len() as u64;
        let start = if req.epoch != self.epoch || req.cursor < self.base || req.cursor > end {
            self.base
        } else {
            req.cursor
        };
        let skip = (start - self.base) as usize;
        let receipts: Vec<_> = self
            .entries
            .iter()
            .skip(skip)
            .take(SYNC_PAGE)
            .copied()
            .collect();
        SyncResponse {
            epoch: self.epoch,
            next: start + receipts.len() as u64,
            receipts,
        }
    }
}

/// The sync request-response codec.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncCodec;

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut b = [0u8; 16];
        io.read_exact(&mut b).await?;
        let mut e = [0u8; 8];
        let mut c = [0u8; 8];
        e.copy_from_slice(&b[..8]);
        c.copy_from_slice(&b[8..]);
        Ok(SyncRequest {
            epoch: u64::from_be_bytes(e),
            cursor: u64::from_be_bytes(c),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut head = [0u8; 20];
        io.read_exact(&mut head).await?;
        let mut e = [0u8; 8];
        let mut n = [0u8; 8];
        let mut c = [0u8; 4];
        e.copy_from_slice(&head[..8]);
        n.copy_from_slice(&head[8..16]);
        c.copy_from_slice(&head[16..]);
        let count = u32::from_be_bytes(c) as usize;
        if count > SYNC_PAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sync page of {count} receipts is over the limit of {SYNC_PAGE}"),
            ));
        }
        let mut receipts = Vec::with_capacity(count);
        for _ in 0..count {
            let mut r = [0u8; SIGNED_RECEIPT_LEN];
            io.read_exact(&mut r).await?;
            receipts.push(r);
        }
        Ok(SyncResponse {
            epoch: u64::from_be_bytes(e),
            next: u64::from_be_bytes(n),
            receipts,
        })
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req.epoch.to_be_bytes()).await?;
        io.write_all(&req.cursor.to_be_bytes()).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut out = Vec::with_capacity(20 + resp.receipts.len() * SIGNED_RECEIPT_LEN);
        out.extend_from_slice(&resp.epoch.to_be_bytes());
        out.extend_from_slice(&resp.next.to_be_bytes());
        out.extend_from_slice(&(resp.receipts.len() as u32).to_be_bytes());
        for r in &resp.receipts {
            out.extend_from_slice(r);
        }
        io.write_all(&out).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;

    #[test]
    fn pages_follow_the_cursor_and_restart_on_a_new_epoch() {
        let mut log = ReceiptLog::new(7, 3);
        for i in 0..5u8 {
            log.push(&[i; SIGNED_RECEIPT_LEN]);
        }
        // Capacity 3: positions 2, 3, 4 are kept.
        let p = log.page(SyncRequest {
            epoch: 7,
            cursor: 3,
        });
        assert_eq!(p.next, 5);
        assert_eq!(
            p.receipts,
            vec![[3; SIGNED_RECEIPT_LEN], [4; SIGNED_RECEIPT_LEN]]
        );
        let p = log.page(SyncRequest {
            epoch: 7,
            cursor: 5,
        });
        assert!(p.receipts.is_empty());
        assert_eq!(p.next, 5);
        // A forgotten cursor or another run's epoch starts from the oldest kept entry.
        for req in [
            SyncRequest {
                epoch: 7,
                cursor: 0,
            },
            SyncRequest {
                epoch: 8,
                cursor: 4,
            },
        ] {
            let p = log.page(req);
            assert_eq!(p.receipts.len(), 3);
            assert_eq!(p.receipts[0], [2; SIGNED_RECEIPT_LEN]);
        }
        log.push(&[1, 2, 3]);
        assert_eq!(log.len(), 3, "wrong lengths are not logged");
    }

    #[tokio::test]
    async fn codec_round_trips_and_refuses_oversized_pages() {
        let proto = StreamProtocol::new("/test/sync/1");
        let resp = SyncResponse {
            epoch: 1,
            next: 9,
            receipts: vec![[5; SIGNED_RECEIPT_LEN]; 2],
        };
        let mut buf = Vec::new();
        SyncCodec
            .write_response(&proto, &mut buf, resp.clone())
            .await
            .unwrap();
        let got = SyncCodec
            .read_response(&proto, &mut buf.as_slice())
            .await
            .unwrap();
        assert_eq!(got, resp);
        let mut bad = Vec::new();
        bad.extend_from_slice(&[0u8; 16]);
        bad.extend_from_slice(&(SYNC_PAGE as u32 + 1).to_be_bytes());
        assert!(SyncCodec
            .read_response(&proto, &mut bad.as_slice())
            .await
            .is_err());
    }
}
