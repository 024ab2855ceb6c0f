//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates prost/tonic code.
//!
//! Every message also derives serde with proto field names and `#[serde(default)]`: the JSON form
//! of a message *is* the REST shape, so the REST facade needs no hand-written DTOs.
use std::path::PathBuf;

use prost::Message;

include!("json_text_fields.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a build script compiled for
    // another checkout sharing this target directory must still find this checkout's protos.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let dir = root.join("custos/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed=json_text_fields.rs");

    let fds = protox::Compiler::new([&root])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?
        .file_descriptor_set();

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("custos_descriptor.bin"), fds.encode_to_vec())?;

    let mut config = prost_build::Config::new();
    config.enable_type_names();
    // A serde-capable FieldMask of our own (prost-types' has no serde): REST builds masks as JSON.
    config.extern_path(".google.protobuf.FieldMask", "crate::FieldMask");
    let mut builder = tonic_prost_build::configure()
        .message_attribute(".custos", "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]")
        .enum_attribute(".custos.v1.UploadEvidenceRequest.part", "#[derive(serde::Serialize, serde::Deserialize)]");
    // JSON documents travel as JSON text over gRPC and as embedded JSON over REST.
    for field in JSON_TEXT_FIELDS {
        builder = builder.field_attribute(format!(".custos.v1.{field}"), "#[serde(with = \"crate::json_text\")]");
    }
    // Fields a response carries only when asked for: absent, not null, otherwise.
    for field in OMITTED_WHEN_ABSENT {
        builder = builder
            .field_attribute(format!(".custos.v1.{field}"), "#[serde(skip_serializing_if = \"Option::is_none\")]");
    }
    builder.compile_fds_with_config(fds, config)?;
    Ok(())
}
