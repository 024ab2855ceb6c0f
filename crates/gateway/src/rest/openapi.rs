//! The OpenAPI 3 document, generated from the endpoints the domains declare and the proto
//! descriptors (field types and the comments written in `proto/`), so it cannot drift from what
//! the handlers accept. It must describe what the server does, so that generated clients and
//! schema-based fuzzers work (a Schemathesis run in the test suite holds it to that):
//!
//! - value sets are `enum`s, from the domains' own `Choice` types ([`ValueSet`]);
//! - every field of a message the server answers is `required` (all are always written, `null`
//!   where absent), but those in `custos_proto::OMITTED_WHEN_ABSENT`; request fields are required as the domains declare ([`ApiDescription`]);
//! - `…_at` fields are `date-time`, `…_date` fields `date`, ids `uuid`, the audit `seq` an integer;
//! - JSON documents carried in text fields (`before`, `after`, `actor_detail`, custody `details`)
//!   are objects, nullable;
//! - every status an endpoint can answer is listed: those any endpoint of its kind can (400, 401,
//!   403, 404, 429, 503; for bodies 408, 413, 415; for writes 409 and 422) and those it declares.

use std::collections::{BTreeSet, HashMap, HashSet};

use custos_core::filter::Choice;
use prost_types::FieldDescriptorProto;
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{Map, Value, json};

use super::descriptors::{MESSAGES, MessageInfo, short_name};
use super::endpoint::{BodyShape, Endpoint, Handler};

/// A closed set of values some string fields take (`Message.field`, short message names), from
/// the domain's `Choice` type, so the document lists exactly what the server accepts.
#[derive(Debug, Clone)]
pub struct ValueSet {
    pub fields: &'static [&'static str],
    pub values: Vec<&'static str>,
}

impl ValueSet {
    pub fn of<C: Choice>(fields: &'static [&'static str]) -> Self {
        ValueSet { fields, values: C::ALL.iter().map(|c| c.as_str()).collect() }
    }
}

/// What the descriptors cannot say about an API and its domains declare: value sets, and the
/// request fields that must be given (`Message.field`).
#[derive(Debug, Default, Clone)]
pub struct ApiDescription {
    pub value_sets: Vec<ValueSet>,
    pub required: Vec<&'static str>,
}

impl ApiDescription {
    /// Names in the description that are no field of any message (a typo, or a field renamed).
    pub fn unknown_fields(&self) -> Vec<&'static str> {
        let all = self.value_sets.iter().flat_map(|s| s.fields.iter().copied()).chain(self.required.iter().copied());
        all.filter(|name| {
            let Some((message, field)) = name.split_once('.') else { return true };
            !MESSAGES.iter().any(|(full, info)| {
                short_name(full) == message && info.descriptor.field.iter().any(|f| f.name() == field)
            })
        })
        .collect()
    }
}

struct Hints {
    values: HashMap<String, Vec<&'static str>>,
    required: HashSet<String>,
    /// Messages the server writes (responses and what they contain): all their fields required.
    output: HashSet<String>,
}

fn field_schema(message: &str, field: &FieldDescriptorProto, hints: &Hints) -> Value {
    let name = field.name();
    let key = format!("{}.{name}", short_name(message));
    let scalar = match field.r#type() {
        Type::String if custos_proto::JSON_TEXT_FIELDS.contains(&key.as_str()) => {
            return json!({ "type": "object", "nullable": true, "additionalProperties": true });
        }
        Type::String => {
            let mut s = json!({ "type": "string" });
            if let Some(values) = hints.values.get(&key) {
                s["enum"] = json!(values);
            } else if name.ends_with("_at") {
                s["format"] = json!("date-time");
            } else if name.ends_with("_date") {
                s["format"] = json!("date");
            } else if name == "id" {
                s["format"] = json!("uuid");
            }
            s
        }
        Type::Bool => json!({ "type": "boolean" }),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => json!({ "type": "integer", "format": "int64" }),
        Type::Uint32 | Type::Int32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => {
            json!({ "type": "integer", "format": "int32" })
        }
        Type::Uint64 | Type::Fixed64 => json!({ "type": "integer", "format": "int64", "minimum": 0 }),
        Type::Double => json!({ "type": "number", "format": "double" }),
        Type::Float => json!({ "type": "number", "format": "float" }),
        Type::Bytes => json!({ "type": "string", "format": "byte" }),
        // An update mask's JSON form (proto3): the field paths, comma-separated.
        Type::Message if field.type_name() == ".google.protobuf.FieldMask" => {
            json!({ "type": "string", "description": "Field paths to change, comma-separated" })
        }
        Type::Message | Type::Enum | Type::Group => {
            json!({ "$ref": format!("#/components/schemas/{}", short_name(field.type_name())) })
        }
    };
    if field.label() == Label::Repeated {
        json!({ "type": "array", "items": scalar })
    } else if field.proto3_optional() || field.r#type() == Type::Message {
        // A message field is absent (null) when not set, as an optional scalar is.
        match scalar {
            Value::Object(mut m) if !m.contains_key("$ref") => {
                m.insert("nullable".into(), Value::Bool(true));
                Value::Object(m)
            }
            reference => json!({ "allOf": [reference], "nullable": true }),
        }
    } else {
        scalar
    }
}

fn message_schema(full: &str, info: &MessageInfo<'_>, hints: &Hints) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    let output = hints.output.contains(full);
    for f in &info.descriptor.field {
        let mut s = field_schema(full, f, hints);
        if let (Some(c), Value::Object(m)) = (info.field_comments.get(f.name()), &mut s)
            && !m.contains_key("$ref")
            && !m.contains_key("allOf")
        {
            m.insert("description".into(), Value::String(c.clone()));
        }
        props.insert(f.name().to_owned(), s);
        let key = format!("{}.{}", short_name(full), f.name());
        let always_written = !custos_proto::OMITTED_WHEN_ABSENT.contains(&key.as_str());
        if (output && always_written) || hints.required.contains(&key) {
            required.push(f.name().to_owned());
        }
    }
    let mut schema = json!({ "type": "object", "description": info.comment, "properties": props });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn reference(full_name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", short_name(full_name)) })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The messages reachable from `roots` through message fields (full names).
fn reachable(roots: impl IntoIterator<Item = String>) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(full) = todo.pop() {
        let Some(info) = MESSAGES.get(&full) else { continue };
        if !seen.insert(full) {
            continue;
        }
        for f in info.descriptor.field.iter().filter(|f| f.r#type() == Type::Message) {
            todo.push(f.type_name().trim_start_matches('.').to_owned());
        }
    }
    seen
}

fn path_parameter(name: &str) -> Value {
    let schema = if name == "seq" {
        json!({ "type": "integer", "format": "int64", "minimum": 0 })
    } else {
        json!({ "type": "string", "format": "uuid" })
    };
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

pub fn document(endpoints: &[Endpoint], description: &ApiDescription) -> Value {
    let messages = &*MESSAGES;
    let output = reachable(endpoints.iter().filter_map(|ep| match &ep.handler {
        Handler::Json(op) => Some(op.response.clone()),
        Handler::Download(_) => None,
    }));
    let hints = Hints {
        values: description
            .value_sets
            .iter()
            .flat_map(|set| set.fields.iter().map(move |f| (f.to_string(), set.values.clone())))
            .collect(),
        required: description.required.iter().map(|f| f.to_string()).collect(),
        output,
    };
    let mut schemas = Map::new();
    for (full, info) in messages {
        if full.starts_with("custos.") {
            schemas.insert(short_name(full).to_owned(), message_schema(full, info, &hints));
        }
    }
    schemas.insert(
        "Error".into(),
        json!({ "type": "object", "required": ["error", "details"], "properties": {
            "error": { "type": "string", "description": "What went wrong, in a few words." },
            "details": { "description": "Why, and how to fix it: a string, or an object naming fields." } } }),
    );

    let mut paths: Map<String, Value> = Map::new();
    for ep in endpoints {
        let req = messages.get(ep.request_message());
        let path_params = ep.path_params();
        let mut parameters: Vec<Value> = path_params.iter().map(|p| path_parameter(p)).collect();
        let mut op = Map::new();
        if ep.body == BodyShape::Query
            && let Some(req) = req
        {
            for f in req.descriptor.field.iter().filter(|f| !path_params.contains(&f.name())) {
                let key = format!("{}.{}", short_name(ep.request_message()), f.name());
                let mut schema = field_schema(ep.request_message(), f, &hints);
                // Time filters take a date or a timestamp: no single format.
                if f.name().ends_with("_after") || f.name().ends_with("_before") {
                    schema.as_object_mut().map(|m| m.remove("format"));
                }
                let mut p = json!({ "name": f.name(), "in": "query", "required": hints.required.contains(&key), "schema": schema });
                if let Some(c) = req.field_comments.get(f.name()) {
                    p["description"] = Value::String(c.clone());
                }
                parameters.push(p);
            }
        }
        let body_schema = match (ep.body, req) {
            (BodyShape::Whole, _) => Some(reference(ep.request_message())),
            (BodyShape::Field(name), Some(req)) => req
                .descriptor
                .field
                .iter()
                .find(|f| f.name() == name)
                .map(|f| json!({ "$ref": format!("#/components/schemas/{}", short_name(f.type_name())) })),
            _ => None,
        };
        let writes = ep.method != http::Method::GET;
        if let Some(schema) = body_schema {
            let mut content = json!({ "application/json": { "schema": schema } });
            if let Some(upload) = &ep.upload
                && let Some(info) = messages.get(&upload.metadata)
                && let Some(Value::Object(props)) = message_schema(&upload.metadata, info, &hints).get("properties")
            {
                let mut props = props.clone();
                props.insert(
                    "file".into(),
                    json!({ "type": "string", "format": "binary", "description": "The file; the last part." }),
                );
                content["multipart/form-data"] = json!({ "schema": { "type": "object", "properties": props } });
            }
            // A body may be left out (`{}` is assumed) only where every field is optional.
            op.insert("requestBody".into(), json!({ "required": true, "content": content }));
        }
        let success = match &ep.handler {
            _ if ep.success == http::StatusCode::NO_CONTENT => json!({ "description": "Done; no content" }),
            Handler::Download(download) => {
                let content: serde_json::Map<String, Value> = download
                    .media_types
                    .iter()
                    .map(|t| {
                        // A structured document (JSON, YAML) is an object; anything else, bytes.
                        let schema = if *t == "application/octet-stream" {
                            json!({ "type": "string", "format": "binary" })
                        } else {
                            json!({ "type": "object" })
                        };
                        ((*t).to_owned(), json!({ "schema": schema }))
                    })
                    .collect();
                json!({
                    "description": "The file. `Repr-Digest` carries its SHA-256, `X-Content-BLAKE3` its BLAKE3, `ETag` the SHA-256 hex.",
                    "content": content
                })
            }
            Handler::Json(operation) if ep.list || ep.cursor => {
                let response = messages.get(&operation.response);
                let item = response
                    .and_then(|m| m.descriptor.field.iter().find(|f| f.name() == "results"))
                    .map(|f| json!({ "$ref": format!("#/components/schemas/{}", short_name(f.type_name())) }))
                    .unwrap_or(json!({}));
                let mut properties = json!({
                    "next": { "type": "string", "nullable": true, "description": "URL of the next page" },
                    "previous": { "type": "string", "nullable": true, "description": "URL of the previous page" },
                    "results": { "type": "array", "items": item } });
                let mut required = vec!["next", "previous", "results"];
                if ep.list {
                    properties["count"] =
                        json!({ "type": "integer", "description": "Total number of matching results" });
                    required.push("count");
                    if response.is_some_and(|m| m.descriptor.field.iter().any(|f| f.name() == "count_is_estimate")) {
                        // Sent (true) only when it is so: exact counts keep the seed's four keys.
                        properties["count_is_estimate"] = json!({ "type": "boolean",
                            "description": "Present and true when `count` is PostgreSQL's estimate (beyond 10,000 matches)" });
                    }
                }
                let description =
                    if ep.list { "A page of results" } else { "A page of results, with a cursor link to the next" };
                json!({ "description": description, "content": { "application/json": { "schema": {
                    "type": "object", "required": required, "properties": properties } } } })
            }
            Handler::Json(operation) => {
                json!({ "description": "Success", "content": { "application/json": { "schema": reference(&operation.response) } } })
            }
        };
        let mut responses = Map::new();
        responses.insert(ep.success.as_u16().to_string(), success);
        let mut statuses: BTreeSet<(u16, &str)> = BTreeSet::from([
            (400, "Invalid input; `error` names the field or parameter"),
            (404, "No such resource in the caller's organisation, or a page past the last"),
            (429, "Rate limit exceeded; see Retry-After"),
            (503, "The database is unreachable; retry"),
        ]);
        if !ep.public {
            statuses.insert((401, "Missing or invalid credentials"));
            statuses.insert((403, "The caller's role may not do this"));
        }
        if ep.body != BodyShape::Query {
            statuses.insert((408, "The body did not arrive in time"));
            statuses.insert((413, "The body (or the file) is too large"));
            statuses.insert((415, "The body is not JSON (or, for an upload, multipart/form-data)"));
        }
        if writes {
            statuses.insert((409, "The change collides with existing data, or the resource's state forbids it"));
            statuses.insert((422, "Something the request refers to changed meanwhile"));
        }
        for (status, why) in &statuses {
            responses.insert(status.to_string(), error_response(why));
        }
        // What the endpoint declares says more than the generic description.
        for (status, why) in &ep.failures {
            responses.insert(status.as_u16().to_string(), error_response(why));
        }
        op.insert("operationId".into(), Value::String(ep.operation_id.clone()));
        op.insert("summary".into(), Value::String(ep.summary.into()));
        op.insert("tags".into(), json!([ep.tag]));
        op.insert("parameters".into(), Value::Array(parameters));
        op.insert("responses".into(), Value::Object(responses));
        if ep.public {
            op.insert("security".into(), json!([]));
        }
        let entry = paths.entry(ep.path.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        entry[ep.method.as_str().to_ascii_lowercase()] = Value::Object(op);
    }

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Custos API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Compliance & governance: frameworks, requirements, evidence, audit. Every operation is also served over gRPC (package custos.v1) by the same implementation.",
            "license": { "name": "Apache-2.0" }
        },
        "servers": [{ "url": "/" }],
        "security": [{ "TokenAuth": [] }, { "BearerAuth": [] }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "TokenAuth": { "type": "apiKey", "in": "header", "name": "Authorization", "description": "`Token <api token>` (from `custos token create`)" },
                "BearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            }
        }
    })
}
