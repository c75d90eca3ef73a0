//! `vouch-exec`: running a Vouch job in a sandbox, shared by the operator node (which
//! signs what a run produced) and the verifier (which re-runs a disputed job, DESIGN.md
//! "Disputes, in tiers", T1).
//!
//! Layout:
//! - [`Executor`], the interface: resolve an image reference to its id (never pulling),
//!   run a [`JobSpec`] on its input, check health, sweep containers left behind.
//! - [`DockerExecutor`], the real one: one fresh, locked-down container per run
//!   (SPEC.md §5.2: no network, read-only root, all capabilities dropped, uid 65534,
//!   pids/memory/CPU/tmpfs limits), talking to the daemon through bollard. Stdout is
//!   capped at `limits.output_bytes`, stderr at [`STDERR_CAP`]; `vouch-trace` lines are
//!   split out of stderr into trace leaves (SPEC.md §5.1).
//! - [`MemoryExecutor`], the simple one for tests: images are pure functions.
//! - [`error`]: [`ExecError`], faults of the infrastructure or the request. A workload
//!   that exits non-zero or breaks a limit is a [`RunOutcome`], not an error.
//!
//! Tasks: [`Executor::run`] on a [`DockerExecutor`] spawns one task per run that owns the
//! container's whole life (create, attach, start, wait, remove), so a caller that is
//! dropped cannot leave a container behind; the caller awaits that task's result. Data
//! flows input bytes → the container's stdin; its stdout and stderr → the
//! [`RunOutcome`].
//!
//! ```no_run
//! use vouch_exec::{DockerExecutor, Executor, RunOutcome};
//! # async fn demo(spec: vouch_proto::JobSpec) -> Result<(), vouch_exec::ExecError> {
//! let docker = DockerExecutor::new(DockerExecutor::default_host(), "my-node");
//! docker.health().await?;
//! let job_id = spec.job_id().expect("a valid spec has an id");
//! match docker.run(job_id, &spec, "hello\n".into()).await? {
//!     RunOutcome::Exited { exit_code, stdout, .. } => println!("{exit_code}: {stdout:?}"),
//!     RunOutcome::LimitExceeded { detail, .. } => println!("failed: {detail}"),
//! }
//! # Ok(())
//! # }
//! ```

pub mod error;

pub use error::ExecError;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::container::{
    AttachContainerOptions, Config, CreateContainerOptions, KillContainerOptions,
    ListContainersOptions, LogOutput, RemoveContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use bollard::models::{HostConfig, HostConfigLogConfig};
use bollard::{ClientVersion, Docker};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use vouch_proto::{Digest, JobId, JobSpec};

/// Most stderr bytes kept per job. Stderr is diagnostics, never signed.
pub const STDERR_CAP: usize = 64 * 1024;
/// The uid:gid every workload runs as, whatever its image says.
pub const WORKLOAD_USER: &str = "65534:65534";
/// Extra time a run may take beyond its workload timeout before the node gives up on
/// the daemon (creating, starting and removing a container normally take well under 1 s).
const DOCKER_CALL_MARGIN: Duration = Duration::from_secs(120);
/// Docker API version spoken. 1.41 is served by Docker 20.10 and by every later engine.
const DOCKER_API: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Which limit a workload broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Ran past `timeout_ms`.
    Timeout,
    /// Killed by the kernel for going over `memory_bytes`.
    Memory,
    /// Wrote more than `output_bytes` to stdout.
    Output,
}

/// How long each phase of a run took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Creating the container.
    pub create: Duration,
    /// Attaching and starting it.
    pub start: Duration,
    /// From start until its output ended and it was reaped.
    pub run: Duration,
    /// Removing it.
    pub remove: Duration,
}

/// What became of a run. Both variants are results, not faults: a non-zero exit is signed;
/// a broken limit fails the job with a reason and no receipt.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The workload exited by itself.
    Exited {
        /// Its exit code.
        exit_code: i32,
        /// Everything it wrote to stdout (within the cap).
        stdout: Bytes,
        /// The first [`STDERR_CAP`] bytes of stderr, without trace lines.
        stderr: Bytes,
        /// Trace leaves, from `vouch-trace <hex>` lines on stderr (empty when untraced).
        trace: Vec<Vec<u8>>,
        /// Phase timings.
        timings: Timings,
    },
    /// The workload broke a limit and was stopped.
    LimitExceeded {
        /// Which limit.
        kind: LimitKind,
        /// A sentence for the job's failure reason.
        detail: String,
        /// The first [`STDERR_CAP`] bytes of stderr.
        stderr: Bytes,
    },
}

/// Runs jobs. Implementations must never leave a container (or process) behind, whatever
/// the workload does, and must apply every limit in `spec.limits`.
pub trait Executor: Send + Sync + 'static {
    /// Resolves an image reference (tag, short or full id) to the local image id.
    /// Never pulls: an image that is not present is [`ExecError::ImageNotFound`].
    fn resolve_image<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Digest, ExecError>>;
    /// Runs `spec` on `input` in a fresh sandbox.
    fn run<'a>(
        &'a self,
        job_id: JobId,
        spec: &'a JobSpec,
        input: Bytes,
    ) -> BoxFuture<'a, Result<RunOutcome, ExecError>>;
    /// Whether the backend is reachable.
    fn health(&self) -> BoxFuture<'_, Result<(), ExecError>>;
    /// Removes anything a previous process of this node left behind (after a crash).
    fn sweep(&self) -> BoxFuture<'_, Result<usize, ExecError>>;
    /// Removes containers of this node that this process did not create (left by a
    /// previous process, including creations the daemon finished after that process died).
    /// Safe to call at any time. The default does nothing.
    fn sweep_orphans(&self) -> BoxFuture<'_, Result<usize, ExecError>> {
        Box::pin(async { Ok(0) })
    }
    /// Runs `spec` in a warm container that serves one request per line (the `serve`
    /// command of images/README.md "warm mode"), starting it if needed. The result must be
    /// what [`Executor::run`] would give. The default runs cold.
    fn run_warm<'a>(
        &'a self,
        job_id: JobId,
        spec: &'a JobSpec,
        input: Bytes,
    ) -> BoxFuture<'a, Result<RunOutcome, ExecError>> {
        self.run(job_id, spec, input)
    }
}

/// Runs jobs as Docker containers through bollard, locked down as SPEC.md §5 describes.
#[derive(Debug)]
pub struct DockerExecutor {
    host: String,
    /// Label value that marks this node's containers, so a restart can sweep them.
    node_label: String,
    /// Connected lazily and dropped on connection errors, so the node recovers when the
    /// daemon comes back.
    client: Mutex<Option<Docker>>,
    /// Warm containers, one per (image, command, env, limits); requests to one are serialized.
    warm: std::sync::Arc<tokio::sync::Mutex<HashMap<String, WarmContainer>>>,
    /// Random per-process label value: containers without it are orphans of another process.
    run_id: String,
}

/// A long-running workload container in `serve` mode, attached over stdin/stdout.
struct WarmContainer {
    id: String,
    stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    buf: BytesMut,
    served: u64,
}

impl std::fmt::Debug for WarmContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmContainer")
            .field("id", &self.id)
            .field("served", &self.served)
            .finish()
    }
}

enum WarmErr {
    /// The container is gone (exited, killed): start another.
    Stale(String),
    /// A limit was broken; the container is discarded.
    Limit(LimitKind, String),
    /// The workload refused the request but keeps serving.
    Refused(String),
}

impl DockerExecutor {
    /// An executor for the daemon at `host` (`unix:///path` or `tcp://host:port`).
    pub fn new(host: impl Into<String>, node_label: impl Into<String>) -> Self {
        DockerExecutor {
            host: host.into(),
            node_label: node_label.into(),
            client: Mutex::new(None),
            warm: Default::default(),
            run_id: format!("{:016x}", rand::random::<u64>()),
        }
    }

    /// A handle sharing this executor's client and warm pool, for a spawned task.
    fn detached(&self) -> Result<(DockerExecutor, Docker), ExecError> {
        let docker = self.client()?;
        let this = DockerExecutor {
            host: self.host.clone(),
            node_label: self.node_label.clone(),
            client: Mutex::new(Some(docker.clone())),
            warm: self.warm.clone(),
            run_id: self.run_id.clone(),
        };
        Ok((this, docker))
    }

    /// Removes this node's containers: all of them, or only those another process of
    /// this node created (`include_own = false`). Returns how many.
    async fn remove_node_containers(&self, include_own: bool) -> Result<usize, ExecError> {
        let docker = self.client()?;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("vouch.node={}", self.node_label)],
        )]);
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.map_err(e))?;
        let mut n = 0;
        for c in list {
            let ours = c.labels.as_ref().and_then(|l| l.get("vouch.run")) == Some(&self.run_id);
            if let (true, Some(id)) = (include_own || !ours, c.id) {
                self.remove(&docker, &id).await;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Best-effort removal of this node's containers for one job.
    async fn remove_job_containers(&self, docker: &Docker, job_id: &JobId) {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("vouch.node={}", self.node_label),
                format!("vouch.job={}", job_id.to_hex()),
            ],
        )]);
        let listed = tokio::time::timeout(
            Duration::from_secs(10),
            docker.list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            })),
        )
        .await;
        if let Ok(Ok(list)) = listed {
            for c in list.into_iter().filter_map(|c| c.id) {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), self.remove(docker, &c)).await;
            }
        }
    }

    async fn start_warm(
        &self,
        docker: &Docker,
        spec: &JobSpec,
    ) -> Result<WarmContainer, ExecError> {
        let name = format!(
            "vouch-warm-{}-{:08x}",
            &spec.image.to_hex()[..12],
            rand::random::<u32>()
        );
        let config = self.container_config("warm", spec, Some(vec!["serve".into()]));
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name,
                    platform: None,
                }),
                config,
            )
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => ExecError::ImageNotFound(spec.image.to_string()),
                e => self.map_err(e),
            })?;
        let attach = docker
            .attach_container(&created.id, Some(attach_options()))
            .await
            .map_err(|e| self.map_err(e))?;
        if let Err(e) = docker
            .start_container(&created.id, None::<StartContainerOptions<String>>)
            .await
        {
            self.remove(docker, &created.id).await;
            return Err(self.map_err(e));
        }
        tracing::info!(target: "vouch::executor", container = %created.id, image = %spec.image, "warm container started");
        Ok(WarmContainer {
            id: created.id,
            stdin: attach.input,
            output: attach.output,
            buf: BytesMut::new(),
            served: 0,
        })
    }

    /// One request/response exchange with a warm container (images/README.md, warm mode).
    async fn exchange(
        c: &mut WarmContainer,
        spec: &JobSpec,
        input: &[u8],
    ) -> Result<RunOutcome, WarmErr> {
        let l = &spec.limits;
        if input.contains(&b'\n') {
            return Err(WarmErr::Refused("warm requests must be one line".into()));
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(l.timeout_ms);
        let write = async {
            c.stdin.write_all(input).await?;
            c.stdin.write_all(b"\n").await?;
            c.stdin.flush().await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(WarmErr::Stale(format!("writing the request: {e}"))),
            Err(_) => {
                return Err(WarmErr::Limit(
                    LimitKind::Timeout,
                    timeout_detail(l.timeout_ms),
                ))
            }
        }
        // The response line carries the output and the trace; allow for both.
        let cap = usize::try_from(l.output_bytes)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .saturating_add(4 << 20);
        let line = loop {
            if let Some(pos) = c.buf.iter().position(|b| *b == b'\n') {
                let line = c.buf.split_to(pos + 1);
                break line;
            }
            if c.buf.len() > cap {
                return Err(WarmErr::Limit(
                    LimitKind::Output,
                    format!("output limit exceeded: the warm response is over {cap} bytes"),
                ));
            }
            match tokio::time::timeout_at(deadline, c.output.next()).await {
                Err(_) => {
                    return Err(WarmErr::Limit(
                        LimitKind::Timeout,
                        timeout_detail(l.timeout_ms),
                    ))
                }
                Ok(None) => return Err(WarmErr::Stale("the warm container exited".into())),
                Ok(Some(Err(e))) => {
                    return Err(WarmErr::Stale(format!(
                        "the warm container's stream broke: {e}"
                    )))
                }
                Ok(Some(Ok(LogOutput::StdOut { message })))
                | Ok(Some(Ok(LogOutput::Console { message }))) => c.buf.extend_from_slice(&message),
                Ok(Some(Ok(_))) => {}
            }
        };
        c.served += 1;
        #[derive(serde::Deserialize)]
        struct Reply {
            output: Option<String>,
            #[serde(default)]
            trace: Vec<String>,
            error: Option<String>,
        }
        let reply: Reply = serde_json::from_slice(&line).map_err(|e| {
            WarmErr::Stale(format!(
                "the warm container answered something that is not a reply: {e}"
            ))
        })?;
        if let Some(e) = reply.error {
            return Err(WarmErr::Refused(e));
        }
        let output = reply
            .output
            .ok_or_else(|| WarmErr::Stale("reply without output".into()))?;
        if output.len() as u64 > l.output_bytes {
            return Err(WarmErr::Limit(
                LimitKind::Output,
                format!(
                    "output limit exceeded: the workload wrote more than {} bytes",
                    l.output_bytes
                ),
            ));
        }
        let mut trace = Vec::with_capacity(reply.trace.len());
        for t in &reply.trace {
            match hex::decode(t) {
                Ok(leaf)
                    if !leaf.is_empty()
                        && leaf.len() <= vouch_proto::MAX_LEAF_BYTES
                        && trace.len() < MAX_TRACE_LEAVES =>
                {
                    trace.push(leaf)
                }
                _ => {
                    return Err(WarmErr::Limit(
                        LimitKind::Output,
                        "malformed trace: a leaf is not 1..=256 bytes of hex".into(),
                    ))
                }
            }
        }
        Ok(RunOutcome::Exited {
            exit_code: 0,
            stdout: Bytes::from(output.into_bytes()),
            stderr: Bytes::new(),
            trace,
            timings: Timings {
                run: started.elapsed(),
                ..Default::default()
            },
        })
    }

    async fn run_warm_inner(&self, spec: &JobSpec, input: Bytes) -> Result<RunOutcome, ExecError> {
        let docker = self.client()?;
        let key = format!(
            "{}|{:?}|{:?}|{:?}",
            spec.image, spec.command, spec.env, spec.limits
        );
        let mut pool = self.warm.lock().await;
        for attempt in 0..2 {
            let c = match pool.entry(key.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(self.start_warm(&docker, spec).await?)
                }
            };
            let fresh = c.served == 0;
            match Self::exchange(c, spec, &input).await {
                Ok(outcome) => return Ok(outcome),
                Err(WarmErr::Refused(e)) => {
                    return Err(ExecError::Docker(format!(
                        "the model refused the request: {e}"
                    )))
                }
                Err(err) => {
                    if let Some(c) = pool.remove(&key) {
                        drop(c.stdin);
                        drop(c.output);
                        self.kill(&docker, &c.id).await;
                        self.remove(&docker, &c.id).await;
                    }
                    match err {
                        WarmErr::Limit(kind, detail) => {
                            return Ok(RunOutcome::LimitExceeded {
                                kind,
                                detail,
                                stderr: Bytes::new(),
                            })
                        }
                        WarmErr::Stale(why) if fresh || attempt == 1 => {
                            return Err(ExecError::Docker(format!("warm container failed: {why}")))
                        }
                        WarmErr::Stale(why) => {
                            tracing::warn!(target: "vouch::executor", %why, "warm container went away; starting another");
                        }
                        WarmErr::Refused(_) => {}
                    }
                }
            }
        }
        Err(ExecError::Docker("warm container failed twice".into()))
    }

    /// The endpoint from `DOCKER_HOST`, or the default socket.
    pub fn default_host() -> String {
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
    }

    fn client(&self) -> Result<Docker, ExecError> {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        // Requests may wait as long as a job may run; our own timeouts bound them.
        const REQUEST_TIMEOUT_SECS: u64 = 24 * 3600;
        let connected = if let Some(path) = self.host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, &DOCKER_API)
        } else if self.host.starts_with("tcp://") || self.host.starts_with("http://") {
            Docker::connect_with_http(&self.host, REQUEST_TIMEOUT_SECS, &DOCKER_API)
        } else if self.host.starts_with('/') {
            Docker::connect_with_unix(&self.host, REQUEST_TIMEOUT_SECS, &DOCKER_API)
        } else {
            return Err(self.unavailable(format!(
                "unsupported scheme in {:?} (use unix:// or tcp://)",
                self.host
            )));
        };
        let docker = connected.map_err(|e| self.unavailable(e.to_string()))?;
        *guard = Some(docker.clone());
        Ok(docker)
    }

    fn unavailable(&self, reason: String) -> ExecError {
        ExecError::Unavailable {
            host: self.host.clone(),
            reason,
        }
    }

    /// Maps a bollard error, forgetting the client on connection failures.
    fn map_err(&self, e: bollard::errors::Error) -> ExecError {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code,
                message,
            } => ExecError::Docker(format!("daemon answered {status_code}: {message}")),
            other => {
                *self.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.unavailable(other.to_string())
            }
        }
    }

    async fn remove(&self, docker: &Docker, id: &str) {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        // A removal can race the daemon's own cleanup; retry briefly, then leave it to the
        // next sweep (which runs at every start and shutdown).
        for attempt in 0..5u32 {
            match docker.remove_container(id, Some(opts)).await {
                Ok(()) => return,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return,
                Err(e) => {
                    tracing::warn!(target: "vouch::executor", container = id, %e, attempt, "removing container failed");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }

    /// The locked-down container of SPEC.md §5 for `spec`. `serve` replaces the command and
    /// keeps stdin open across requests (warm mode).
    fn container_config(
        &self,
        job_label: &str,
        spec: &JobSpec,
        serve: Option<Vec<String>>,
    ) -> Config<String> {
        let l = &spec.limits;
        let labels = HashMap::from([
            ("vouch.managed".to_string(), "true".to_string()),
            ("vouch.node".to_string(), self.node_label.clone()),
            ("vouch.job".to_string(), job_label.to_string()),
            ("vouch.run".to_string(), self.run_id.clone()),
        ]);
        let host_config = HostConfig {
            network_mode: Some("none".into()),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                format!("rw,nosuid,nodev,noexec,size={},mode=1777", l.tmpfs_bytes),
            )])),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            pids_limit: Some(clamp_i64(l.pids)),
            memory: Some(clamp_i64(l.memory_bytes)),
            memory_swap: Some(clamp_i64(l.memory_bytes)),
            nano_cpus: Some(clamp_i64(l.cpu_millis.saturating_mul(1_000_000))),
            // Output travels over the attach stream only; the daemon keeps no log copy
            // (a 1 GiB writer must not fill the operator's disk).
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ipc_mode: Some("private".into()),
            privileged: Some(false),
            ..Default::default()
        };
        let warm = serve.is_some();
        let cmd = serve.or_else(|| (!spec.command.is_empty()).then(|| spec.command.clone()));
        Config {
            image: Some(spec.image.to_string()),
            cmd,
            env: Some(spec.env.clone()),
            user: Some(WORKLOAD_USER.to_string()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(!warm),
            tty: Some(false),
            network_disabled: Some(true),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    async fn run_inner(
        &self,
        docker: Docker,
        job_id: JobId,
        spec: JobSpec,
        input: Bytes,
    ) -> Result<RunOutcome, ExecError> {
        let name = format!(
            "vouch-{}-{:08x}",
            &job_id.to_hex()[..12],
            rand::random::<u32>()
        );
        let config = self.container_config(&job_id.to_hex(), &spec, None);
        let t0 = Instant::now();
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: name.clone(),
                    platform: None,
                }),
                config,
            )
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => ExecError::ImageNotFound(spec.image.to_string()),
                e => self.map_err(e),
            })?;
        let id = created.id;
        let create = t0.elapsed();
        let result = self.attach_start_wait(&docker, &id, &spec, input).await;
        let t3 = Instant::now();
        self.remove(&docker, &id).await;
        let remove = t3.elapsed();
        result.map(|outcome| match outcome {
            RunOutcome::Exited {
                exit_code,
                stdout,
                stderr,
                trace,
                timings,
            } => RunOutcome::Exited {
                exit_code,
                stdout,
                stderr,
                trace,
                timings: Timings {
                    create,
                    remove,
                    ..timings
                },
            },
            other => other,
        })
    }

    async fn attach_start_wait(
        &self,
        docker: &Docker,
        id: &str,
        spec: &JobSpec,
        input: Bytes,
    ) -> Result<RunOutcome, ExecError> {
        let l = &spec.limits;
        let t1 = Instant::now();
        let attach = docker
            .attach_container(id, Some(attach_options()))
            .await
            .map_err(|e| self.map_err(e))?;
        let mut output = attach.output;
        let mut stdin = attach.input;
        docker
            .start_container(id, None::<StartContainerOptions<String>>)
            .await
            .map_err(|e| self.map_err(e))?;
        let start = t1.elapsed();
        let t2 = Instant::now();
        // Feed stdin from its own task: a workload that never reads must not stall us.
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });

        let cap = usize::try_from(l.output_bytes).unwrap_or(usize::MAX);
        let mut stdout = BytesMut::new();
        let mut stderr = StderrSplitter::default();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(l.timeout_ms);
        let read = async {
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        if stdout.len() + message.len() > cap {
                            return Err(Stop::Limit(LimitKind::Output));
                        }
                        stdout.extend_from_slice(&message);
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        if stderr.push(&message).is_err() {
                            return Err(Stop::BadTrace);
                        }
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    // A broken stream may have lost output: never sign what was collected.
                    Err(e) => return Err(Stop::Broken(e.to_string())),
                }
            }
            Ok(())
        };
        let limit = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(())) => None,
            Ok(Err(Stop::Limit(kind))) => Some(kind),
            Ok(Err(Stop::BadTrace)) => {
                writer.abort();
                drop(output);
                self.kill(docker, id).await;
                let detail = stderr.error.clone().unwrap_or_default();
                return Ok(RunOutcome::LimitExceeded {
                    kind: LimitKind::Output,
                    detail,
                    stderr: stderr.diag.freeze(),
                });
            }
            Ok(Err(Stop::Broken(e))) => {
                writer.abort();
                drop(output);
                self.kill(docker, id).await;
                return Err(ExecError::Docker(format!("the output stream from the container broke ({e}); no receipt is signed for possibly incomplete output")));
            }
            Err(_) => Some(LimitKind::Timeout),
        };
        writer.abort();
        // Close the attach connection first: while the daemon still holds unread output
        // for us it cannot finish the container's exit, and a kill would wait forever.
        drop(output);
        if let Some(kind) = limit {
            self.kill(docker, id).await;
            let detail = match kind {
                LimitKind::Output => format!(
                    "output limit exceeded: the workload wrote more than {} bytes to stdout",
                    l.output_bytes
                ),
                LimitKind::Timeout => timeout_detail(l.timeout_ms),
                LimitKind::Memory => unreachable_memory(),
            };
            return Ok(RunOutcome::LimitExceeded {
                kind,
                detail,
                stderr: stderr.diag.clone().freeze(),
            });
        }
        // Output ended: the process closed stdout/stderr, normally by exiting. Reap it,
        // still under the deadline (it may have closed its streams and kept running).
        let wait = async {
            let mut waits = docker.wait_container(
                id,
                Some(WaitContainerOptions {
                    condition: "not-running",
                }),
            );
            match waits.next().await {
                Some(Ok(r)) => Ok(r.status_code),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    Ok(code)
                }
                Some(Err(e)) => Err(self.map_err(e)),
                None => Err(ExecError::Docker(
                    "wait stream ended without a status".into(),
                )),
            }
        };
        let code = match tokio::time::timeout_at(deadline, wait).await {
            Ok(r) => r?,
            Err(_) => {
                self.kill(docker, id).await;
                return Ok(RunOutcome::LimitExceeded {
                    kind: LimitKind::Timeout,
                    detail: timeout_detail(l.timeout_ms),
                    stderr: stderr.diag.clone().freeze(),
                });
            }
        };
        // The daemon may record the OOM kill a moment after the exit: look again before
        // deciding a SIGKILL was not the kernel's.
        let mut oom = false;
        for attempt in 0..5u64 {
            oom = docker
                .inspect_container(id, None)
                .await
                .ok()
                .and_then(|i| i.state)
                .and_then(|s| s.oom_killed)
                .unwrap_or(false);
            if oom || code != 137 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
        if oom || code == 137 {
            // 137 = SIGKILL, which nothing but the kernel sends inside the sandbox. A run cut
            // short by memory pressure is not a reproducible result, so it is never signed.
            let detail = if oom {
                format!("memory limit exceeded: the workload used more than {} bytes and was killed by the kernel", l.memory_bytes)
            } else {
                format!("memory limit exceeded (most likely): the workload was killed by SIGKILL (exit 137) under a memory limit of {} bytes", l.memory_bytes)
            };
            return Ok(RunOutcome::LimitExceeded {
                kind: LimitKind::Memory,
                detail,
                stderr: stderr.diag.clone().freeze(),
            });
        }
        let exit_code = i32::try_from(code).unwrap_or(i32::MIN);
        if stderr.finish().is_err() {
            let detail = stderr.error.clone().unwrap_or_default();
            return Ok(RunOutcome::LimitExceeded {
                kind: LimitKind::Output,
                detail,
                stderr: stderr.diag.freeze(),
            });
        }
        Ok(RunOutcome::Exited {
            exit_code,
            stdout: stdout.freeze(),
            trace: std::mem::take(&mut stderr.trace),
            stderr: stderr.diag.clone().freeze(),
            timings: Timings {
                start,
                run: t2.elapsed(),
                ..Default::default()
            },
        })
    }

    async fn kill(&self, docker: &Docker, id: &str) {
        if let Err(e) = docker
            .kill_container(id, Some(KillContainerOptions { signal: "SIGKILL" }))
            .await
        {
            tracing::debug!(target: "vouch::executor", container = id, %e, "kill (may have exited already)");
        }
    }
}

/// Why reading a container's output stopped early.
enum Stop {
    Limit(LimitKind),
    Broken(String),
    BadTrace,
}

/// Most trace leaves a job may emit.
pub const MAX_TRACE_LEAVES: usize = 1 << 20;
/// The prefix of a trace line on stderr (images/README.md).
pub const TRACE_PREFIX: &[u8] = b"vouch-trace ";

/// A trace line broke the format; [`StderrSplitter::error`] says how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTrace;

/// Splits a workload's stderr into trace leaves (`vouch-trace <hex>` lines) and capped
/// diagnostics.
#[derive(Debug, Default)]
pub struct StderrSplitter {
    line: Vec<u8>,
    /// Diagnostics, at most [`STDERR_CAP`] bytes.
    pub diag: BytesMut,
    /// Leaves in order.
    pub trace: Vec<Vec<u8>>,
    /// Why the trace was refused.
    pub error: Option<String>,
}

impl StderrSplitter {
    /// Feeds a chunk; errors on a malformed or oversized trace.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BadTrace> {
        for part in chunk.split_inclusive(|b| *b == b'\n') {
            self.line.extend_from_slice(part);
            if part.ends_with(b"\n") {
                self.end_line()?;
            } else if self.line.len() > 2 * crate::LEAF_HEX_MAX + TRACE_PREFIX.len() + 2
                && self.line.starts_with(TRACE_PREFIX)
            {
                return self.fail("a trace line is longer than the largest leaf");
            } else if self.line.len() > STDERR_CAP && !self.line.starts_with(TRACE_PREFIX) {
                self.keep_diag_line();
            }
        }
        Ok(())
    }

    /// Ends the stream (a last line without a newline counts).
    pub fn finish(&mut self) -> Result<(), BadTrace> {
        if self.line.is_empty() {
            return Ok(());
        }
        self.end_line()
    }

    fn fail(&mut self, why: &str) -> Result<(), BadTrace> {
        self.error = Some(format!(
            "malformed trace: {why}; see images/README.md for the trace line format"
        ));
        Err(BadTrace)
    }

    fn keep_diag_line(&mut self) {
        let room = STDERR_CAP.saturating_sub(self.diag.len());
        self.diag
            .extend_from_slice(&self.line[..self.line.len().min(room)]);
        self.line.clear();
    }

    fn end_line(&mut self) -> Result<(), BadTrace> {
        if let Some(rest) = self.line.strip_prefix(TRACE_PREFIX) {
            let hex_part = rest.strip_suffix(b"\n").unwrap_or(rest);
            let hex_part = hex_part.strip_suffix(b"\r").unwrap_or(hex_part);
            let leaf = match hex::decode(hex_part) {
                Ok(l) if !l.is_empty() && l.len() <= vouch_proto::MAX_LEAF_BYTES => l,
                _ => return self.fail("a trace line is not 1..=256 bytes of hex"),
            };
            if self.trace.len() >= MAX_TRACE_LEAVES {
                return self.fail("more than 1048576 trace leaves");
            }
            self.trace.push(leaf);
            self.line.clear();
        } else {
            self.keep_diag_line();
        }
        Ok(())
    }
}

/// Longest leaf in bytes (hex doubles it).
pub const LEAF_HEX_MAX: usize = vouch_proto::MAX_LEAF_BYTES;

/// Attach to all three streams, live only (nothing the container wrote before).
fn attach_options() -> AttachContainerOptions<String> {
    AttachContainerOptions {
        stdin: Some(true),
        stdout: Some(true),
        stderr: Some(true),
        stream: Some(true),
        logs: Some(false),
        detach_keys: None,
    }
}

fn timeout_detail(ms: u64) -> String {
    format!("timeout: the workload ran longer than {ms} ms and was killed")
}

fn unreachable_memory() -> String {
    // The read loop never reports memory; the kernel does, through inspect.
    "memory limit exceeded".into()
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Executor for DockerExecutor {
    fn resolve_image<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Digest, ExecError>> {
        Box::pin(async move {
            let docker = self.client()?;
            match docker.inspect_image(reference).await {
                Ok(img) => img
                    .id
                    .as_deref()
                    .ok_or_else(|| ExecError::Docker("image has no id".into()))?
                    .parse::<Digest>()
                    .map_err(|e| ExecError::Docker(format!("image id: {e}"))),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Err(ExecError::ImageNotFound(reference.to_string())),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 400,
                    message,
                }) => Err(ExecError::ImageNotFound(format!("{reference} ({message})"))),
                Err(e) => Err(self.map_err(e)),
            }
        })
    }

    fn run<'a>(
        &'a self,
        job_id: JobId,
        spec: &'a JobSpec,
        input: Bytes,
    ) -> BoxFuture<'a, Result<RunOutcome, ExecError>> {
        let spec = spec.clone();
        Box::pin(async move {
            let (this, docker) = self.detached()?;
            // Run the container's whole life in its own task: if the caller is dropped
            // (shutdown, a cancelled request) the container is still killed and removed.
            // The whole run is bounded too, in case the daemon stops answering.
            let bound = Duration::from_millis(spec.limits.timeout_ms) + DOCKER_CALL_MARGIN;
            tokio::spawn(async move {
                match tokio::time::timeout(bound, this.run_inner(docker.clone(), job_id, spec, input)).await {
                    Ok(r) => r,
                    Err(_) => {
                        this.remove_job_containers(&docker, &job_id).await;
                        Err(ExecError::Docker(format!(
                            "the Docker daemon did not finish the run within {} s; the job was abandoned",
                            bound.as_secs()
                        )))
                    }
                }
            })
            .await
            .map_err(|e| ExecError::Docker(format!("run task failed: {e}")))?
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(async move {
            let docker = self.client()?;
            docker.ping().await.map(|_| ()).map_err(|e| self.map_err(e))
        })
    }

    fn run_warm<'a>(
        &'a self,
        _job_id: JobId,
        spec: &'a JobSpec,
        input: Bytes,
    ) -> BoxFuture<'a, Result<RunOutcome, ExecError>> {
        let spec = spec.clone();
        Box::pin(async move {
            let (this, _) = self.detached()?;
            // An exchange must never be cut in half: a request written whose reply is not
            // read would leave that reply to be taken as the answer to the next request.
            // So it runs in its own task, which a dropped caller cannot cancel.
            tokio::spawn(async move { this.run_warm_inner(&spec, input).await })
                .await
                .map_err(|e| ExecError::Docker(format!("warm run task failed: {e}")))?
        })
    }

    fn sweep_orphans(&self) -> BoxFuture<'_, Result<usize, ExecError>> {
        Box::pin(self.remove_node_containers(false))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, ExecError>> {
        Box::pin(async move {
            self.warm.lock().await.clear();
            self.remove_node_containers(true).await
        })
    }
}

/// A pure function standing in for a workload: input → (exit code, output).
pub type Workload = fn(&[u8]) -> (i32, Vec<u8>);

/// An in-memory executor for tests of everything above the container layer. Images are
/// registered by name; "running" one applies a pure function to the input.
#[allow(missing_debug_implementations)]
pub struct MemoryExecutor {
    images: Mutex<HashMap<String, (Digest, Workload)>>,
    /// Artificial run time, to observe queued and running states.
    pub delay: Duration,
}

impl MemoryExecutor {
    /// An executor with no images.
    pub fn new() -> Self {
        MemoryExecutor {
            images: Mutex::new(HashMap::new()),
            delay: Duration::ZERO,
        }
    }

    /// Registers an image named `name` whose "workload" is `f`; returns its id.
    pub fn add_image(&self, name: &str, f: fn(&[u8]) -> (i32, Vec<u8>)) -> Digest {
        let id = Digest::of(name.as_bytes());
        let mut images = self.images.lock().unwrap_or_else(|p| p.into_inner());
        images.insert(name.to_string(), (id, f));
        images.insert(id.to_string(), (id, f));
        id
    }
}

impl Default for MemoryExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor for MemoryExecutor {
    fn resolve_image<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Digest, ExecError>> {
        let found = self
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(reference)
            .map(|x| x.0);
        Box::pin(
            async move { found.ok_or_else(|| ExecError::ImageNotFound(reference.to_string())) },
        )
    }

    fn run<'a>(
        &'a self,
        _job_id: JobId,
        spec: &'a JobSpec,
        input: Bytes,
    ) -> BoxFuture<'a, Result<RunOutcome, ExecError>> {
        let f = self
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&spec.image.to_string())
            .map(|x| x.1);
        let delay = self.delay;
        let cap = spec.limits.output_bytes;
        Box::pin(async move {
            let f = f.ok_or_else(|| ExecError::ImageNotFound(spec.image.to_string()))?;
            tokio::time::sleep(delay).await;
            let (exit_code, out) = f(&input);
            if out.len() as u64 > cap {
                return Ok(RunOutcome::LimitExceeded {
                    kind: LimitKind::Output,
                    detail: format!("output limit exceeded: more than {cap} bytes"),
                    stderr: Bytes::new(),
                });
            }
            Ok(RunOutcome::Exited {
                exit_code,
                stdout: out.into(),
                stderr: Bytes::new(),
                trace: vec![],
                timings: Timings::default(),
            })
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(async { Ok(()) })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, ExecError>> {
        Box::pin(async { Ok(0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_splitter_separates_trace_from_diagnostics() {
        let mut s = StderrSplitter::default();
        // Chunks split mid-line, as the attach stream delivers them.
        s.push(b"warming up\nvouch-trace 00").unwrap();
        s.push(b"ff\nvouch-tr").unwrap();
        s.push(b"ace 0102\r\nbye").unwrap();
        s.finish().unwrap();
        assert_eq!(s.trace, vec![vec![0x00, 0xff], vec![0x01, 0x02]]);
        assert_eq!(&s.diag[..], b"warming up\nbye");
    }

    #[test]
    fn stderr_splitter_refuses_malformed_trace_and_caps_diagnostics() {
        let mut s = StderrSplitter::default();
        assert!(s.push(b"vouch-trace zz\n").is_err());
        assert!(s.error.as_deref().unwrap_or("").contains("malformed trace"));
        let mut s = StderrSplitter::default();
        assert!(s
            .push(format!("vouch-trace {}\n", "ab".repeat(300)).as_bytes())
            .is_err());
        let mut s = StderrSplitter::default();
        for _ in 0..100 {
            s.push(&[b'x'; 4096]).unwrap();
            s.push(b"\n").unwrap();
        }
        assert_eq!(s.diag.len(), STDERR_CAP);
    }
}
