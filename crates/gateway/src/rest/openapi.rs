//! The OpenAPI 3 document, generated from the route table and the proto descriptors (field types
//! and the comments written in `proto/`), so it cannot drift from what the handlers accept.

use std::collections::HashMap;

use prost_types::FieldDescriptorProto;
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{Map, Value, json};

use super::descriptors::{MESSAGES, MessageInfo, short_name};
use super::endpoint::{BodyShape, Endpoint, Handler};

fn field_schema(field: &FieldDescriptorProto) -> Value {
    let scalar = match field.r#type() {
        Type::String => json!({ "type": "string" }),
        Type::Bool => json!({ "type": "boolean" }),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => json!({ "type": "integer", "format": "int64" }),
        Type::Uint32 | Type::Int32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => {
            json!({ "type": "integer", "format": "int32" })
        }
        Type::Uint64 | Type::Fixed64 => json!({ "type": "integer", "format": "int64", "minimum": 0 }),
        Type::Double => json!({ "type": "number", "format": "double" }),
        Type::Float => json!({ "type": "number", "format": "float" }),
        Type::Bytes => json!({ "type": "string", "format": "byte" }),
        Type::Message | Type::Enum | Type::Group => {
            json!({ "$ref": format!("#/components/schemas/{}", short_name(field.type_name())) })
        }
    };
    if field.label() == Label::Repeated {
        json!({ "type": "array", "items": scalar })
    } else if field.proto3_optional() {
        let mut s = scalar;
        if let Value::Object(m) = &mut s {
            m.insert("nullable".into(), Value::Bool(true));
        }
        s
    } else {
        scalar
    }
}

fn message_schema(info: &MessageInfo<'_>) -> Value {
    let mut props = Map::new();
    for f in &info.descriptor.field {
        let mut s = field_schema(f);
        if let (Some(c), Value::Object(m)) = (info.field_comments.get(f.name()), &mut s)
            && !m.contains_key("$ref")
        {
            m.insert("description".into(), Value::String(c.clone()));
        }
        props.insert(f.name().to_owned(), s);
    }
    json!({ "type": "object", "description": info.comment, "properties": props })
}

/// The properties of the message a `$ref` schema points at.
fn schema_properties(messages: &HashMap<String, MessageInfo<'_>>, schema: &Value) -> Option<Value> {
    let name = schema.get("$ref")?.as_str()?.rsplit('/').next()?;
    let info = messages.iter().find(|(full, _)| short_name(full) == name)?.1;
    message_schema(info).get("properties").cloned()
}

fn reference(full_name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", short_name(full_name)) })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

pub fn document(endpoints: &[Endpoint]) -> Value {
    let messages = &*MESSAGES;
    let mut schemas = Map::new();
    for (full, info) in messages {
        if full.starts_with("custos.") {
            schemas.insert(short_name(full).to_owned(), message_schema(info));
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
        let mut parameters: Vec<Value> = path_params
            .iter()
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }))
            .collect();
        let mut op = Map::new();
        if ep.body == BodyShape::Query
            && let Some(req) = req
        {
            for f in req.descriptor.field.iter().filter(|f| !path_params.contains(&f.name())) {
                let mut p = json!({ "name": f.name(), "in": "query", "required": false, "schema": field_schema(f) });
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
        if let Some(schema) = body_schema {
            let mut content = json!({ "application/json": { "schema": schema } });
            if let Some(upload) = &ep.upload
                && let Some(Value::Object(props)) = schema_properties(messages, &reference(&upload.metadata))
            {
                let mut props = props;
                props.insert(
                    "file".into(),
                    json!({ "type": "string", "format": "binary", "description": "The file; the last part." }),
                );
                content["multipart/form-data"] = json!({ "schema": { "type": "object", "properties": props } });
            }
            op.insert("requestBody".into(), json!({ "required": true, "content": content }));
        }
        let success = match &ep.handler {
            _ if ep.success == http::StatusCode::NO_CONTENT => json!({ "description": "Done; no content" }),
            Handler::Download(_) => json!({
                "description": "The file. `Repr-Digest` carries its SHA-256, `X-Content-BLAKE3` its BLAKE3, `ETag` the SHA-256 hex.",
                "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } }
            }),
            Handler::Json(operation) if ep.list => {
                let item = messages
                    .get(&operation.response)
                    .and_then(|m| m.descriptor.field.iter().find(|f| f.name() == "results"))
                    .map(|f| json!({ "$ref": format!("#/components/schemas/{}", short_name(f.type_name())) }))
                    .unwrap_or(json!({}));
                json!({ "description": "A page of results", "content": { "application/json": { "schema": {
                    "type": "object", "properties": {
                        "count": { "type": "integer", "description": "Total number of matching results" },
                        "next": { "type": "string", "nullable": true, "description": "URL of the next page" },
                        "previous": { "type": "string", "nullable": true, "description": "URL of the previous page" },
                        "results": { "type": "array", "items": item } } } } } })
            }
            Handler::Json(operation) => {
                json!({ "description": "Success", "content": { "application/json": { "schema": reference(&operation.response) } } })
            }
        };
        let mut responses = Map::new();
        responses.insert(ep.success.as_u16().to_string(), success);
        responses.insert("400".into(), error_response("Invalid input; `error` names the field"));
        responses.insert("401".into(), error_response("Missing or invalid credentials"));
        responses.insert("403".into(), error_response("The caller's role may not do this"));
        responses.insert("404".into(), error_response("No such resource in the caller's organisation"));
        responses.insert("429".into(), error_response("Rate limit exceeded; see Retry-After"));
        if ep.upload.is_some() {
            responses.insert("413".into(), error_response("The file exceeds CUSTOS_MAX_UPLOAD_BYTES"));
        }
        for (status, why) in &ep.failures {
            responses.insert(status.as_u16().to_string(), error_response(why));
        }
        op.insert("operationId".into(), Value::String(ep.operation_id.clone()));
        op.insert("summary".into(), Value::String(ep.summary.into()));
        op.insert("tags".into(), json!([ep.tag]));
        op.insert("parameters".into(), Value::Array(parameters));
        op.insert("responses".into(), Value::Object(responses));
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
