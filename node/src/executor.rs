//! Running a job: the [`Executor`] interface, the Docker implementation used in production,
//! and a small in-memory one used beside it in tests.
//!
//! The implementation lives in the `vouch-exec` crate, which the verifier shares to
//! re-execute disputed jobs; this module re-exports it so existing paths
//! (`vouch_node::executor::DockerExecutor`) keep working.

pub use vouch_exec::*;
