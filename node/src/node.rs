//! The job service: accepts jobs, queues them (bounded), runs them through the
//! [`Executor`] under a concurrency limit, signs results through the [`SigningStore`], and
//! persists every step in the [`JobStore`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use vouch_proto::{Amount, Determinism, Digest, JobId, JobSpec, Limits};

use crate::config::Config;
use crate::error::{ExecError, SignError};
use crate::executor::{Executor, LimitKind, RunOutcome};
use crate::metrics::Metrics;
use crate::signer::{Fresh, ResultBody, SigningStore};
use crate::store::{Inserted, JobRecord, JobStatus, JobStore};

/// A job as a client asks for it, before the node fills in defaults and resolves the image.
#[derive(Debug, Clone, Default)]
pub struct JobRequest {
    /// Image tag or id.
    pub image: String,
    /// Arguments.
    pub command: Vec<String>,
    /// Environment, any order.
    pub env: Vec<(String, String)>,
    /// Input bytes.
    pub input: Vec<u8>,
    /// Per-job limits; each may only be at or below the node's.
    pub limits: PartialLimits,
    /// Determinism mode.
    pub determinism: Determinism,
    /// Declared value at risk.
    pub value_at_risk: Amount,
    /// Replicas.
    pub replicas: u32,
    /// Client nonce.
    pub nonce: String,
}

/// Limits a client may set; unset ones take the node's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PartialLimits {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub output_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub tmpfs_bytes: Option<u64>,
}

impl PartialLimits {
    fn fill(&self, d: &Limits) -> Limits {
        Limits {
            cpu_millis: self.cpu_millis.unwrap_or(d.cpu_millis),
            memory_bytes: self.memory_bytes.unwrap_or(d.memory_bytes),
            output_bytes: self.output_bytes.unwrap_or(d.output_bytes),
            pids: self.pids.unwrap_or(d.pids),
            timeout_ms: self.timeout_ms.unwrap_or(d.timeout_ms),
            tmpfs_bytes: self.tmpfs_bytes.unwrap_or(d.tmpfs_bytes),
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request is well-formed but not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The image is not on this node.
    #[error(transparent)]
    ImageNotFound(ExecError),
    /// Docker cannot be reached right now.
    #[error(transparent)]
    Unavailable(ExecError),
    /// The queue is full.
    #[error("the job queue is full ({0} jobs waiting); retry later")]
    QueueFull(usize),
    /// Admission by stake refused the job (its value at risk).
    #[error(transparent)]
    OverExposure(#[from] crate::exposure::Refusal),
    /// Something internal failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a successful submission produced.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job id.
    pub job_id: JobId,
    /// The spec the id commits to.
    pub spec: JobSpec,
    /// Whether it is new, known, or re-queued.
    pub inserted: Inserted,
}

/// The running job service.
#[allow(missing_debug_implementations)]
pub struct Node {
    /// Configuration it runs with.
    pub config: Config,
    /// Job database.
    pub store: Arc<JobStore>,
    /// Signing protection and key.
    pub signer: Arc<SigningStore>,
    /// Where jobs run.
    pub executor: Arc<dyn Executor>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    queue: mpsc::Sender<JobId>,
    changed: watch::Sender<u64>,
    /// Slots for jobs run at once outside the queue (inference).
    inline_slots: Arc<Semaphore>,
    /// Image ids of models, resolved lazily and refreshed every few seconds.
    model_images:
        tokio::sync::Mutex<std::collections::HashMap<String, (Digest, std::time::Instant)>>,
    /// The peer-to-peer side, once joined (set by [`crate::serve`]).
    pub p2p: std::sync::OnceLock<Arc<crate::p2p::P2p>>,
    /// Open value at risk and its cap (admission by stake).
    pub exposure: Arc<crate::exposure::Exposure>,
}

/// The receiving end of the queue, run by [`Worker::run`].
#[allow(missing_debug_implementations)]
pub struct Worker {
    node: Arc<Node>,
    queue: mpsc::Receiver<JobId>,
}

impl Node {
    /// Builds the service and its worker. Call [`Node::recover`] before serving, and run
    /// the worker.
    pub fn new(
        config: Config,
        store: Arc<JobStore>,
        signer: Arc<SigningStore>,
        executor: Arc<dyn Executor>,
    ) -> (Arc<Node>, Worker) {
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (changed, _) = watch::channel(0);
        let inline_slots = Arc::new(Semaphore::new(config.max_concurrent_jobs));
        // Stake is known only from a verifier, which a node reads when it joins the network.
        let exposure = Arc::new(crate::exposure::Exposure::new(
            config.p2p.verifier_url.is_some() && !config.p2p.listen.is_empty(),
        ));
        let node = Arc::new(Node {
            config,
            store,
            signer,
            executor,
            metrics: Arc::new(Metrics::new()),
            queue: tx,
            changed,
            inline_slots,
            model_images: Default::default(),
            p2p: std::sync::OnceLock::new(),
            exposure,
        });
        (node.clone(), Worker { node, queue: rx })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&JobStore) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .unwrap_or_else(|e| {
                Err(rusqlite::Error::InvalidParameterName(format!(
                    "database task failed: {e}"
                )))
            })
    }

    /// Re-queues what a previous run left queued or running. A job interrupted
    /// `max_attempts` times is failed instead of being started again.
    pub async fn recover(self: &Arc<Self>) -> rusqlite::Result<usize> {
        // Signed jobs still inside a challenge window count against the cap (the window is
        // known once the registry is read; until then they count for a day).
        let signed = self
            .blocking(|s| s.with_status(&[JobStatus::Succeeded]))
            .await?;
        for job in signed.iter().filter(|j| j.spec.value_at_risk.0 > 0) {
            if let Some(r) = &job.receipt {
                self.exposure.restore(
                    &job.job_id,
                    job.spec.value_at_risk.0,
                    Some(r.receipt.issued_at_ms),
                );
            }
        }
        let pending = self
            .blocking(|s| s.with_status(&[JobStatus::Running, JobStatus::Queued]))
            .await?;
        for job in &pending {
            self.exposure
                .restore(&job.job_id, job.spec.value_at_risk.0, None);
        }
        let mut requeued = 0;
        for job in pending {
            let id = job.job_id;
            if job.status == JobStatus::Running {
                if job.attempts >= self.config.max_attempts {
                    let reason = format!(
                        "the node stopped while running this job {} times; giving up",
                        job.attempts
                    );
                    self.blocking(move |s| s.mark_failed(&id, &reason, b""))
                        .await?;
                    self.exposure.released(&id);
                    self.metrics.finished("failed_interrupted");
                    continue;
                }
                self.blocking(move |s| s.mark_queued(&id)).await?;
            }
            tracing::info!(target: "vouch::jobs", job_id = %id, "re-queued after restart");
            let queue = self.queue.clone();
            self.metrics.jobs_queued.inc();
            // The queue may be smaller than the backlog; the worker drains it meanwhile.
            tokio::spawn(async move {
                let _ = queue.send(id).await;
            });
            requeued += 1;
        }
        Ok(requeued)
    }

    /// Validates, resolves and persists a job, then queues it.
    pub async fn submit(&self, req: JobRequest) -> Result<Submitted, SubmitError> {
        let invalid = |m: String| Err(SubmitError::Invalid(m));
        if req.image.is_empty()
            || req.image.len() > 512
            || req
                .image
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return invalid("image must be a tag or id (1..512 characters, no whitespace)".into());
        }
        if req.replicas == 0 {
            return invalid("replicas must be at least 1".into());
        }
        if req.replicas > vouch_proto::MAX_REPLICAS {
            return invalid(format!(
                "replicas = {} is above the maximum of {}",
                req.replicas,
                vouch_proto::MAX_REPLICAS
            ));
        }
        if req.replicas > 1 && self.p2p.get().is_none() {
            return invalid(format!(
                "replicas = {} needs the peer-to-peer network, which this node has not joined (start it with --p2p-listen); use replicas = 1",
                req.replicas
            ));
        }
        let max = &self.config.limits;
        let limits = req.limits.fill(max);
        if let Err(e) = limits.validate() {
            return invalid(e.to_string());
        }
        if let Some((name, v, m)) = limits.first_above(max) {
            return invalid(format!(
                "limits.{name} = {v} is above this node's maximum of {m}"
            ));
        }
        let mut env: Vec<String> = Vec::with_capacity(req.env.len());
        let mut pairs = req.env.clone();
        pairs.sort();
        for (k, v) in pairs {
            env.push(format!("{k}={v}"));
        }
        let image = self
            .executor
            .resolve_image(&req.image)
            .await
            .map_err(|e| match e {
                ExecError::ImageNotFound(_) => SubmitError::ImageNotFound(e),
                ExecError::Unavailable { .. } => SubmitError::Unavailable(e),
                other => SubmitError::Internal(other.to_string()),
            })?;
        let spec = JobSpec {
            image,
            command: req.command,
            env,
            input_digest: Digest::of(&req.input),
            limits,
            determinism: req.determinism,
            value_at_risk: req.value_at_risk,
            replicas: req.replicas.max(1),
            nonce: req.nonce,
        };
        let job_id = spec
            .job_id()
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let input = req.input;
        if spec.replicas > 1 {
            return self.submit_replicated(job_id, spec, input).await;
        }
        self.enqueue(job_id, spec, input).await
    }

    /// Announces a replicated job; runs it here too when this node is one of the replicas.
    async fn submit_replicated(
        &self,
        job_id: JobId,
        spec: JobSpec,
        input: Vec<u8>,
    ) -> Result<Submitted, SubmitError> {
        let Some(p2p) = self.p2p.get() else {
            return Err(SubmitError::Invalid("no peer-to-peer network".into()));
        };
        let registered = p2p.operators.weighted().len();
        if registered < spec.replicas as usize {
            return Err(SubmitError::Invalid(format!(
                "replicas = {} but only {registered} operators are registered and active",
                spec.replicas
            )));
        }
        let a = crate::p2p::announcement(self, &spec, &input).map_err(SubmitError::Invalid)?;
        let encoded = a.encode();
        let kept = (a.input.len() != input.len()).then(|| input.clone());
        let new = self
            .blocking(move |s| s.insert_replica(&job_id, &encoded, kept.as_deref()))
            .await
            .map_err(|e| SubmitError::Internal(e.to_string()))?;
        let selected = p2p.select(&job_id, spec.replicas);
        let mut inserted = if new {
            Inserted::New
        } else {
            Inserted::Exists(JobStatus::Queued)
        };
        if selected.contains(&self.signer.operator()) {
            inserted = self.enqueue(job_id, spec.clone(), input).await?.inserted;
        }
        if new {
            p2p.announce(&a)
                .await
                .map_err(|e| SubmitError::Internal(format!("cannot announce the job: {e}")))?;
            tracing::info!(target: "vouch::jobs", %job_id, replicas = spec.replicas, selected = ?selected.iter().map(|k| k.to_hex()[..8].to_string()).collect::<Vec<_>>(), "replicated job announced");
        }
        Ok(Submitted {
            job_id,
            spec,
            inserted,
        })
    }

    /// Accepts a replicated job announced by another node, which selected this one. The
    /// image must be here already and the limits within this node's.
    pub async fn accept_replica(
        &self,
        job_id: JobId,
        spec: JobSpec,
        input: Vec<u8>,
    ) -> Result<Submitted, SubmitError> {
        if let Some((name, v, m)) = spec.limits.first_above(&self.config.limits) {
            return Err(SubmitError::Invalid(format!(
                "limits.{name} = {v} is above this node's maximum of {m}"
            )));
        }
        let image = self
            .executor
            .resolve_image(&spec.image.to_string())
            .await
            .map_err(SubmitError::ImageNotFound)?;
        if image != spec.image {
            return Err(SubmitError::Invalid(format!(
                "image {} resolves to {image} here",
                spec.image
            )));
        }
        self.enqueue(job_id, spec, input).await
    }

    /// Persists a job and puts it on the queue.
    async fn enqueue(
        &self,
        job_id: JobId,
        spec: JobSpec,
        input: Vec<u8>,
    ) -> Result<Submitted, SubmitError> {
        self.exposure
            .admit(&job_id, spec.value_at_risk.0, crate::store::now_ms())?;
        let permit = match self.queue.try_reserve() {
            Ok(p) => Some(p),
            Err(mpsc::error::TrySendError::Full(())) => None,
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(SubmitError::Internal("the node is shutting down".into()))
            }
        };
        let spec2 = spec.clone();
        let inserted = self
            .blocking(move |s| s.insert(&job_id, &spec2, &input))
            .await
            .map_err(|e| SubmitError::Internal(e.to_string()))?;
        match inserted {
            Inserted::Exists(_) => {}
            Inserted::New | Inserted::Requeued => match permit {
                Some(p) => {
                    self.metrics.jobs_submitted.inc();
                    self.metrics.jobs_queued.inc();
                    p.send(job_id);
                    self.notify();
                }
                None => {
                    self.exposure.released(&job_id);
                    // A new job is forgotten; a re-queued one goes back to failed.
                    let _ = if inserted == Inserted::New {
                        self.blocking(move |s| s.forget_queued(&job_id)).await
                    } else {
                        self.blocking(move |s| {
                            s.mark_failed(&job_id, "the job queue was full; resubmit", b"")
                        })
                        .await
                    };
                    return Err(SubmitError::QueueFull(self.config.queue_capacity));
                }
            },
        }
        Ok(Submitted {
            job_id,
            spec,
            inserted,
        })
    }

    /// The job's record, waiting up to `wait` for it to reach a final state.
    pub async fn get(&self, job_id: JobId, wait: Duration) -> rusqlite::Result<Option<JobRecord>> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let rec = self.blocking(move |s| s.get(&job_id)).await?;
            match &rec {
                Some(r) if !r.status.is_final() && tokio::time::Instant::now() < deadline => {
                    if tokio::time::timeout_at(deadline, rx.changed())
                        .await
                        .is_err()
                    {
                        return self.blocking(move |s| s.get(&job_id)).await;
                    }
                }
                _ => return Ok(rec),
            }
        }
    }

    /// The image id a model's image reference resolves to (cached for a few seconds).
    pub async fn model_image(&self, reference: &str) -> Result<Digest, ExecError> {
        const TTL: Duration = Duration::from_secs(10);
        if let Some((d, at)) = self.model_images.lock().await.get(reference) {
            if at.elapsed() < TTL {
                return Ok(*d);
            }
        }
        let d = self.executor.resolve_image(reference).await?;
        self.model_images
            .lock()
            .await
            .insert(reference.to_string(), (d, std::time::Instant::now()));
        Ok(d)
    }

    /// Runs a job now instead of queueing it, for requests a client waits on (inference):
    /// warm when asked and the executor supports it. Identical jobs share one run and one
    /// receipt: a job that already succeeded is returned as it is.
    pub async fn run_now(
        self: &Arc<Self>,
        spec: JobSpec,
        input: Vec<u8>,
        warm: bool,
    ) -> Result<(JobRecord, Option<Bytes>), SubmitError> {
        // Its own task: a client that goes away (or a request timeout) must not leave the
        // job half done, marked running with nobody running it.
        let this = self.clone();
        tokio::spawn(async move { this.run_now_inner(spec, input, warm).await })
            .await
            .map_err(|e| SubmitError::Internal(format!("job task failed: {e}")))?
    }

    /// The record, and the output when this call produced it (`None`: read it from the
    /// store).
    async fn run_now_inner(
        &self,
        spec: JobSpec,
        input: Vec<u8>,
        warm: bool,
    ) -> Result<(JobRecord, Option<Bytes>), SubmitError> {
        let job_id = spec
            .job_id()
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let internal = |e: rusqlite::Error| SubmitError::Internal(e.to_string());
        // The slot first, so that a job is `running` only while something runs it.
        let _slot = self
            .inline_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SubmitError::Internal("shutting down".into()))?;
        let input = Bytes::from(input);
        let (spec2, input2) = (spec.clone(), input.clone());
        let inserted = self
            .blocking(move |s| s.insert_running(&job_id, &spec2, &input2))
            .await
            .map_err(internal)?;
        if let Inserted::Exists(_) = inserted {
            drop(_slot);
            // Already done, or being run by an identical request right now.
            let wait = Duration::from_millis(spec.limits.timeout_ms.saturating_add(5_000));
            return self
                .get(job_id, wait)
                .await
                .map_err(internal)?
                .map(|r| (r, None))
                .ok_or_else(|| SubmitError::Internal("job vanished".into()));
        }
        self.metrics.jobs_submitted.inc();
        self.metrics.jobs_running.inc();
        let started = std::time::Instant::now();
        let outcome = if warm {
            self.executor.run_warm(job_id, &spec, input).await
        } else {
            self.executor.run(job_id, &spec, input).await
        };
        self.metrics
            .job_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.jobs_running.dec();
        let output = self
            .finish(job_id, &spec, outcome)
            .await
            .map_err(internal)?;
        self.notify();
        self.blocking(move |s| s.get(&job_id))
            .await
            .map_err(internal)?
            .map(|r| (r, output))
            .ok_or_else(|| SubmitError::Internal("job vanished".into()))
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn process(self: Arc<Self>, job_id: JobId) {
        self.metrics.jobs_queued.dec();
        let rec = match self.blocking(move |s| s.get(&job_id)).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(target: "vouch::jobs", %job_id, %e, "cannot read job");
                return;
            }
        };
        if rec.status.is_final() {
            return;
        }
        let input = match self
            .blocking(move |s| {
                s.mark_running(&job_id)?;
                s.input(&job_id)
            })
            .await
        {
            Ok(i) => Bytes::from(i.unwrap_or_default()),
            Err(e) => {
                tracing::error!(target: "vouch::jobs", %job_id, %e, "cannot start job");
                return;
            }
        };
        self.notify();
        self.metrics.jobs_running.inc();
        let started = std::time::Instant::now();
        let outcome = self.executor.run(job_id, &rec.spec, input).await;
        self.metrics
            .job_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.jobs_running.dec();
        let result = self.finish(job_id, &rec.spec, outcome).await;
        if let Err(e) = result {
            tracing::error!(target: "vouch::jobs", %job_id, %e, "cannot record job result");
        }
        self.notify();
    }

    /// Signs and records a run's outcome; the signed output when it succeeded.
    async fn finish(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        outcome: Result<RunOutcome, ExecError>,
    ) -> rusqlite::Result<Option<Bytes>> {
        match outcome {
            Ok(RunOutcome::Exited {
                exit_code,
                stdout,
                stderr,
                mut trace,
                timings,
            }) => {
                self.metrics.phase("create", timings.create);
                self.metrics.phase("start", timings.start);
                self.metrics.phase("run", timings.run);
                self.metrics.phase("remove", timings.remove);
                let stdout = match self.config.fault {
                    Some(crate::config::Fault::WrongOutput) => {
                        tracing::warn!(target: "vouch::fault", %job_id, "FAULT INJECTION: signing a wrong output on purpose (--fault wrong-output)");
                        let mut v = stdout.to_vec();
                        v.push(b'!');
                        Bytes::from(v)
                    }
                    Some(crate::config::Fault::WrongToken) => {
                        match wrong_token(&stdout, &mut trace) {
                            Some((position, changed)) => {
                                tracing::warn!(target: "vouch::fault", %job_id, position, "FAULT INJECTION: signing a generation with one wrong token on purpose (--fault wrong-token)");
                                changed
                            }
                            None => stdout,
                        }
                    }
                    _ => stdout,
                };
                let hashing = std::time::Instant::now();
                let trace_root = vouch_proto::merkle_root(&trace);
                let trace_len = trace.len() as u64;
                let output_digest = Digest::of(&stdout);
                self.metrics.phase("hash", hashing.elapsed());
                let body = ResultBody {
                    job_id,
                    image: spec.image,
                    input_digest: spec.input_digest,
                    output_digest,
                    output_len: stdout.len() as u64,
                    exit_code,
                    trace_root,
                    trace_len,
                };
                let signer = self.signer.clone();
                let signing = std::time::Instant::now();
                let signed = tokio::task::spawn_blocking(move || signer.sign_result(&body))
                    .await
                    .unwrap_or_else(|e| {
                        Err(SignError::Import(format!("signing task failed: {e}")))
                    });
                match signed {
                    Ok((receipt, fresh)) => {
                        self.metrics.phase("sign", signing.elapsed());
                        if fresh == Fresh::New {
                            self.metrics.receipts_signed.inc();
                        }
                        tracing::info!(target: "vouch::jobs", %job_id, exit_code, sequence = receipt.receipt.sequence, "job succeeded, receipt signed");
                        self.metrics.finished("succeeded");
                        let r2 = receipt.clone();
                        let persisting = std::time::Instant::now();
                        let signed_output = stdout.clone();
                        self.blocking(move |s| {
                            s.mark_succeeded(&job_id, exit_code, &stdout, &stderr, &trace, &r2)
                        })
                        .await?;
                        self.metrics.phase("persist", persisting.elapsed());
                        self.exposure.settled(&job_id, receipt.receipt.issued_at_ms);
                        if let Some(p2p) = self.p2p.get() {
                            if spec.replicas > 1 {
                                crate::p2p::commit(self, p2p, receipt).await;
                            } else {
                                p2p.publish_receipt(self, &receipt).await;
                                if self.config.fault == Some(crate::config::Fault::Equivocate) {
                                    let mut other = receipt.receipt.clone();
                                    other.output_digest = Digest::of(
                                        &[other.output_digest.0.as_slice(), b"equivocation"]
                                            .concat(),
                                    );
                                    let second =
                                        self.signer.sign_unprotected_for_fault_injection(other);
                                    tracing::warn!(target: "vouch::fault", %job_id, sequence = second.receipt.sequence, "FAULT INJECTION: signing and gossiping a second, conflicting receipt for the job on purpose (--fault equivocate)");
                                    p2p.publish_receipt(self, &second).await;
                                }
                            }
                        }
                        Ok(Some(signed_output))
                    }
                    Err(e) => {
                        self.metrics.signing_refused.inc();
                        self.metrics.finished("failed_signing");
                        tracing::warn!(target: "vouch::jobs", %job_id, %e, "signing refused");
                        let reason = e.to_string();
                        self.exposure.released(&job_id);
                        self.blocking(move |s| s.mark_failed(&job_id, &reason, &stderr))
                            .await
                            .map(|()| None)
                    }
                }
            }
            Ok(RunOutcome::LimitExceeded {
                kind,
                detail,
                stderr,
            }) => {
                let outcome = match kind {
                    LimitKind::Timeout => "failed_timeout",
                    LimitKind::Memory => "failed_memory",
                    LimitKind::Output => "failed_output",
                };
                self.metrics.finished(outcome);
                tracing::info!(target: "vouch::jobs", %job_id, %detail, "job failed: limit exceeded");
                self.exposure.released(&job_id);
                self.blocking(move |s| s.mark_failed(&job_id, &detail, &stderr))
                    .await
                    .map(|()| None)
            }
            Err(e) => {
                self.metrics.finished("failed_infrastructure");
                tracing::warn!(target: "vouch::jobs", %job_id, %e, "job could not be run");
                let reason = e.to_string();
                self.exposure.released(&job_id);
                self.blocking(move |s| s.mark_failed(&job_id, &reason, b""))
                    .await
                    .map(|()| None)
            }
        }
    }
}

impl Worker {
    /// Runs queued jobs, at most `max_concurrent_jobs` at once, until `shutdown` resolves;
    /// then waits up to `shutdown_grace_ms` for running jobs and abandons the rest (their
    /// containers are removed by the executor's own task and by the next sweep; the jobs
    /// are re-run on the next start).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let slots = Arc::new(Semaphore::new(self.node.config.max_concurrent_jobs));
        let mut running = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let job_id = tokio::select! {
                _ = &mut shutdown => break,
                j = self.queue.recv() => match j { Some(j) => j, None => break },
            };
            let node = self.node.clone();
            let span = tracing::info_span!("job", job_id = %job_id);
            running.spawn(
                async move {
                    node.process(job_id).await;
                    drop(permit);
                }
                .instrument(span),
            );
            while running.try_join_next().is_some() {}
        }
        let grace = Duration::from_millis(self.node.config.shutdown_grace_ms);
        if !running.is_empty() {
            tracing::info!(target: "vouch::jobs", running = running.len(), ?grace, "waiting for running jobs");
        }
        let drained = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(target: "vouch::jobs", "shutdown grace over; abandoning running jobs (they re-run on restart)");
            running.abort_all();
        }
        // Bounded too: shutdown must finish even if the daemon does not answer.
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(10), self.node.executor.sweep()).await
        {
            if n > 0 {
                tracing::info!(target: "vouch::executor", removed = n, "removed leftover containers");
            }
        }
    }
}

/// `--fault wrong-token`: the model output `stdout` with the token at position
/// `completion_tokens / 2` replaced by another valid id, and the matching trace leaf
/// (bytes 4..8, SPEC.md §7.3) changed alike, so the receipt agrees with itself. `None`
/// (sign honestly) unless `stdout` is a model output with one 20-byte leaf per token.
/// The content's character for that token changes with it (ids 1..=96 are one character
/// each, images/README.md).
fn wrong_token(stdout: &[u8], trace: &mut [Vec<u8>]) -> Option<(usize, Bytes)> {
    let mut output: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    let tokens = output.get_mut("tokens")?.as_array_mut()?;
    if tokens.len() != trace.len() || trace.iter().any(|l| l.len() != 20) || tokens.is_empty() {
        return None;
    }
    let position = tokens.len() / 2;
    let old = u32::try_from(tokens[position].as_u64()?).ok()?;
    // Ids 1..=96 are `\n` and printable ASCII, all generable; this one differs from `old`.
    let new = old % 96 + 1;
    tokens[position] = new.into();
    trace[position][4..8].copy_from_slice(&new.to_be_bytes());
    let char_of = |id: u32| match id {
        1 => Some('\n'),
        2..=96 => char::from_u32(0x20 + id - 2),
        _ => None,
    };
    if let (Some(content), Some(was), Some(now)) = (
        output.get("content").and_then(|c| c.as_str()),
        char_of(old),
        char_of(new),
    ) {
        let mut chars: Vec<char> = content.chars().collect();
        if chars.get(position) == Some(&was) {
            chars[position] = now;
            output["content"] = chars.into_iter().collect::<String>().into();
        }
    }
    let bytes = vouch_proto::to_canonical_bytes(&output).ok()?;
    Some((position, Bytes::from(bytes)))
}
