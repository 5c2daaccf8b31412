//! The one error type of the core crate, with meaning-level variants.

/// Errors surfaced by ports and domain logic. The variant says what a caller
/// can do about it: fix the input, retry later, or report a bug.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but conflicts with the current state
    /// (a lost compare-and-set, a duplicate name, a job already claimed).
    #[error("{0}")]
    Conflict(String),
    /// The input is wrong; the message says what and where.
    #[error("{0}")]
    Invalid(String),
    /// The caller may use the route but not on this record (approving
    /// their own promotion request, withdrawing someone else's).
    #[error("{0}")]
    Forbidden(String),
    /// A backend is unreachable or overloaded; retrying may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug, a corrupt record or a library failure; retrying the same
    /// call will not help.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `text` cut to at most `max_chars` characters, with an ellipsis and its
/// full length in bytes when it was longer: for quoting what a user sent in
/// a message without sending a 10 MB input back.
pub fn excerpt(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => {
            std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
        }
    }
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Conflict(_))
    }

    /// Whether a job attempt that failed with this error deserves another
    /// attempt (up to the job's `max_attempts`). Wider than
    /// [`Error::is_retryable`]: the next attempt may run on another worker,
    /// and an `Internal` failure of training (a panic, a library error, a
    /// GPU out of memory) can belong to the host rather than the job. Bad
    /// input (`Invalid`) and missing records (`NotFound`) fail the same way
    /// everywhere, so they end the job at once.
    pub fn is_attempt_retryable(&self) -> bool {
        self.is_retryable() || matches!(self, Error::Internal(_))
    }

    /// Stable machine-readable code used in API problem bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Invalid(_) => "invalid",
            Error::Forbidden(_) => "forbidden",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Error::NotFound(format!("{what} not found"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("corrupt record: {e}"))
    }
}

#[cfg(test)]
mod excerpt_tests {
    use super::excerpt;

    #[test]
    fn an_excerpt_keeps_short_text_and_cuts_long_text_on_a_character_boundary() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("exactly10!", 10), "exactly10!");
        let long = "é".repeat(1000);
        let cut = excerpt(&long, 5);
        assert_eq!(cut, "ééééé… (2000 bytes)");
    }
}
