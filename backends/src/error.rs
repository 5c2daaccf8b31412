//! The meaning of a database or object-store failure, in the platform's
//! terms ([`Error`]): which failures a caller may retry, which say the
//! record is missing or taken, and which are bugs.
//!
//! The messages every store answers a missing or taken record with are
//! here too, so the three stores cannot drift apart.
//!
//! These are functions and a small extension trait rather than `From`
//! impls because neither the library errors nor [`Error`] belong to this
//! crate; it also makes each conversion visible at the call site.

use tracseq_core::{Error, ExperimentId, Result};

/// The answer of every store to a trial that does not exist.
pub(crate) fn trial_not_found(experiment: ExperimentId, number: u64) -> Error {
    Error::not_found(format!("trial {number} of experiment {experiment}"))
}

/// The answer of every store to a model version number already registered.
pub(crate) fn version_taken(name: &str, version: u32) -> Error {
    Error::Conflict(format!("model '{name}' version {version} already exists"))
}

/// The answer of every store to a model (or model version) that does not exist.
pub(crate) fn model_not_found(name: &str, version: Option<u32>) -> Error {
    match version {
        Some(v) => Error::NotFound(format!("model '{name}' has no version {v}")),
        None => Error::NotFound(format!("model '{name}' not found")),
    }
}

/// What a sqlx failure means to a caller.
pub(crate) fn db_error(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::RowNotFound => Error::NotFound("row not found".into()),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::Conflict(format!("duplicate record: {db}"))
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::Unavailable(e.to_string()),
        // SQLite reports a busy database as a database error with code 5/6.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5") | Some("6")) => {
            Error::Unavailable(e.to_string())
        }
        _ => Error::Internal(e.to_string()),
    }
}

/// What an object-store failure means to a caller.
pub(crate) fn object_error(e: object_store::Error) -> Error {
    // The store's own messages name server paths (a local store's absolute
    // directory) and endpoints: those go to the log, never into an answer.
    // Callers that know the artifact add its name.
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound("artifact not found".into()),
        object_store::Error::AlreadyExists { .. } => {
            Error::Conflict("artifact already exists".into())
        }
        object_store::Error::InvalidPath { .. } => Error::Invalid("invalid artifact path".into()),
        other => {
            tracing::warn!(error = %other, "artifact store failed");
            Error::Unavailable("the artifact store failed; the server log has the cause".into())
        }
    }
}

/// `.classify()?` on a library result: its error becomes an [`Error`] of
/// the right kind.
pub(crate) trait Classify<T> {
    fn classify(self) -> Result<T>;
}

impl<T> Classify<T> for std::result::Result<T, sqlx::Error> {
    fn classify(self) -> Result<T> {
        self.map_err(db_error)
    }
}

impl<T> Classify<T> for std::result::Result<T, object_store::Error> {
    fn classify(self) -> Result<T> {
        self.map_err(object_error)
    }
}
