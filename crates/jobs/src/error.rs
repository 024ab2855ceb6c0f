//! What can go wrong: in the jobs API ([`JobsError`]) and inside a job ([`JobError`]).

use custos_core::{ErrorKind, Problem};
use custos_db::DbError;

custos_db::service_error! {
    pub enum JobsError {}
}

/// How a job's run ended other than by succeeding.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (after the backoff), while attempts remain.
    #[error("{0}")]
    Retry(String),
    /// Will fail the same way however often it is tried: the job fails now.
    #[error("{0}")]
    Fatal(String),
    /// An admin cancelled it; it stopped at a step boundary.
    #[error("cancelled")]
    Cancelled,
    /// Another runner took it over (this one's lease lapsed): this runner must stop at once.
    #[error("the job's lease was lost to another runner")]
    LeaseLost,
}

impl JobError {
    /// A failure worth retrying.
    pub fn retry(cause: impl std::fmt::Display) -> Self {
        JobError::Retry(cause.to_string())
    }

    /// A failure no retry can mend.
    pub fn fatal(cause: impl std::fmt::Display) -> Self {
        JobError::Fatal(cause.to_string())
    }

    /// A domain's refusal or failure: bad input, a missing thing or a lack of rights will not
    /// change by trying again; anything else (the database, a store) may.
    pub fn from_problem(problem: Problem) -> Self {
        let text = match problem.details.as_str() {
            Some(details) if !details.is_empty() => format!("{}: {details}", problem.error),
            _ => problem.error.clone(),
        };
        match problem.kind {
            ErrorKind::InvalidArgument
            | ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::Unauthenticated
            | ErrorKind::StateConflict => JobError::Fatal(text),
            _ => JobError::Retry(text),
        }
    }
}

impl From<DbError> for JobError {
    /// The database may well answer next time (a lost connection, a deadlock).
    fn from(e: DbError) -> Self {
        JobError::Retry(e.to_string())
    }
}

impl From<diesel::result::Error> for JobError {
    fn from(e: diesel::result::Error) -> Self {
        DbError::from(e).into()
    }
}
