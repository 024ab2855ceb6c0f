//! Error kinds shared by every crate.
//!
//! Each crate keeps its own `thiserror` enum; each converts into a [`Problem`] — a kind plus the
//! seed's `{"error": ..., "details": ...}` body — and the edges map the kind exactly once: to an
//! HTTP status in the gateway, to a gRPC code in [`crate::grpc`].

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed or invalid input (HTTP 400, gRPC INVALID_ARGUMENT).
    InvalidArgument,
    /// No or bad credentials (401, UNAUTHENTICATED).
    Unauthenticated,
    /// The role may not do this (403, PERMISSION_DENIED).
    PermissionDenied,
    /// No such resource in the caller's organisation (404, NOT_FOUND).
    NotFound,
    /// The change collides with an existing resource, e.g. a duplicate key (409, ALREADY_EXISTS).
    Conflict,
    /// The resource's state forbids the operation: under legal hold, sealed, released (409,
    /// FAILED_PRECONDITION).
    StateConflict,
    /// Undone because it collided with a concurrent change (a deadlock, a serialization
    /// failure); nothing was written and sending it again will most likely succeed (409, ABORTED).
    Aborted,
    /// Well-formed but semantically unacceptable (422, FAILED_PRECONDITION).
    Unprocessable,
    /// The body is larger than allowed (413, RESOURCE_EXHAUSTED).
    PayloadTooLarge,
    /// The body is not in a media type the endpoint takes (415, INVALID_ARGUMENT).
    UnsupportedMediaType,
    /// The request (its body) did not arrive in time (408, DEADLINE_EXCEEDED).
    RequestTimeout,
    /// Rate limit exceeded (429, RESOURCE_EXHAUSTED).
    RateLimited,
    /// A dependency (the database) is unreachable (503, UNAVAILABLE).
    Unavailable,
    /// A bug or an unexpected failure (500, INTERNAL); details are logged, not returned.
    Internal,
}

const INVALID_FIELD_PREFIX: &str = "Invalid value for '";

/// A failure as the caller sees it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}: {details}")]
pub struct Problem {
    pub kind: ErrorKind,
    pub error: String,
    pub details: Value,
}

impl Problem {
    pub fn new(kind: ErrorKind, error: impl Into<String>, details: impl Into<Value>) -> Self {
        Problem { kind, error: error.into(), details: details.into() }
    }

    pub fn invalid(error: impl Into<String>, details: impl Into<Value>) -> Self {
        Self::new(ErrorKind::InvalidArgument, error, details)
    }

    /// 400 naming the offending field or parameter.
    pub fn invalid_field(field: &str, details: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::InvalidArgument, format!("{INVALID_FIELD_PREFIX}{field}'"), details.to_string())
    }

    /// The request field or parameter at fault, for a problem made by [`Problem::invalid_field`]
    /// (a gRPC `BadRequest` names it). Read back from `error` rather than stored beside it: a
    /// `Problem` travels in every `Result` of the code base, and one more field would make every
    /// one of them larger.
    pub fn field(&self) -> Option<&str> {
        if self.kind != ErrorKind::InvalidArgument {
            return None;
        }
        self.error.strip_prefix(INVALID_FIELD_PREFIX)?.strip_suffix('\'')
    }

    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} not found"), format!("No {what} with id {id}"))
    }

    pub fn conflict(error: impl Into<String>, details: impl Into<Value>) -> Self {
        Self::new(ErrorKind::Conflict, error, details)
    }

    /// 409 for an operation the resource's current state forbids.
    pub fn state_conflict(error: impl Into<String>, details: impl Into<Value>) -> Self {
        Self::new(ErrorKind::StateConflict, error, details)
    }

    /// An internal failure: the cause is logged here and hidden from the caller.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            ErrorKind::Internal,
            "Internal server error",
            "The failure was logged; quote the request id when reporting it",
        )
    }

    /// The seed's JSON error body.
    pub fn body(&self) -> Value {
        serde_json::json!({ "error": self.error, "details": self.details })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_at_fault_is_named_only_for_field_problems() {
        assert_eq!(Problem::invalid_field("due_date", "not a date").field(), Some("due_date"));
        assert_eq!(Problem::invalid("Malformed JSON", "…").field(), None);
        assert_eq!(Problem::conflict("Invalid value for 'x'", "…").field(), None);
    }
}
