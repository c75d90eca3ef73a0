//! Replicated jobs: which operators run a job, and what their commit-reveal messages say.
//!
//! The protocol (SPEC §10): the client's node announces the job; every node computes the
//! same `k` replicas from the job id and the registered operators
//! ([`vouch_proto::select_replicas`]); each replica runs the job, signs a receipt, and
//! publishes only a signed commitment to it (a salted hash). A replica reveals (receipt and
//! salt) once it has seen commitments from all `k` replicas, or once the announcement's
//! deadline has passed. [`report`] is the pure judgement every node can make from the
//! messages it received: who committed in time, who revealed what, who broke the rules.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use vouch_proto::{
    JobAnnouncement, JobId, OperatorKey, ReceiptJson, ReplicaCommit, ReplicaReveal, KIND_COMMIT,
    KIND_REVEAL,
};

use crate::store::ReplicaMsg;

/// One rule broken by one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// The operator.
    pub operator: OperatorKey,
    /// `reveal_without_commit`, `reveal_mismatch`, `early_reveal`, `not_selected`,
    /// `late_commit`, `second_commit`.
    pub kind: &'static str,
    /// What happened, for people.
    pub detail: String,
}

/// Where one selected operator stands.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    /// The operator.
    pub operator: OperatorKey,
    /// When its (counted) commitment arrived here.
    pub committed_at_ms: Option<u64>,
    /// When its valid reveal arrived here.
    pub revealed_at_ms: Option<u64>,
    /// Its revealed receipt.
    pub receipt: Option<ReceiptJson>,
    /// `pending`, `agrees`, `disagrees`, `missing` (no valid commit/reveal in time).
    pub status: &'static str,
}

/// The agreed result.
#[derive(Debug, Clone, Serialize)]
pub struct Agreed {
    /// Output digest.
    pub output_digest: vouch_proto::Digest,
    /// Exit code.
    pub exit_code: i32,
    /// Operators that revealed it.
    pub operators: Vec<OperatorKey>,
}

/// What this node knows about a replicated job.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Replicas asked for.
    pub replicas: u32,
    /// The operators chosen, best first.
    pub selected: Vec<OperatorKey>,
    /// The announcer (the client's node).
    pub announcer: OperatorKey,
    /// Commitments close then; late replicas reveal what they have.
    pub deadline_ms: u64,
    /// `committing`, `revealing` or `complete`.
    pub phase: &'static str,
    /// `pending`, `agreed` (all valid reveals equal), `disagreed` (some differ; the
    /// majority result, if there is one, is in `agreed`), `failed` (nothing valid).
    pub outcome: &'static str,
    /// The majority result, when there is one.
    pub agreed: Option<Agreed>,
    /// Operators whose revealed result differs from the majority (or, without a majority,
    /// everyone who revealed).
    pub disagreeing: Vec<OperatorKey>,
    /// Per selected operator.
    pub operators: Vec<ReplicaView>,
    /// Rules broken.
    pub faults: Vec<Fault>,
    /// Wrong-result disputes this node raised about disagreeing receipts (on the
    /// announcing node only; `disputes.rs`).
    pub disputes: Vec<crate::disputes::DisputeView>,
}

/// How long after the commit deadline revealing may take before missing reveals count as
/// missing.
pub const REVEAL_GRACE_MS: u64 = 30_000;

/// Judges a replicated job from its announcement, its selected operators and the messages
/// received (in arrival order), at `now_ms`.
pub fn report(
    announcement: &JobAnnouncement,
    job_id: &JobId,
    replicas: u32,
    selected: &[OperatorKey],
    msgs: &[ReplicaMsg],
    now_ms: u64,
) -> Report {
    let deadline = announcement.deadline_ms;
    let mut faults = Vec::new();
    let mut commits: HashMap<OperatorKey, (ReplicaCommit, u64)> = HashMap::new();
    let mut reveals: BTreeMap<OperatorKey, (ReplicaReveal, u64)> = BTreeMap::new();
    let mut first_reveal_at: Option<u64> = None;
    for m in msgs {
        match m.kind {
            KIND_COMMIT => {
                let Ok(c) = ReplicaCommit::decode(&m.data) else {
                    continue;
                };
                if c.job_id != *job_id || c.operator != m.operator {
                    continue;
                }
                if !selected.contains(&c.operator) {
                    faults.push(Fault {
                        operator: c.operator,
                        kind: "not_selected",
                        detail: "committed to a job it was not selected for".into(),
                    });
                    continue;
                }
                if let Some((prev, _)) = commits.get(&c.operator) {
                    if prev.commitment != c.commitment {
                        faults.push(Fault {
                            operator: c.operator,
                            kind: "second_commit",
                            detail: "committed twice to different values; the first counts".into(),
                        });
                    }
                    continue;
                }
                if m.received_at_ms > deadline || first_reveal_at.is_some() {
                    faults.push(Fault {
                        operator: c.operator,
                        kind: "late_commit",
                        detail: if first_reveal_at.is_some() {
                            "committed after reveals had started: it could have copied one".into()
                        } else {
                            "committed after the deadline".into()
                        },
                    });
                    continue;
                }
                commits.insert(c.operator, (c, m.received_at_ms));
            }
            KIND_REVEAL => {
                let Ok(r) = ReplicaReveal::decode(&m.data) else {
                    continue;
                };
                let op = r.receipt.receipt.operator;
                if r.receipt.receipt.job_id != *job_id || op != m.operator {
                    continue;
                }
                if reveals.contains_key(&op) {
                    continue;
                }
                let Some((commit, _)) = commits.get(&op) else {
                    faults.push(Fault {
                        operator: op,
                        kind: "reveal_without_commit",
                        detail: "revealed a result without a counted commitment before it".into(),
                    });
                    continue;
                };
                if !r.opens(commit) {
                    faults.push(Fault {
                        operator: op,
                        kind: "reveal_mismatch",
                        detail: "the revealed receipt and salt do not match its commitment".into(),
                    });
                    continue;
                }
                let committed_now = commits.len();
                if committed_now < selected.len() && m.received_at_ms <= deadline {
                    faults.push(Fault {
                        operator: op,
                        kind: "early_reveal",
                        detail: format!(
                            "revealed with {committed_now} of {} commitments in, before the deadline",
                            selected.len()
                        ),
                    });
                }
                first_reveal_at.get_or_insert(m.received_at_ms);
                reveals.insert(op, (r, m.received_at_ms));
            }
            _ => {}
        }
    }

    // Group valid reveals by result.
    let mut groups: BTreeMap<(vouch_proto::Digest, i32, u64), Vec<OperatorKey>> = BTreeMap::new();
    for (op, (r, _)) in &reveals {
        let rc = &r.receipt.receipt;
        groups
            .entry((rc.output_digest, rc.exit_code, rc.output_len))
            .or_default()
            .push(*op);
    }
    let revealed = reveals.len();
    let majority = groups
        .iter()
        .find(|(_, ops)| ops.len() * 2 > revealed)
        .map(|(k, ops)| (*k, ops.clone()));
    let reveal_closed = now_ms > deadline.saturating_add(REVEAL_GRACE_MS);
    let all_in = commits.len() == selected.len() && revealed == commits.len();
    let phase = if all_in || reveal_closed {
        "complete"
    } else if commits.len() == selected.len() || now_ms > deadline {
        "revealing"
    } else {
        "committing"
    };
    let outcome = if phase != "complete" && groups.len() <= 1 {
        "pending"
    } else if revealed == 0 {
        "failed"
    } else if groups.len() == 1 {
        "agreed"
    } else {
        "disagreed"
    };
    let disagreeing: Vec<OperatorKey> = match &majority {
        Some((_, ops)) if groups.len() > 1 => reveals
            .keys()
            .filter(|o| !ops.contains(o))
            .copied()
            .collect(),
        None if groups.len() > 1 => reveals.keys().copied().collect(),
        _ => vec![],
    };
    let operators = selected
        .iter()
        .map(|op| {
            let committed_at_ms = commits.get(op).map(|(_, at)| *at);
            let rev = reveals.get(op);
            let status = match rev {
                Some(_) if disagreeing.contains(op) => "disagrees",
                Some(_) if majority.is_some() => "agrees",
                Some(_) => "pending",
                None if phase == "complete" => "missing",
                None => "pending",
            };
            ReplicaView {
                operator: *op,
                committed_at_ms,
                revealed_at_ms: rev.map(|(_, at)| *at),
                receipt: rev.map(|(r, _)| r.receipt.to_json()),
                status,
            }
        })
        .collect();
    Report {
        replicas,
        selected: selected.to_vec(),
        announcer: announcement.announcer,
        deadline_ms: deadline,
        phase,
        outcome,
        agreed: majority.map(|((output_digest, exit_code, _), operators)| Agreed {
            output_digest,
            exit_code,
            operators,
        }),
        disagreeing,
        operators,
        faults,
        disputes: Vec::new(),
    }
}

/// Whether a replica that has committed may reveal now: every selected operator's
/// commitment is in, or the deadline has passed.
pub fn may_reveal(
    selected: &[OperatorKey],
    msgs: &[ReplicaMsg],
    deadline_ms: u64,
    now_ms: u64,
) -> bool {
    if now_ms > deadline_ms {
        return true;
    }
    let committed: std::collections::HashSet<_> = msgs
        .iter()
        .filter(|m| m.kind == KIND_COMMIT && selected.contains(&m.operator))
        .map(|m| m.operator)
        .collect();
    committed.len() == selected.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use vouch_proto::{commitment_value, Digest, NetworkId, Receipt, Root32, SignedReceipt};

    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i; 32])
    }
    fn op(k: &SigningKey) -> OperatorKey {
        OperatorKey(k.verifying_key().to_bytes())
    }

    struct Replica {
        key: SigningKey,
        receipt: SignedReceipt,
        salt: [u8; 32],
    }

    fn replica(i: u8, job: JobId, output: &[u8]) -> Replica {
        let k = key(i);
        let receipt = Receipt {
            network_id: NetworkId([1; 32]),
            operator: op(&k),
            sequence: 1,
            job_id: job,
            image: Digest::of(b"img"),
            input_digest: Digest::of(b"in"),
            output_digest: Digest::of(output),
            output_len: output.len() as u64,
            exit_code: 0,
            trace_root: Root32::default(),
            trace_len: 0,
            issued_at_ms: 1,
        };
        let signature = k.sign(&receipt.signing_root()).to_bytes();
        Replica {
            key: k,
            receipt: SignedReceipt { receipt, signature },
            salt: [i; 32],
        }
    }

    impl Replica {
        fn commit_msg(&self, at: u64) -> ReplicaMsg {
            let mut c = ReplicaCommit {
                network_id: NetworkId([1; 32]),
                job_id: self.receipt.receipt.job_id,
                operator: op(&self.key),
                commitment: commitment_value(&op(&self.key), &self.receipt, &self.salt),
                signature: [0; 64],
            };
            c.signature = self.key.sign(&c.signing_root()).to_bytes();
            ReplicaMsg {
                operator: op(&self.key),
                kind: KIND_COMMIT,
                data: c.encode(),
                received_at_ms: at,
            }
        }
        fn reveal_msg(&self, at: u64, salt: [u8; 32]) -> ReplicaMsg {
            ReplicaMsg {
                operator: op(&self.key),
                kind: KIND_REVEAL,
                data: ReplicaReveal {
                    receipt: self.receipt.clone(),
                    salt,
                }
                .encode(),
                received_at_ms: at,
            }
        }
    }

    fn announcement(deadline_ms: u64) -> JobAnnouncement {
        JobAnnouncement {
            network_id: NetworkId([1; 32]),
            announcer: op(&key(1)),
            issued_at_ms: 0,
            deadline_ms,
            spec_json: vec![],
            input: vec![],
            signature: [0; 64],
        }
    }

    #[test]
    fn one_wrong_output_of_three_is_attributed() {
        let job = JobId([9; 32]);
        let r = [
            replica(1, job, b"ok"),
            replica(2, job, b"ok"),
            replica(3, job, b"bad"),
        ];
        let selected: Vec<_> = r.iter().map(|x| op(&x.key)).collect();
        let mut msgs: Vec<_> = r.iter().map(|x| x.commit_msg(10)).collect();
        msgs.extend(r.iter().map(|x| x.reveal_msg(20, x.salt)));
        let rep = report(&announcement(100), &job, 3, &selected, &msgs, 30);
        assert_eq!(rep.phase, "complete");
        assert_eq!(rep.outcome, "disagreed");
        assert_eq!(rep.disagreeing, vec![op(&r[2].key)]);
        assert_eq!(
            rep.agreed.as_ref().unwrap().output_digest,
            Digest::of(b"ok")
        );
        assert!(rep.faults.is_empty(), "{:?}", rep.faults);
        assert_eq!(rep.operators[2].status, "disagrees");
        assert_eq!(rep.operators[0].status, "agrees");
    }

    #[test]
    fn reveal_before_commit_and_wrong_salt_are_caught() {
        let job = JobId([9; 32]);
        let r = [
            replica(1, job, b"ok"),
            replica(2, job, b"ok"),
            replica(3, job, b"ok"),
        ];
        let selected: Vec<_> = r.iter().map(|x| op(&x.key)).collect();
        let msgs = vec![
            r[2].reveal_msg(5, r[2].salt), // before any commitment of its own
            r[0].commit_msg(10),
            r[1].commit_msg(11),
            r[0].reveal_msg(20, r[0].salt),
            r[1].reveal_msg(21, [0xee; 32]), // salt does not open the commitment
            r[2].commit_msg(22),             // after reveals started: could be a copy
        ];
        let rep = report(&announcement(100), &job, 3, &selected, &msgs, 200_000);
        let kinds: Vec<_> = rep.faults.iter().map(|f| (f.operator, f.kind)).collect();
        assert!(
            kinds.contains(&(op(&r[2].key), "reveal_without_commit")),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&(op(&r[1].key), "reveal_mismatch")),
            "{kinds:?}"
        );
        assert!(kinds.contains(&(op(&r[2].key), "late_commit")), "{kinds:?}");
        assert!(
            kinds.contains(&(op(&r[0].key), "early_reveal")),
            "{kinds:?}"
        );
        assert_eq!(rep.operators[1].status, "missing");
        assert_eq!(rep.operators[2].status, "missing");
        assert_eq!(rep.outcome, "agreed", "the one valid reveal stands");
    }

    #[test]
    fn reveal_waits_for_all_commitments_or_the_deadline() {
        let job = JobId([9; 32]);
        let r = [replica(1, job, b"ok"), replica(2, job, b"ok")];
        let selected: Vec<_> = r.iter().map(|x| op(&x.key)).collect();
        let one = vec![r[0].commit_msg(1)];
        assert!(!may_reveal(&selected, &one, 100, 50));
        assert!(may_reveal(&selected, &one, 100, 101));
        let both = vec![r[0].commit_msg(1), r[1].commit_msg(2)];
        assert!(may_reveal(&selected, &both, 100, 50));
    }
}
