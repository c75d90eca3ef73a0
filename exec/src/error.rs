//! Errors of job execution.

/// Errors from the Docker side of a job run. A workload that exits non-zero or breaks a
/// limit is *not* an error (see [`crate::RunOutcome`]); these are faults of the
/// infrastructure or of the request.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The image is not present in the local engine. Vouch never pulls.
    #[error(
        "image {0:?} is not present on this host; Vouch never pulls images: build it \
         (images/build.sh) or `docker load` it, then refer to it by tag or by its id"
    )]
    ImageNotFound(String),
    /// The Docker daemon could not be reached.
    #[error(
        "cannot reach the Docker daemon at {host}: {reason}. Is dockerd running? Set \
         DOCKER_HOST (or `docker_host` in the config / --docker-host) to its socket, e.g. \
         unix:///var/run/docker.sock, and check this user may open it"
    )]
    Unavailable {
        /// The endpoint that was tried.
        host: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The daemon answered with an error.
    #[error("docker: {0}")]
    Docker(String),
}
