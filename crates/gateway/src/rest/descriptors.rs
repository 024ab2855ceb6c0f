//! The proto descriptors, decoded and indexed once: what the REST facade knows of each message
//! (its fields, their types and the comments written in `proto/`), for the OpenAPI document,
//! for the keys each endpoint accepts, and for typing the fields of an upload form.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use prost::Message;
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

use super::endpoint::{BodyShape, Endpoint, Handler};

pub(crate) struct MessageInfo<'a> {
    pub descriptor: &'a DescriptorProto,
    pub comment: String,
    pub field_comments: HashMap<String, String>,
}

pub(crate) fn short_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

fn index(fds: &FileDescriptorSet) -> HashMap<String, MessageInfo<'_>> {
    let mut out = HashMap::new();
    for file in &fds.file {
        let package = file.package();
        let comments: HashMap<Vec<i32>, String> = file
            .source_code_info
            .iter()
            .flat_map(|s| s.location.iter())
            .filter_map(|l| {
                l.leading_comments.as_ref().map(|c| (l.path.clone(), c.trim().replace('\n', " ").replace("  ", " ")))
            })
            .collect();
        for (i, msg) in file.message_type.iter().enumerate() {
            let i = i as i32;
            let field_comments = msg
                .field
                .iter()
                .enumerate()
                .filter_map(|(j, f)| comments.get(&vec![4, i, 2, j as i32]).map(|c| (f.name().to_owned(), c.clone())))
                .collect();
            out.insert(
                format!("{package}.{}", msg.name()),
                MessageInfo {
                    descriptor: msg,
                    comment: comments.get(&vec![4, i]).cloned().unwrap_or_default(),
                    field_comments,
                },
            );
        }
    }
    out
}

/// The names a request to `ep` may carry, beside its path parameters: its request message's
/// fields (for a body mapped onto one field, that field's message's), and in a body also the
/// response's, which a client that read a resource may send back (they are ignored, as output
/// only). `None` if the request message is not described (then nothing is refused).
pub fn accepted_names(ep: &Endpoint) -> Option<BTreeSet<String>> {
    let messages = &*MESSAGES;
    let fields = |full: &str| messages.get(full).map(|m| m.descriptor.field.iter().map(|f| f.name().to_owned()));
    let request = messages.get(ep.request_message())?;
    let mut names: BTreeSet<String> = match ep.body {
        BodyShape::Field(name) => {
            let field = request.descriptor.field.iter().find(|f| f.name() == name)?;
            fields(field.type_name().trim_start_matches('.'))?.collect()
        }
        _ => request.descriptor.field.iter().map(|f| f.name().to_owned()).collect(),
    };
    if ep.body != BodyShape::Query
        && let Handler::Json(op) = &ep.handler
    {
        names.extend(fields(&op.response).into_iter().flatten());
    }
    Some(names)
}

/// The proto descriptors, decoded once, and their messages by full name.
static DESCRIPTORS: LazyLock<FileDescriptorSet> =
    LazyLock::new(|| FileDescriptorSet::decode(custos_proto::FILE_DESCRIPTOR_SET).unwrap_or_default());
pub(crate) static MESSAGES: LazyLock<HashMap<String, MessageInfo<'static>>> = LazyLock::new(|| index(&DESCRIPTORS));

/// A field of a message, by the message's full name.
pub fn field(message: &str, name: &str) -> Option<&'static FieldDescriptorProto> {
    MESSAGES.get(message)?.descriptor.field.iter().find(|f| f.name() == name)
}

/// The field names of a message, in declaration order.
pub fn field_names(message: &str) -> Vec<&'static str> {
    MESSAGES.get(message).map(|m| m.descriptor.field.iter().map(|f| f.name()).collect()).unwrap_or_default()
}

/// The rpc (`package.Service/Method`) whose request message is `message`, if exactly one is.
fn rpc_of(message: &str) -> Vec<String> {
    let wanted = format!(".{message}");
    let mut found = Vec::new();
    for file in &DESCRIPTORS.file {
        for service in &file.service {
            for method in service.method.iter().filter(|m| m.input_type() == wanted) {
                found.push(method.name().to_owned());
            }
        }
    }
    found
}

/// `UpdateRequirementStatus` → `update_requirement_status`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Endpoints whose service method is not named after the rpc that takes the same request
/// message (so the rpc, the method and the REST operation id could not be found from one
/// another by name), as messages naming each.
pub fn name_mismatches(endpoints: &[Endpoint]) -> Vec<String> {
    endpoints
        .iter()
        .filter_map(|ep| {
            let rpcs = rpc_of(ep.request_message());
            let method = ep.service_method();
            (!rpcs.iter().any(|rpc| snake(rpc) == method)).then(|| {
                format!(
                    "{} {} calls `{method}` with {}, which the rpcs {rpcs:?} take: name the method after its rpc",
                    ep.method,
                    ep.path,
                    ep.request_message()
                )
            })
        })
        .collect()
}
