//! Generated code for `proto/custos/v1`. Nothing here is written by hand but re-exports and the
//! one serde adapter the generated types name ([`json_text`]).

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("custos.v1");
}

include!("../json_text_fields.rs");

/// The encoded `FileDescriptorSet` of every Custos proto file (with source comments): served by gRPC
/// reflection and read by the REST facade to generate the OpenAPI document.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/custos_descriptor.bin"));

/// `google.protobuf.FieldMask`, as the generated update requests name it: the paths of the fields
/// to change. Its JSON form is proto3's (one string, paths joined by commas); a list of strings is
/// read too (the REST facade builds a PATCH's mask as one).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct FieldMask {
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

impl FieldMask {
    pub fn new<S: Into<String>>(paths: impl IntoIterator<Item = S>) -> Self {
        FieldMask { paths: paths.into_iter().map(Into::into).collect() }
    }
}

impl prost::Name for FieldMask {
    const NAME: &'static str = "FieldMask";
    const PACKAGE: &'static str = "google.protobuf";
}

impl serde::Serialize for FieldMask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.paths.join(","))
    }
}

impl<'de> serde::Deserialize<'de> for FieldMask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Form {
            Joined(String),
            Paths(Vec<String>),
        }
        Ok(match Form::deserialize(d)? {
            Form::Joined(s) => FieldMask::new(s.split(',').map(str::trim).filter(|p| !p.is_empty())),
            Form::Paths(paths) => FieldMask { paths },
        })
    }
}

/// A `string` proto field holding a JSON document: JSON text over gRPC, the embedded document in
/// the REST/JSON form.
pub mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        if text.is_empty() {
            return s.serialize_none();
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => value.serialize(s),
            Err(_) => s.serialize_str(text),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(if value.is_null() { String::new() } else { value.to_string() })
    }
}
