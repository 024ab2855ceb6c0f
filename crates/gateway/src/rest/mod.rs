//! The REST/JSON facade: one generic handler, driven by the route table in [`routes`].
//!
//! Each endpoint names a service method and its proto request/response messages. The handler
//! builds the request message from path parameters, the query string (GET, DELETE) or the JSON
//! body, calls the very method gRPC calls, and writes the response message's JSON. List
//! responses become the seed's `{"count", "next", "previous", "results"}` page with absolute
//! URLs. Bad input is a 400 naming the field; nothing here knows any one resource.

pub mod docs;
pub mod files;
pub mod openapi;
pub mod routes;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, OriginalUri, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use custos_core::{Problem, RequestCtx};
use futures::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::edge::problem_response;
use crate::server::App;

/// Where an endpoint's request message comes from, besides path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// The query string (GET and DELETE).
    Query,
    /// The JSON body is the request message itself.
    Whole,
    /// The JSON body is one field of the request message (e.g. `framework` of
    /// `CreateFrameworkRequest`); with PATCH, the body's keys become its `update_mask`.
    Field(&'static str),
}

/// The raw input of one call, before it becomes a typed request message.
enum Input {
    Query(String, Vec<String>),
    Json(Value, Vec<String>),
}

type Call = Arc<dyn Fn(App, Option<RequestCtx>, Input) -> BoxFuture<'static, Result<Value, Problem>> + Send + Sync>;

/// A service method, type-erased: it decodes its own request message and encodes its response.
#[derive(Clone)]
pub struct Operation {
    call: Call,
    pub request: String,
    pub response: String,
}

/// Wraps a service method as an [`Operation`] for authenticated callers.
pub fn op<Req, Resp, F, Fut>(f: F) -> Operation
where
    Req: DeserializeOwned + prost::Name + Send + 'static,
    Resp: Serialize + prost::Name + Send + 'static,
    F: Fn(App, RequestCtx, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Problem>> + Send + 'static,
{
    let f = Arc::new(f);
    public_op(move |app, ctx: Option<RequestCtx>, req| {
        let f = f.clone();
        async move {
            match ctx {
                Some(ctx) => f(app, ctx, req).await,
                None => Err(Problem::new(
                    custos_core::ErrorKind::Unauthenticated,
                    "Authentication credentials were not provided",
                    "Send 'Authorization: Token <token>' or 'Authorization: Bearer <jwt>'",
                )),
            }
        }
    })
}

/// Wraps a service method that also answers anonymous callers (its path is public in `edge`).
pub fn public_op<Req, Resp, F, Fut>(f: F) -> Operation
where
    Req: DeserializeOwned + prost::Name + Send + 'static,
    Resp: Serialize + prost::Name + Send + 'static,
    F: Fn(App, Option<RequestCtx>, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Problem>> + Send + 'static,
{
    let f = Arc::new(f);
    let call: Call = Arc::new(move |app, ctx, input| {
        let f = f.clone();
        Box::pin(async move {
            let req: Req = decode(input)?;
            let resp = f(app, ctx, req).await?;
            serde_json::to_value(resp).map_err(Problem::internal)
        })
    });
    Operation { call, request: Req::full_name(), response: Resp::full_name() }
}

/// Decodes the request message. Either form carries, beside the fields, the names of those the
/// path gave (a segment that is no id of its kind names nothing: a 404, not a 400).
fn decode<Req: DeserializeOwned>(input: Input) -> Result<Req, Problem> {
    let (decoded, from_path) = match input {
        Input::Query(qs, from_path) => {
            let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(qs.as_bytes()));
            (serde_path_to_error::deserialize(de).map_err(|e| (e.path().to_string(), e.inner().to_string())), from_path)
        }
        Input::Json(value, from_path) => (
            serde_path_to_error::deserialize(value).map_err(|e| (e.path().to_string(), e.inner().to_string())),
            from_path,
        ),
    };
    decoded.map_err(|(path, why)| {
        if from_path.contains(&path) {
            return Problem::new(
                custos_core::ErrorKind::NotFound,
                "Not found",
                format!("Nothing has the {path} this path gives: {why}"),
            );
        }
        // A body mapped onto one field reports paths inside it (`framework.is_active`) as the
        // client wrote them (`is_active`).
        let field = path.split_once('.').map_or(path.as_str(), |(_, rest)| rest);
        Problem::invalid_field(field, why)
    })
}

/// One REST endpoint.
#[derive(Clone)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub body: BodyShape,
    pub list: bool,
    pub cursor: bool,
    /// Also accepts `multipart/form-data` with a streamed `file` part (see [`files`]).
    pub upload: bool,
    pub success: StatusCode,
    pub operation: Operation,
    /// The parameter and body keys it takes (see [`openapi::accepted_names`]): any other is a
    /// 400, not silently dropped — a misspelt filter must not answer with everything.
    accepted: Option<Arc<std::collections::BTreeSet<String>>>,
}

impl Endpoint {
    fn new(
        method: Method,
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
        operation: Operation,
    ) -> Self {
        let body = if method == Method::GET || method == Method::DELETE { BodyShape::Query } else { BodyShape::Whole };
        let success = match method {
            Method::DELETE => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        };
        let tag = path.trim_start_matches("/api/compliance/").split('/').next().unwrap_or("api");
        Endpoint {
            method,
            path,
            operation_id,
            summary,
            tag,
            body,
            list: false,
            cursor: false,
            upload: false,
            success,
            operation,
            accepted: None,
        }
    }
    pub fn get(path: &'static str, id: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::GET, path, id, summary, op)
    }
    pub fn post(path: &'static str, id: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::POST, path, id, summary, op)
    }
    pub fn put(path: &'static str, id: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::PUT, path, id, summary, op)
    }
    pub fn patch(path: &'static str, id: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::PATCH, path, id, summary, op)
    }
    pub fn delete(path: &'static str, id: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::DELETE, path, id, summary, op)
    }
    /// The response is a page of results.
    pub fn list(mut self) -> Self {
        self.list = true;
        self
    }
    /// The response is a cursor-paginated list (`results` and `next_cursor`).
    pub fn cursor_list(mut self) -> Self {
        self.cursor = true;
        self
    }
    /// The request body is this field of the request message.
    pub fn body_field(mut self, field: &'static str) -> Self {
        self.body = BodyShape::Field(field);
        self
    }
    /// The endpoint also takes a `multipart/form-data` upload (metadata fields, then `file`).
    pub fn multipart_upload(mut self) -> Self {
        self.upload = true;
        self
    }
    /// The work goes on after the answer (202).
    pub fn accepted(mut self) -> Self {
        self.success = StatusCode::ACCEPTED;
        self
    }
    pub fn created(mut self) -> Self {
        self.success = StatusCode::CREATED;
        self
    }

    fn refuse_unknown(&self, key: &str) -> Result<(), Problem> {
        match &self.accepted {
            Some(accepted) if !accepted.contains(key) && !self.path_params().contains(&key) => {
                let known: Vec<&str> = accepted.iter().map(String::as_str).collect();
                Err(Problem::invalid(
                    "Unknown parameter",
                    format!("{key:?} is not a parameter of this endpoint; it takes: {}", known.join(", ")),
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn path_params(&self) -> Vec<&'static str> {
        self.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
    }
}

/// Builds the axum router of every endpoint in the table.
pub fn router(endpoints: &[Endpoint]) -> Router<App> {
    let mut by_path: Vec<(&'static str, MethodRouter<App>)> = Vec::new();
    for ep in endpoints {
        let path = ep.path;
        let mut ep = ep.clone();
        ep.accepted = openapi::accepted_names(&ep).map(Arc::new);
        let ep = Arc::new(ep);
        let filter = MethodFilter::try_from(ep.method.clone()).expect("standard method");
        let handler = on(
            filter,
            move |State(app): State<App>,
                  ctx: Option<Extension<RequestCtx>>,
                  params: Result<Path<HashMap<String, String>>, PathRejection>,
                  OriginalUri(uri): OriginalUri,
                  request: axum::extract::Request| {
                let ep = ep.clone();
                async move {
                    match params {
                        Ok(Path(params)) => receive(&ep, app, ctx.map(|c| c.0), params, uri, request).await,
                        // A segment that is not UTF-8 once percent-decoded names nothing here.
                        Err(rejection) => problem_response(&Problem::new(
                            custos_core::ErrorKind::NotFound,
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

/// Largest JSON body accepted (files travel as multipart uploads, never as JSON).
pub(crate) const JSON_BODY_MAX: usize = 2 * 1024 * 1024;

/// How long a request body may take to arrive (`CUSTOS_HTTP_BODY_TIMEOUT_SECS`): for a JSON
/// body, the whole of it; for an upload, each chunk. Set as a request extension by the server.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

impl Default for BodyTimeout {
    fn default() -> Self {
        BodyTimeout(crate::listener::ConnectionLimits::default().body_read_timeout)
    }
}

/// A body stream whose every chunk must arrive within `timeout` (a stalled upload ends in an
/// error instead of holding its connection and its staging object for ever).
pub(crate) fn stall_limited(
    body: axum::body::Body,
    timeout: std::time::Duration,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    use futures::StreamExt;
    futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no part of the body arrived for {} seconds", timeout.as_secs()),
                )),
                None,
            )),
        }
    })
}

/// Whether a `Content-Type` is JSON (`application/json`, `application/problem+json`, with or
/// without parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let essence = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// Streams `multipart/form-data` to [`files::upload`] on upload endpoints; reads anything else
/// (up to [`JSON_BODY_MAX`], within the body timeout) as the endpoint's JSON body or query.
async fn receive(
    ep: &Endpoint,
    app: App,
    ctx: Option<RequestCtx>,
    params: HashMap<String, String>,
    uri: http::Uri,
    request: axum::extract::Request,
) -> Response {
    if ep.upload && files::is_multipart(request.headers()) {
        return files::upload(app, ctx, request).await;
    }
    let timeout = request.extensions().get::<BodyTimeout>().copied().unwrap_or_default().0;
    let headers = request.headers().clone();
    let body = match tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), JSON_BODY_MAX)).await {
        Err(_) => {
            return problem_response(&Problem::new(
                custos_core::ErrorKind::RequestTimeout,
                "Request body timeout",
                format!("The request body did not arrive within {} seconds", timeout.as_secs()),
            ));
        }
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return problem_response(&Problem::new(
                custos_core::ErrorKind::PayloadTooLarge,
                "Request body too large",
                format!("JSON bodies are limited to {JSON_BODY_MAX} bytes; send files as multipart/form-data"),
            ));
        }
    };
    // A body that is there must be JSON: text, XML or a form would otherwise be read as JSON.
    if ep.body != BodyShape::Query && !body.iter().all(u8::is_ascii_whitespace) && !is_json(&headers) {
        let accepted = if ep.upload { "application/json or multipart/form-data" } else { "application/json" };
        return problem_response(&Problem::new(
            custos_core::ErrorKind::UnsupportedMediaType,
            "Unsupported media type",
            format!(
                "This endpoint takes {accepted}; the request's Content-Type is {}",
                headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map_or("missing".into(), |v| format!("{v:?}"))
            ),
        ));
    }
    handle(ep, app, ctx, params, uri, headers, body).await
}

async fn handle(
    ep: &Endpoint,
    app: App,
    ctx: Option<RequestCtx>,
    params: HashMap<String, String>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = match build_input(ep, &params, &uri, &body) {
        Ok(input) => (ep.operation.call)(app, ctx, input).await,
        Err(p) => Err(p),
    };
    match result {
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

fn build_input(
    ep: &Endpoint,
    params: &HashMap<String, String>,
    uri: &http::Uri,
    body: &Bytes,
) -> Result<Input, Problem> {
    if ep.body == BodyShape::Query {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
            ep.refuse_unknown(&key)?;
            // Path parameters win over query parameters of the same name.
            if !params.contains_key(key.as_ref()) {
                pairs.push((key.into_owned(), value.into_owned()));
            }
        }
        pairs.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        return Ok(Input::Query(qs, params.keys().cloned().collect()));
    }
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Problem::invalid("Malformed JSON", format!("The request body is not valid JSON: {e}")))?
    };
    let Value::Object(object) = value else {
        return Err(Problem::invalid("Malformed request", "The request body must be a JSON object"));
    };
    for key in object.keys() {
        ep.refuse_unknown(key)?;
    }
    let mut message = match ep.body {
        BodyShape::Field(field) => {
            let mut m = Map::new();
            if ep.method == Method::PATCH {
                let mask: Vec<Value> = object.keys().cloned().map(Value::String).collect();
                m.insert("update_mask".into(), Value::Array(mask));
            }
            m.insert(field.into(), Value::Object(object));
            m
        }
        _ => object,
    };
    for (k, v) in params {
        // Path segments are text; numeric ones (`{seq}`) become numbers for integer fields.
        let value = v.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(v.clone()));
        message.insert(k.clone(), value);
    }
    Ok(Input::Json(Value::Object(message), params.keys().cloned().collect()))
}

/// An absolute link to this path with `param` set to `value` (other query parameters kept).
fn link(uri: &http::Uri, headers: &HeaderMap, param: &str, value: Option<String>) -> Value {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(v) = value {
        pairs.push((param.to_owned(), v));
    }
    let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let sep = if qs.is_empty() { "" } else { "?" };
    Value::String(format!("{scheme}://{host}{}{sep}{qs}", uri.path()))
}

/// A cursor page: `{"next", "previous", "results"}` (Django REST framework's cursor pagination),
/// where `next` carries the opaque cursor; there is no total count, so pages stay fast however
/// long the list.
fn cursor_envelope(value: Value, uri: &http::Uri, headers: &HeaderMap) -> Value {
    let Value::Object(mut m) = value else { return value };
    let next = match m.remove("next_cursor") {
        Some(Value::String(c)) => link(uri, headers, "cursor", Some(c)),
        _ => Value::Null,
    };
    let mut out = Map::new();
    out.insert("next".into(), next);
    out.insert("previous".into(), Value::Null);
    out.insert("results".into(), m.remove("results").unwrap_or(Value::Array(vec![])));
    Value::Object(out)
}

/// Turns a list response (`count`, `next_page`, `previous_page`, `results`) into the seed's page:
/// `{"count", "next", "previous", "results"}` with absolute URLs, as Django REST framework writes.
fn page_envelope(value: Value, uri: &http::Uri, headers: &HeaderMap) -> Value {
    let Value::Object(mut m) = value else { return value };
    let page_link = |page: Option<u64>| match page {
        None => Value::Null,
        Some(p) => link(uri, headers, "page", (p > 1).then(|| p.to_string())),
    };
    let next = page_link(m.get("next_page").and_then(Value::as_u64));
    let previous = page_link(m.get("previous_page").and_then(Value::as_u64));
    let mut out = Map::new();
    out.insert("count".into(), m.remove("count").unwrap_or(Value::from(0)));
    out.insert("next".into(), next);
    out.insert("previous".into(), previous);
    out.insert("results".into(), m.remove("results").unwrap_or(Value::Array(vec![])));
    Value::Object(out)
}
