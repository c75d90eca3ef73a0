//! Binary-only helpers (they use `anyhow`): key files and the HTTP client.

pub mod client;
pub mod keys;
