//! The gRPC edge every domain crate's thin adapter shares: the one mapping of [`ErrorKind`] to a
//! gRPC status, and the glue that takes the caller's [`RequestCtx`] and maps a service's error.
//!
//! A failure travels as a real `google.rpc.Status` in `grpc-status-details-bin` (AIP-193), so any
//! standard client can read it: an `ErrorInfo` whose `reason` is the kind (`INVALID_ARGUMENT`,
//! `STATE_CONFLICT`, …), whose domain is `custos`, and whose metadata carries the seed's
//! `error` and `details` (as REST sends them; `details` as JSON text when it is not a string);
//! and, for a bad field, a `BadRequest` naming it. `custos_core` stays free of any transport.

use std::collections::HashMap;

use custos_core::{ErrorKind, Problem, RequestCtx};
use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Custos error.
pub const ERROR_DOMAIN: &str = "custos";

pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::UnsupportedMediaType => Code::InvalidArgument,
        ErrorKind::RequestTimeout => Code::DeadlineExceeded,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict => Code::AlreadyExists,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::Unprocessable | ErrorKind::StateConflict => Code::FailedPrecondition,
        ErrorKind::PayloadTooLarge | ErrorKind::RateLimited => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// `ErrorInfo.reason`: the kind in UPPER_SNAKE_CASE, finer than the code (a 409 duplicate and a
/// 409 legal hold share no gRPC code, a 422 and a legal hold share one).
pub fn reason(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
        ErrorKind::Unauthenticated => "UNAUTHENTICATED",
        ErrorKind::PermissionDenied => "PERMISSION_DENIED",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::Conflict => "CONFLICT",
        ErrorKind::StateConflict => "STATE_CONFLICT",
        ErrorKind::Aborted => "ABORTED",
        ErrorKind::Unprocessable => "UNPROCESSABLE",
        ErrorKind::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
        ErrorKind::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
        ErrorKind::RequestTimeout => "REQUEST_TIMEOUT",
        ErrorKind::RateLimited => "RATE_LIMITED",
        ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::Internal => "INTERNAL",
    }
}

/// The status for a problem: its message is the `error`; its details a `google.rpc.Status`
/// with `ErrorInfo` (and `BadRequest` when a field is at fault).
pub fn status(problem: &Problem) -> Status {
    let details_text = match &problem.details {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut details = ErrorDetails::new();
    if let Some(field) = problem.field() {
        details.add_bad_request_violation(field, details_text.clone());
    }
    let metadata = HashMap::from([("error".to_owned(), problem.error.clone()), ("details".to_owned(), details_text)]);
    details.set_error_info(reason(problem.kind), ERROR_DOMAIN, metadata);
    Status::with_error_details(code(problem.kind), problem.error.clone(), details)
}

/// The context the gateway's auth layer stored in the request's extensions.
pub fn ctx<T>(request: &Request<T>) -> Result<RequestCtx, Status> {
    request.extensions().get::<RequestCtx>().cloned().ok_or_else(|| {
        status(&Problem::new(
            ErrorKind::Unauthenticated,
            "Authentication credentials were not provided",
            "Send 'authorization: Token <token>' or 'authorization: Bearer <jwt>' metadata",
        ))
    })
}

/// Runs one unary call: takes the context, calls the service, maps its error once.
pub async fn unary<Req, Resp, E, F, Fut>(request: Request<Req>, call: F) -> Result<tonic::Response<Resp>, Status>
where
    F: FnOnce(RequestCtx, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, E>>,
    E: Into<Problem>,
{
    let ctx = ctx(&request)?;
    match call(ctx, request.into_inner()).await {
        Ok(resp) => Ok(tonic::Response::new(resp)),
        Err(err) => Err(status(&err.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_a_google_rpc_status_with_error_info_and_bad_request() {
        let status = status(&Problem::invalid_field("severity", "\"HUGE\" is not one of: LOW, HIGH"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "Invalid value for 'severity'");
        let details = status.check_error_details().expect("a google.rpc.Status");
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("INVALID_ARGUMENT", "custos"));
        assert_eq!(info.metadata["details"], "\"HUGE\" is not one of: LOW, HIGH");
        let bad = details.bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations[0].field, "severity");
    }

    #[test]
    fn structured_details_travel_as_json_text() {
        let p = Problem::new(ErrorKind::StateConflict, "Held", serde_json::json!({"holds": ["a"]}));
        let details = status(&p).check_error_details().unwrap();
        assert!(details.bad_request().is_none());
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "STATE_CONFLICT");
        assert_eq!(info.metadata["details"], r#"{"holds":["a"]}"#);
    }
}
