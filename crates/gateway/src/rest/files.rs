//! Evidence files over HTTP: `multipart/form-data` uploads streamed into the evidence service,
//! and downloads streamed back. Neither ever holds a whole file in memory.
//!
//! An upload is the evidence's metadata fields (as in the JSON body) followed by one `file`
//! part. The file must come last: the metadata is validated before a byte is stored, and a part
//! after the file would otherwise be silently dropped, so it is refused instead.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;
use bytes::Bytes;
use custos_core::{Problem, RequestCtx};
use custos_proto::v1 as pb;
use futures::{Stream, StreamExt};
use http::{HeaderValue, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use crate::edge::problem_response;
use crate::server::App;

pub const DOWNLOAD: &str = "/api/compliance/evidence/{id}/download/";

/// Metadata fields are short; anything longer is not metadata.
const FIELD_MAX: usize = 64 * 1024;
/// Room for the metadata parts around the file when checking `Content-Length` up front.
const ENVELOPE_SLACK: u64 = 1024 * 1024;

pub fn router() -> Router<App> {
    Router::new().route(DOWNLOAD, get(download))
}

pub fn is_multipart(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// `POST /api/compliance/evidence/` with `multipart/form-data`.
pub async fn upload(app: App, ctx: Option<RequestCtx>, request: Request) -> Response {
    match upload_inner(app, ctx, request).await {
        Ok(evidence) => (StatusCode::CREATED, axum::Json(evidence)).into_response(),
        Err(problem) => problem_response(&problem),
    }
}

async fn upload_inner(app: App, ctx: Option<RequestCtx>, request: Request) -> Result<pb::Evidence, Problem> {
    let ctx = ctx.ok_or_else(unauthenticated)?;
    ctx.require(custos_core::ctx::Access::Write)?;
    let limit = app.evidence.max_upload_bytes();
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(ENVELOPE_SLACK)) {
        return Err(custos_evidence::blobs::BlobError::TooLarge { limit }.into());
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| Problem::invalid("Malformed multipart body", format!("Content-Type: {e}")))?;
    let timeout = request.extensions().get::<super::BodyTimeout>().copied().unwrap_or_default().0;
    let mut multipart = multer::Multipart::new(super::stall_limited(request.into_body(), timeout), boundary);

    let mut fields = Map::new();
    // The metadata parts together, like a JSON body, are bounded; only the file part streams.
    let mut metadata_bytes = 0usize;
    let file = loop {
        let field = multipart.next_field().await.map_err(malformed)?;
        let Some(mut field) = field else {
            break None;
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let media_type = field.content_type().map(ToString::to_string).unwrap_or_default();
            break Some((file_name, media_type, field));
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            if text.len() + chunk.len() > FIELD_MAX {
                return Err(Problem::invalid_field(&name, format!("longer than {FIELD_MAX} bytes")));
            }
            metadata_bytes += chunk.len();
            if metadata_bytes > super::JSON_BODY_MAX {
                return Err(Problem::new(
                    custos_core::ErrorKind::PayloadTooLarge,
                    "Request metadata too large",
                    format!("the parts before the file are limited to {} bytes in all", super::JSON_BODY_MAX),
                ));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text).map_err(|_| Problem::invalid_field(&name, "is not UTF-8 text"))?;
        add_field(&mut fields, &name, text)?;
    };
    let evidence: pb::EvidenceInput = serde_path_to_error::deserialize(Value::Object(fields))
        .map_err(|e| Problem::invalid_field(&e.path().to_string(), e.inner()))?;
    let Some((file_name, content_type, field)) = file else {
        // No file part: the same as a JSON create.
        return app
            .evidence
            .create_evidence(&ctx, pb::CreateEvidenceRequest { evidence: Some(evidence) })
            .await
            .map_err(Problem::from);
    };
    let header = pb::EvidenceUploadHeader { evidence: Some(evidence), file_name, content_type };
    app.evidence.upload_evidence(&ctx, header, file_then_nothing(field, multipart)).await.map_err(Problem::from)
}

/// The file part's bytes; after them, an error if any other part follows (it would be lost).
fn file_then_nothing(
    field: multer::Field<'static>,
    multipart: multer::Multipart<'static>,
) -> impl Stream<Item = Result<Bytes, String>> + Send {
    futures::stream::unfold(Some((field, multipart)), |state| async move {
        let (mut field, mut multipart) = state?;
        match field.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some((field, multipart)))),
            Err(e) => Some((Err(e.to_string()), None)),
            Ok(None) => {
                drop(field);
                match multipart.next_field().await {
                    Ok(None) => None,
                    Ok(Some(next)) => Some((
                        Err(format!(
                            "the part {:?} follows the file; send the metadata fields first and the file last",
                            next.name().unwrap_or_default()
                        )),
                        None,
                    )),
                    Err(e) => Some((Err(e.to_string()), None)),
                }
            }
        }
    })
}

/// Puts a form field into the JSON form of `EvidenceInput`: numbers as numbers, the requirement
/// list from repeated fields or one comma-separated field.
fn add_field(fields: &mut Map<String, Value>, name: &str, text: String) -> Result<(), Problem> {
    match name {
        "compliance_requirements" => {
            let list = fields.entry(name).or_insert_with(|| Value::Array(vec![]));
            if let Value::Array(items) = list {
                items.extend(
                    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())),
                );
            }
        }
        "retention_period" => {
            let value = text.trim().parse::<i64>().map(Value::from).unwrap_or(Value::String(text));
            fields.insert(name.to_owned(), value);
        }
        "incident" | "title" | "description" | "notes" | "evidence_type" | "source" | "collected_at"
        | "valid_until" => {
            if fields.insert(name.to_owned(), Value::String(text)).is_some() {
                return Err(Problem::invalid_field(name, "given more than once"));
            }
        }
        other => {
            return Err(Problem::invalid_field(
                other,
                "unknown field; expected the evidence fields (title, evidence_type, …) and one `file` part",
            ));
        }
    }
    Ok(())
}

fn malformed(e: multer::Error) -> Problem {
    Problem::invalid("Malformed multipart body", e.to_string())
}

fn unauthenticated() -> Problem {
    Problem::new(
        custos_core::ErrorKind::Unauthenticated,
        "Authentication credentials were not provided",
        "Send 'Authorization: Token <token>' or 'Authorization: Bearer <jwt>'",
    )
}

/// `GET /api/compliance/evidence/{id}/download/`: the file, with its digests in the headers so a
/// client can check what it received (`Repr-Digest`, RFC 9530).
async fn download(
    State(app): State<App>,
    ctx: Option<Extension<RequestCtx>>,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    let Some(Extension(ctx)) = ctx else {
        return problem_response(&unauthenticated());
    };
    let id = params.get("id").cloned().unwrap_or_default();
    let download = match app.evidence.download_evidence(&ctx, pb::DownloadEvidenceRequest { id }).await {
        Ok(d) => d,
        Err(e) => return problem_response(&Problem::from(e)),
    };
    let evidence = &download.evidence;
    let body = Body::from_stream(download.body.map(|chunk| chunk.map_err(std::io::Error::other)));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let content_type = evidence.content_type.as_deref().unwrap_or("application/octet-stream");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
    let name = evidence.file_name.as_deref().unwrap_or("evidence.bin");
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' }).collect();
    let disposition =
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", utf8_percent_encode(name, NON_ALPHANUMERIC));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(sha256) = evidence.file_hash.as_deref().and_then(custos_core::hex::decode) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(sha256);
        if let Ok(v) = HeaderValue::from_str(&format!("sha-256=:{b64}:")) {
            headers.insert("repr-digest", v);
        }
    }
    if let Some(Ok(v)) = evidence.file_hash.as_deref().map(|h| HeaderValue::from_str(&format!("\"{h}\""))) {
        headers.insert(header::ETAG, v);
    }
    if let Some(Ok(v)) = evidence.file_blake3.as_deref().map(HeaderValue::from_str) {
        headers.insert("x-content-blake3", v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The OpenAPI description of the download endpoint (its body is the file, not JSON).
pub fn download_openapi() -> Value {
    json!({ "get": {
        "operationId": "downloadEvidence",
        "summary": "Download an evidence file (records an ACCESSED custody record)",
        "tags": ["evidence"],
        "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }],
        "responses": {
            "200": {
                "description": "The file. `Repr-Digest` carries its SHA-256, `X-Content-BLAKE3` its BLAKE3, `ETag` the SHA-256 hex.",
                "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } }
            },
            "401": { "description": "Missing or invalid credentials" },
            "404": { "description": "No such evidence in the caller's organisation, or it has no file" },
            "409": { "description": "The evidence was disposed of, or its stored object is missing" }
        }
    } })
}
