//! The crate's error type: what went wrong, at the level a caller acts on.

/// Errors from dataset parsing, training, artifacts and prediction.
///
/// None of these is retryable: training and prediction are deterministic, so
/// running the same input again gives the same failure.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// The caller's input (CSV, target, parameters, records) is wrong; the
    /// message says what and where.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A stored artifact does not match its digest or cannot be decoded.
    #[error("corrupt artifact: {0}")]
    Corrupt(String),
    /// A bug or numerical failure inside this crate, not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl LearnError {
    /// Whether retrying the same call could succeed; never, see the type docs.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, LearnError>;

pub(crate) fn invalid(message: impl Into<String>) -> LearnError {
    LearnError::Invalid(message.into())
}

pub(crate) fn internal(message: impl Into<String>) -> LearnError {
    LearnError::Internal(message.into())
}
