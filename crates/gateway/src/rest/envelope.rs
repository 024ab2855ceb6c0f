//! Response envelopes: a list response becomes the seed's page (`count`, `next`, `previous`,
//! `results`, with absolute links), a cursor list Django REST framework's cursor page.

use http::{HeaderMap, header};
use serde_json::{Map, Value};

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
pub(crate) fn cursor_envelope(value: Value, uri: &http::Uri, headers: &HeaderMap) -> Value {
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

/// Turns a list response (`count`, `count_is_estimate`, `next_page`, `previous_page`,
/// `next_cursor`, `results`) into the seed's page: `{"count", "next", "previous", "results"}` with
/// absolute URLs, as Django REST framework writes. `"count_is_estimate": true` follows `count`
/// when the count is PostgreSQL's estimate (beyond 10,000 matches); it is absent otherwise, so an
/// exact page keeps the seed's shape. A request that walks by `cursor` gets `next` as a link
/// carrying the response's `next_cursor` (and no `previous`: cursors go forward).
pub(crate) fn page_envelope(value: Value, uri: &http::Uri, headers: &HeaderMap) -> Value {
    let Value::Object(mut m) = value else { return value };
    let by_cursor = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).any(|(k, _)| k == "cursor");
    let page_link = |page: Option<u64>| match page {
        None => Value::Null,
        Some(p) => link(uri, headers, "page", (p > 1).then(|| p.to_string())),
    };
    let (next, previous) = if by_cursor {
        let next = match m.remove("next_cursor") {
            Some(Value::String(c)) => link(uri, headers, "cursor", Some(c)),
            _ => Value::Null,
        };
        (next, Value::Null)
    } else {
        (
            page_link(m.get("next_page").and_then(Value::as_u64)),
            page_link(m.get("previous_page").and_then(Value::as_u64)),
        )
    };
    let mut out = Map::new();
    out.insert("count".into(), m.remove("count").unwrap_or(Value::from(0)));
    if m.get("count_is_estimate") == Some(&Value::Bool(true)) {
        out.insert("count_is_estimate".into(), Value::Bool(true));
    }
    out.insert("next".into(), next);
    out.insert("previous".into(), previous);
    out.insert("results".into(), m.remove("results").unwrap_or(Value::Array(vec![])));
    Value::Object(out)
}
