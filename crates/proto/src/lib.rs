//! Generated code for `proto/custos/v1`. Nothing here is written by hand but re-exports and the
//! one serde adapter the generated types name ([`json_text`]).

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("custos.v1");
}

/// The encoded `FileDescriptorSet` of every Custos proto file (with source comments): served by gRPC
/// reflection and read by the REST facade to generate the OpenAPI document.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/custos_descriptor.bin"));

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
