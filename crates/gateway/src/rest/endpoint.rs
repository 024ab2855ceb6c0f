//! What a REST endpoint is: a path and method, the service method it calls (type-erased into an
//! [`Operation`]), how its request message is read, and how it is documented. Domains declare
//! their endpoints with these (see `crate::domains`); nothing here knows any one resource.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use custos_core::{Problem, RequestCtx};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::decode::{Input, decode};

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

pub(crate) type Call =
    Arc<dyn Fn(Option<RequestCtx>, Input) -> BoxFuture<'static, Result<Value, Problem>> + Send + Sync>;

/// A service method, type-erased: it decodes its own request message and encodes its response.
#[derive(Clone)]
pub struct Operation {
    pub(crate) call: Call,
    /// Full proto names of the request and response messages.
    pub request: String,
    pub response: String,
    /// The service method's name (`update_requirement_status`): the rpc's name in snake case.
    pub method: &'static str,
}

impl Operation {
    /// A service method for authenticated callers.
    pub fn new<Req, Resp, F, Fut>(method: &'static str, f: F) -> Operation
    where
        Req: DeserializeOwned + prost::Name + Send + 'static,
        Resp: Serialize + prost::Name + Send + 'static,
        F: Fn(RequestCtx, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Problem>> + Send + 'static,
    {
        let f = Arc::new(f);
        Self::public(method, move |ctx: Option<RequestCtx>, req| {
            let f = f.clone();
            async move {
                match ctx {
                    Some(ctx) => f(ctx, req).await,
                    None => Err(crate::edge::no_credentials()),
                }
            }
        })
    }

    /// A service method that also answers anonymous callers (declare its endpoint
    /// [`Endpoint::public`]).
    pub fn public<Req, Resp, F, Fut>(method: &'static str, f: F) -> Operation
    where
        Req: DeserializeOwned + prost::Name + Send + 'static,
        Resp: Serialize + prost::Name + Send + 'static,
        F: Fn(Option<RequestCtx>, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Problem>> + Send + 'static,
    {
        let f = Arc::new(f);
        let call: Call = Arc::new(move |ctx, input| {
            let f = f.clone();
            Box::pin(async move {
                let req: Req = decode(input)?;
                let resp = f(ctx, req).await?;
                serde_json::to_value(resp).map_err(Problem::internal)
            })
        });
        Operation { call, request: Req::full_name(), response: Resp::full_name(), method }
    }
}

/// A file arriving in a multipart upload: its name and media type as the client gave them, and
/// its bytes as they arrive (an error ends the stream).
pub struct IncomingFile {
    pub file_name: String,
    pub content_type: String,
    pub body: BoxStream<'static, Result<Bytes, String>>,
}

pub(crate) type UploadCall =
    Arc<dyn Fn(RequestCtx, Value, IncomingFile) -> BoxFuture<'static, Result<Value, Problem>> + Send + Sync>;

/// What an endpoint does with a `multipart/form-data` request whose last part is a `file`: the
/// parts before it are the fields of `metadata` (typed by its proto descriptor), the file streams.
/// Without a file part the request is the endpoint's JSON operation, the fields its body.
#[derive(Clone)]
pub struct Upload {
    pub(crate) call: UploadCall,
    /// Full proto name of the metadata message.
    pub metadata: String,
    /// Largest file taken (a `Content-Length` beyond it is refused before reading).
    pub max_bytes: u64,
}

impl Upload {
    pub fn new<Meta, Resp, F, Fut>(max_bytes: u64, f: F) -> Upload
    where
        Meta: DeserializeOwned + prost::Name + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(RequestCtx, Meta, IncomingFile) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Problem>> + Send + 'static,
    {
        let f = Arc::new(f);
        let call: UploadCall = Arc::new(move |ctx, metadata, file| {
            let f = f.clone();
            Box::pin(async move {
                let meta: Meta = serde_path_to_error::deserialize(metadata)
                    .map_err(|e| Problem::invalid_field(&e.path().to_string(), e.inner()))?;
                let resp = f(ctx, meta, file).await?;
                serde_json::to_value(resp).map_err(Problem::internal)
            })
        });
        Upload { call, metadata: Meta::full_name(), max_bytes }
    }
}

/// A file a download endpoint answers, streamed.
pub struct FileDownload {
    pub content_type: String,
    pub size: u64,
    pub file_name: String,
    /// SHA-256 of the content, hex (`Repr-Digest`, RFC 9530, and the `ETag`).
    pub sha256: Option<String>,
    /// BLAKE3 of the content, hex (`X-Content-BLAKE3`).
    pub blake3: Option<String>,
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

pub(crate) type DownloadCall =
    Arc<dyn Fn(Option<RequestCtx>, Input) -> BoxFuture<'static, Result<FileDownload, Problem>> + Send + Sync>;

/// A service method answering a file instead of a JSON message.
#[derive(Clone)]
pub struct Download {
    pub(crate) call: DownloadCall,
    pub request: String,
    pub method: &'static str,
    /// The media types the file comes in, as the API description lists them.
    pub media_types: &'static [&'static str],
}

impl Download {
    pub fn new<Req, F, Fut>(method: &'static str, f: F) -> Download
    where
        Req: DeserializeOwned + prost::Name + Send + 'static,
        F: Fn(RequestCtx, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<FileDownload, Problem>> + Send + 'static,
    {
        let f = Arc::new(f);
        let call: DownloadCall = Arc::new(move |ctx, input| {
            let f = f.clone();
            Box::pin(async move {
                let ctx = ctx.ok_or_else(crate::edge::no_credentials)?;
                let req: Req = decode(input)?;
                f(ctx, req).await
            })
        });
        Download { call, request: Req::full_name(), method, media_types: &["application/octet-stream"] }
    }

    /// The file is one of these media types (by default any: `application/octet-stream`).
    pub fn media_types(mut self, media_types: &'static [&'static str]) -> Download {
        self.media_types = media_types;
        self
    }
}

/// What an endpoint answers.
#[derive(Clone)]
pub enum Handler {
    /// A JSON message (a page, a cursor page or one message).
    Json(Operation),
    /// A file.
    Download(Download),
}

/// One REST endpoint.
#[derive(Clone)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub operation_id: String,
    pub summary: &'static str,
    pub tag: &'static str,
    pub body: BodyShape,
    pub list: bool,
    pub cursor: bool,
    /// Also accepts `multipart/form-data` with a streamed `file` part.
    pub upload: Option<Upload>,
    /// Answers anonymous callers too (rate limits still apply).
    pub public: bool,
    pub success: StatusCode,
    /// The failures it can answer beyond those every endpoint can (see `openapi`), with why.
    pub failures: Vec<(StatusCode, &'static str)>,
    pub handler: Handler,
    /// The parameter and body keys it takes (see `descriptors::accepted_names`): any other is a
    /// 400, not silently dropped — a misspelt filter must not answer with everything.
    pub(crate) accepted: Option<Arc<std::collections::BTreeSet<String>>>,
}

/// `list_frameworks` → `listFrameworks`: the REST operation id of a service method, so the rpc
/// (`ListFrameworks`), the method and the operation are found from one another by name. A PUT,
/// which replaces where PATCH updates, is `replaceFramework`.
pub fn operation_id(method: &Method, service_method: &str) -> String {
    let mut out = String::with_capacity(service_method.len());
    let mut upper = false;
    for ch in service_method.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    match (method, out.strip_prefix("update")) {
        (&Method::PUT, Some(rest)) => format!("replace{rest}"),
        _ => out,
    }
}

impl Endpoint {
    fn new(method: Method, path: &'static str, summary: &'static str, handler: Handler) -> Self {
        let body = if method == Method::GET || method == Method::DELETE { BodyShape::Query } else { BodyShape::Whole };
        let success = match method {
            Method::DELETE => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        };
        let tag = path.trim_start_matches("/api/compliance/").split('/').next().unwrap_or("api");
        let service_method = match &handler {
            Handler::Json(op) => op.method,
            Handler::Download(d) => d.method,
        };
        Endpoint {
            operation_id: operation_id(&method, service_method),
            method,
            path,
            summary,
            tag,
            body,
            list: false,
            cursor: false,
            upload: None,
            public: false,
            success,
            failures: Vec::new(),
            handler,
            accepted: None,
        }
    }
    pub fn get(path: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::GET, path, summary, Handler::Json(op))
    }
    pub fn post(path: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::POST, path, summary, Handler::Json(op))
    }
    pub fn put(path: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::PUT, path, summary, Handler::Json(op))
    }
    pub fn patch(path: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::PATCH, path, summary, Handler::Json(op))
    }
    pub fn delete(path: &'static str, summary: &'static str, op: Operation) -> Self {
        Self::new(Method::DELETE, path, summary, Handler::Json(op))
    }
    /// A GET answering a file (streamed, with its digests in the headers).
    pub fn download(path: &'static str, summary: &'static str, download: Download) -> Self {
        Self::new(Method::GET, path, summary, Handler::Download(download))
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
    pub fn multipart_upload(mut self, upload: Upload) -> Self {
        self.upload = Some(upload);
        self
    }
    /// Anonymous callers may call it.
    pub fn public(mut self) -> Self {
        self.public = true;
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
    /// It may also answer `status`, for the reason given (documented in the OpenAPI document).
    pub fn fails(mut self, status: StatusCode, why: &'static str) -> Self {
        self.failures.push((status, why));
        self
    }

    /// The full proto name of the request message.
    pub fn request_message(&self) -> &str {
        match &self.handler {
            Handler::Json(op) => &op.request,
            Handler::Download(d) => &d.request,
        }
    }

    /// The service method it calls.
    pub fn service_method(&self) -> &'static str {
        match &self.handler {
            Handler::Json(op) => op.method,
            Handler::Download(d) => d.method,
        }
    }

    pub(crate) fn refuse_unknown(&self, key: &str) -> Result<(), Problem> {
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

/// Declares an endpoint's operation: `op!(app.frameworks, list_frameworks)` calls
/// `app.frameworks.list_frameworks(&ctx, request)`, maps its error once, and names the operation
/// after the method.
#[macro_export]
macro_rules! op {
    ($service:expr, $method:ident) => {{
        let service = $service.clone();
        $crate::rest::Operation::new(stringify!($method), move |ctx, req| {
            let service = service.clone();
            async move { service.$method(&ctx, req).await.map_err(::custos_core::Problem::from) }
        })
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_follow_the_method_name() {
        assert_eq!(operation_id(&Method::GET, "list_frameworks"), "listFrameworks");
        assert_eq!(operation_id(&Method::POST, "update_requirement_status"), "updateRequirementStatus");
        assert_eq!(operation_id(&Method::PATCH, "update_framework"), "updateFramework");
        assert_eq!(operation_id(&Method::PUT, "update_framework"), "replaceFramework");
    }
}
