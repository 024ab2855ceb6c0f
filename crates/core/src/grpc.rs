//! The one mapping of [`ErrorKind`] to gRPC status codes, and the glue every domain crate's thin
//! gRPC adapter uses to get the caller's [`RequestCtx`].

use tonic::{Code, Request, Status};

use crate::ctx::RequestCtx;
use crate::error::{ErrorKind, Problem};

pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict => Code::AlreadyExists,
        ErrorKind::Unprocessable | ErrorKind::StateConflict => Code::FailedPrecondition,
        ErrorKind::PayloadTooLarge | ErrorKind::RateLimited => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status for a problem: message is the `error`, and the full JSON body rides along as the
/// status details so gRPC clients see the same `details` as REST clients.
pub fn status(problem: &Problem) -> Status {
    let body = problem.body().to_string();
    Status::with_details(code(problem.kind), problem.error.clone(), body.into_bytes().into())
}

/// The context the gateway's auth layer stored in the request's extensions.
pub fn ctx<T>(request: &Request<T>) -> Result<RequestCtx, Status> {
    request
        .extensions()
        .get::<RequestCtx>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("Authentication credentials were not provided"))
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
