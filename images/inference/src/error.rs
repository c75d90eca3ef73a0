//! The crate's error type. Every variant is about the caller's input (the model itself
//! cannot fail), and its message says what to change.

use std::fmt;

/// Why a request (or a step) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input is not JSON of the expected shape: a syntax error, a missing, unknown or
    /// duplicate field, a wrong type or an unknown role. Carries `serde_json`'s message,
    /// which names the field and the position.
    Json(String),
    /// A field is present but outside its allowed range.
    Field { field: &'static str, reason: String },
    /// A step's prefix and position do not describe a state the generation can reach.
    Step(String),
}

impl Error {
    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Field {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(msg) => write!(f, "invalid request JSON: {msg}"),
            Self::Field { field, reason } => write!(f, "invalid request: {field} {reason}"),
            Self::Step(msg) => write!(f, "invalid step: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e.to_string())
    }
}
