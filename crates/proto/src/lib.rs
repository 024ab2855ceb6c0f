//! Generated code for `proto/custos/v1`. Nothing here is written by hand but re-exports.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("custos.v1");
}

/// The encoded `FileDescriptorSet` of every Custos proto file (with source comments): served by gRPC
/// reflection and read by the REST facade to generate the OpenAPI document.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/custos_descriptor.bin"));
