//! Files over HTTP, for any domain that declares an upload or a download endpoint:
//! `multipart/form-data` uploads streamed into the endpoint's service method, and files streamed
//! back with their digests. Neither ever holds a whole file in memory.
//!
//! An upload is the metadata message's fields (typed by its proto descriptor, as in a JSON body)
//! followed by one `file` part. The file must come last: the metadata is validated before a
//! byte is stored, and a part after the file would otherwise be silently dropped, so it is
//! refused instead.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use custos_core::{ErrorKind, Problem, RequestCtx};
use futures::{Stream, StreamExt};
use http::{HeaderValue, header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{Map, Value};

use super::decode::{JSON_BODY_MAX, build_input};
use super::descriptors;
use super::endpoint::{Endpoint, FileDownload, Handler, IncomingFile, Upload};
use crate::edge::problem_response;

/// Metadata fields are short; anything longer is not metadata.
const FIELD_MAX: usize = 64 * 1024;
/// Room for the metadata parts around the file when checking `Content-Length` up front.
const ENVELOPE_SLACK: u64 = 1024 * 1024;

pub fn is_multipart(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// An upload endpoint given `multipart/form-data`.
pub async fn upload(
    ep: &Endpoint,
    upload: &Upload,
    ctx: Option<RequestCtx>,
    params: &HashMap<String, String>,
    request: Request,
) -> Response {
    match upload_inner(ep, upload, ctx, params, request).await {
        Ok(created) => (ep.success, axum::Json(created)).into_response(),
        Err(problem) => problem_response(&problem),
    }
}

async fn upload_inner(
    ep: &Endpoint,
    upload: &Upload,
    ctx: Option<RequestCtx>,
    params: &HashMap<String, String>,
    request: Request,
) -> Result<Value, Problem> {
    let ctx = ctx.ok_or_else(crate::edge::no_credentials)?;
    // An upload writes: a caller who may not is refused before a byte is read.
    ctx.require(custos_core::ctx::Access::Write)?;
    let limit = upload.max_bytes;
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(ENVELOPE_SLACK)) {
        return Err(Problem::new(
            ErrorKind::PayloadTooLarge,
            "File too large",
            format!("Uploads are limited to {limit} bytes (CUSTOS_MAX_UPLOAD_BYTES)"),
        ));
    }
    let uri = request.uri().clone();
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| Problem::invalid("Malformed multipart body", format!("Content-Type: {e}")))?;
    // A pause between chunks longer than the body timeout ends the stream (the listener's guard).
    let mut multipart = multer::Multipart::new(request.into_body().into_data_stream(), boundary);

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
            if metadata_bytes > JSON_BODY_MAX {
                return Err(Problem::new(
                    ErrorKind::PayloadTooLarge,
                    "Request metadata too large",
                    format!("the parts before the file are limited to {JSON_BODY_MAX} bytes in all"),
                ));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text).map_err(|_| Problem::invalid_field(&name, "is not UTF-8 text"))?;
        add_field(&upload.metadata, &mut fields, &name, text)?;
    };
    let Some((file_name, content_type, field)) = file else {
        // No file part: the same as the endpoint's JSON request, the fields its body.
        let Handler::Json(op) = &ep.handler else {
            return Err(Problem::internal("an upload endpoint without a JSON operation"));
        };
        let body = Bytes::from(serde_json::to_vec(&Value::Object(fields)).map_err(Problem::internal)?);
        let input = build_input(ep, params, &uri, &body)?;
        return (op.call)(Some(ctx), input).await;
    };
    let file = IncomingFile { file_name, content_type, body: file_then_nothing(field, multipart).boxed() };
    (upload.call)(ctx, Value::Object(fields), file).await
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

/// Puts a form field into the JSON form of the metadata message, typed by its descriptor: a
/// repeated field from repeated parts or one comma-separated part, numbers and booleans as such.
fn add_field(message: &str, fields: &mut Map<String, Value>, name: &str, text: String) -> Result<(), Problem> {
    let Some(field) = descriptors::field(message, name) else {
        let known = descriptors::field_names(message).join(", ");
        return Err(Problem::invalid_field(
            name,
            format!("unknown field; an upload takes the fields {known} and then one `file` part"),
        ));
    };
    if field.label() == Label::Repeated {
        let list = fields.entry(name).or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(items) = list {
            items.extend(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())));
        }
        return Ok(());
    }
    let value = match field.r#type() {
        Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 | Type::Sint32 | Type::Sint64 => {
            text.trim().parse::<i64>().map(Value::from).unwrap_or(Value::String(text))
        }
        Type::Bool => match text.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text),
        },
        Type::Double | Type::Float => text.trim().parse::<f64>().map(Value::from).unwrap_or(Value::String(text)),
        _ => Value::String(text),
    };
    if fields.insert(name.to_owned(), value).is_some() {
        return Err(Problem::invalid_field(name, "given more than once"));
    }
    Ok(())
}

fn malformed(e: multer::Error) -> Problem {
    Problem::invalid("Malformed multipart body", e.to_string())
}

/// A file as an HTTP answer, with its digests in the headers so a client can check what it
/// received (`Repr-Digest`, RFC 9530; `ETag`; `X-Content-BLAKE3`).
pub fn file_response(file: FileDownload) -> Response {
    let mut response = Response::new(Body::from_stream(file.body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    let name = &file.file_name;
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' }).collect();
    let disposition =
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", utf8_percent_encode(name, NON_ALPHANUMERIC));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(sha256) = file.sha256.as_deref().and_then(custos_core::hex::decode) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(sha256);
        if let Ok(v) = HeaderValue::from_str(&format!("sha-256=:{b64}:")) {
            headers.insert("repr-digest", v);
        }
    }
    if let Some(Ok(v)) = file.sha256.as_deref().map(|h| HeaderValue::from_str(&format!("\"{h}\""))) {
        headers.insert(header::ETAG, v);
    }
    if let Some(Ok(v)) = file.blake3.as_deref().map(HeaderValue::from_str) {
        headers.insert("x-content-blake3", v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A stream whose errors are I/O errors (what a response body takes).
pub fn io_stream<S, E>(stream: S) -> futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    stream.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string()))).boxed()
}
