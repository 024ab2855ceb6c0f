//! Request decoding: the request message of a call, built from path parameters plus the query
//! string (GET, DELETE) or the JSON body, with bad input reported as 400 naming the field; and
//! the limits on reading a body (size, time, media type).

use std::collections::HashMap;

use axum::body::Bytes;
use custos_core::Problem;
use http::{HeaderMap, Method, header};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::endpoint::{BodyShape, Endpoint};

/// The raw input of one call, before it becomes a typed request message.
pub enum Input {
    Query(String, Vec<String>),
    Json(Value, Vec<String>),
}

/// Decodes the request message. Either form carries, beside the fields, the names of those the
/// path gave (a segment that is no id of its kind names nothing: a 404, not a 400).
pub(crate) fn decode<Req: DeserializeOwned>(input: Input) -> Result<Req, Problem> {
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

/// Largest JSON body accepted (files travel as multipart uploads, never as JSON).
pub(crate) const JSON_BODY_MAX: usize = 2 * 1024 * 1024;

/// How long a JSON request body may take to arrive, the whole of it
/// (`CUSTOS_HTTP_BODY_TIMEOUT_SECS`); set as a request extension by the server. Every body's
/// chunks are bounded by the same timeout in the listener (`listener::StallGuarded`).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

impl Default for BodyTimeout {
    fn default() -> Self {
        BodyTimeout(crate::listener::ConnectionLimits::default().body_read_timeout)
    }
}

/// Whether a `Content-Type` is JSON (`application/json`, `application/problem+json`, with or
/// without parameters).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let essence = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

pub(crate) fn build_input(
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
