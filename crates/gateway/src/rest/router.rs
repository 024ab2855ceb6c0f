//! Routing: the axum router of every declared endpoint, and the one generic handler that reads a
//! request, calls the endpoint's operation and writes its answer (JSON, a page, or a file).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, OriginalUri, Path};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use custos_core::{ErrorKind, Problem, RequestCtx};
use http::{HeaderMap, StatusCode, header};

use super::decode::{BodyTimeout, JSON_BODY_MAX, build_input, is_json};
use super::endpoint::{BodyShape, Endpoint, Handler};
use super::envelope::{cursor_envelope, page_envelope};
use super::{descriptors, streams};
use crate::edge::problem_response;

/// Builds the axum router of every endpoint.
pub fn router<S: Clone + Send + Sync + 'static>(endpoints: &[Endpoint]) -> Router<S> {
    let mut by_path: Vec<(&'static str, MethodRouter<S>)> = Vec::new();
    for ep in endpoints {
        let path = ep.path;
        let mut ep = ep.clone();
        ep.accepted = descriptors::accepted_names(&ep).map(Arc::new);
        let ep = Arc::new(ep);
        let filter = MethodFilter::try_from(ep.method.clone()).expect("standard method");
        let handler = on(
            filter,
            move |ctx: Option<Extension<RequestCtx>>,
                  params: Result<Path<HashMap<String, String>>, PathRejection>,
                  OriginalUri(uri): OriginalUri,
                  request: axum::extract::Request| {
                let ep = ep.clone();
                async move {
                    match params {
                        Ok(Path(params)) => receive(&ep, ctx.map(|c| c.0), params, uri, request).await,
                        // A segment that is not UTF-8 once percent-decoded names nothing here.
                        Err(rejection) => problem_response(&Problem::new(
                            ErrorKind::NotFound,
                            "Not found",
                            format!("No resource at this path: {}", rejection.body_text()),
                        )),
                    }
                }
            },
        );
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => {
                let merged = std::mem::replace(methods, MethodRouter::new()).merge(handler);
                *methods = merged;
            }
            None => by_path.push((path, handler)),
        }
    }
    by_path.into_iter().fold(Router::new(), |r, (path, methods)| r.route(path, methods))
}

/// Streams `multipart/form-data` to the endpoint's upload; reads anything else (up to
/// [`JSON_BODY_MAX`], within the body timeout) as the endpoint's JSON body or query.
async fn receive(
    ep: &Endpoint,
    ctx: Option<RequestCtx>,
    params: HashMap<String, String>,
    uri: http::Uri,
    request: axum::extract::Request,
) -> Response {
    // axum serves HEAD with a GET route; a download's GET records who accessed the file, which
    // a HEAD must not do (and answering its headers would need that very call).
    if request.method() == http::Method::HEAD && matches!(ep.handler, Handler::Download(_)) {
        let mut response = problem_response(&Problem::new(
            ErrorKind::InvalidArgument,
            "Method not allowed",
            "A download is fetched with GET (it is recorded in the chain of custody)",
        ));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static("GET"));
        return response;
    }
    if let Some(upload) = &ep.upload
        && streams::is_multipart(request.headers())
    {
        return streams::upload(ep, upload, ctx, &params, request).await;
    }
    let timeout = request.extensions().get::<BodyTimeout>().copied().unwrap_or_default().0;
    let headers = request.headers().clone();
    let body = match tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), JSON_BODY_MAX)).await {
        Err(_) => {
            return problem_response(&Problem::new(
                ErrorKind::RequestTimeout,
                "Request body timeout",
                format!("The request body did not arrive within {} seconds", timeout.as_secs()),
            ));
        }
        Ok(Ok(body)) => body,
        Ok(Err(e)) if crate::listener::is_stalled(&e) => {
            return problem_response(&Problem::new(
                ErrorKind::RequestTimeout,
                "Request body timeout",
                format!("No part of the request body arrived for {} seconds", timeout.as_secs()),
            ));
        }
        Ok(Err(_)) => {
            return problem_response(&Problem::new(
                ErrorKind::PayloadTooLarge,
                "Request body too large",
                format!("JSON bodies are limited to {JSON_BODY_MAX} bytes; send files as multipart/form-data"),
            ));
        }
    };
    // A body that is there must be JSON: text, XML or a form would otherwise be read as JSON.
    if ep.body != BodyShape::Query && !body.iter().all(u8::is_ascii_whitespace) && !is_json(&headers) {
        let accepted = if ep.upload.is_some() { "application/json or multipart/form-data" } else { "application/json" };
        let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        return problem_response(&Problem::new(
            ErrorKind::UnsupportedMediaType,
            "Unsupported media type",
            format!(
                "This endpoint takes {accepted}; the request's Content-Type is {}",
                given.map_or("missing".into(), |v| format!("{v:?}"))
            ),
        ));
    }
    handle(ep, ctx, params, uri, headers, body).await
}

async fn handle(
    ep: &Endpoint,
    ctx: Option<RequestCtx>,
    params: HashMap<String, String>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match build_input(ep, &params, &uri, &body) {
        Ok(input) => input,
        Err(problem) => return problem_response(&problem),
    };
    let op = match &ep.handler {
        Handler::Json(op) => op,
        Handler::Download(download) => {
            return match (download.call)(ctx, input).await {
                Ok(file) => streams::file_response(file),
                Err(problem) => problem_response(&problem),
            };
        }
    };
    match (op.call)(ctx, input).await {
        Err(problem) => problem_response(&problem),
        Ok(_) if ep.success == StatusCode::NO_CONTENT => StatusCode::NO_CONTENT.into_response(),
        Ok(value) => {
            let value = if ep.list {
                page_envelope(value, &uri, &headers)
            } else if ep.cursor {
                cursor_envelope(value, &uri, &headers)
            } else {
                value
            };
            (ep.success, axum::Json(value)).into_response()
        }
    }
}
