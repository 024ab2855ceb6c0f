//! Evidence with its chain of custody (seed 000): endpoints (a multipart upload and a file
//! download among them), the gRPC service, and the daily sweep of stored objects nothing refers
//! to.

use custos_core::Problem;
use custos_proto::v1 as pb;
use custos_proto::v1::evidence_service_server::EvidenceServiceServer;
use http::StatusCode;

use custos_jobs::{Job, JobError, Kind, ScheduleDef, Scope};

use super::{Domain, GrpcService, Serving};
use crate::config::Config;
use crate::op;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::rest::streams::io_stream;
use crate::rest::{Download, Endpoint, FileDownload, Upload};
use crate::server::App;
use custos_evidence::model::{CustodyAction, EvidenceStatus, EvidenceType};

pub const DOMAIN: Domain = Domain { name: "evidence", serve, cli: None };

/// The daily sweep of the blob store.
const SWEEP_JOB: &str = "evidence.object_sweep";

const EV: &str = "/api/compliance/evidence/";
const EV_ID: &str = "/api/compliance/evidence/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.evidence;
    let upload = {
        let s = s.clone();
        Upload::new(s.max_upload_bytes(), move |ctx, evidence: pb::EvidenceInput, file| {
            let s = s.clone();
            async move {
                let header = pb::EvidenceUploadHeader {
                    evidence: Some(evidence),
                    file_name: file.file_name,
                    content_type: file.content_type,
                };
                s.upload_evidence(&ctx, header, file.body).await.map_err(Problem::from)
            }
        })
    };
    let download = {
        let s = s.clone();
        Download::new("download_evidence", move |ctx, req: pb::DownloadEvidenceRequest| {
            let s = s.clone();
            async move {
                let download = s.download_evidence(&ctx, req).await.map_err(Problem::from)?;
                let evidence = download.evidence;
                Ok(FileDownload {
                    content_type: evidence.content_type.unwrap_or_else(|| "application/octet-stream".into()),
                    size: download.size,
                    file_name: evidence.file_name.unwrap_or_else(|| "evidence.bin".into()),
                    sha256: evidence.file_hash,
                    blake3: evidence.file_blake3,
                    body: io_stream(download.body),
                })
            }
        })
    };
    let sweeper = s.clone();
    let immutable = "The item is sealed, released or disposed of, or a legal hold preserves it";
    Serving {
        endpoints: vec![
            Endpoint::get(EV, "List evidence", op!(s, list_evidence)).list(),
            Endpoint::post(
                EV,
                "Record evidence: JSON (metadata only) or multipart/form-data with a streamed `file` part",
                op!(s, create_evidence),
            )
            .body_field("evidence")
            .multipart_upload(upload)
            .created()
            .fails(StatusCode::CONFLICT, "An identical file was disposed of while the upload finished"),
            Endpoint::get(EV_ID, "Get an evidence item with its chain of custody", op!(s, get_evidence)),
            Endpoint::put(EV_ID, "Replace an evidence item's metadata", op!(s, update_evidence))
                .body_field("evidence")
                .fails(StatusCode::CONFLICT, immutable),
            Endpoint::patch(EV_ID, "Partially update an evidence item's metadata", op!(s, update_evidence))
                .body_field("evidence")
                .fails(StatusCode::CONFLICT, immutable),
            Endpoint::delete(
                EV_ID,
                "Delete an evidence item (refused while a legal hold covers it)",
                op!(s, delete_evidence),
            )
            .fails(StatusCode::CONFLICT, immutable),
            Endpoint::post(
                "/api/compliance/evidence/{id}/add_custody_record/",
                "Append a record to the chain of custody",
                op!(s, add_custody_record),
            )
            .fails(StatusCode::CONFLICT, "The action is not allowed in the item's current status"),
            Endpoint::post(
                "/api/compliance/evidence/{id}/verify_evidence/",
                "Re-read the stored file, recompute its digests and check the custody chain",
                op!(s, verify_evidence),
            )
            .fails(StatusCode::CONFLICT, "The item was disposed of"),
            Endpoint::download(
                "/api/compliance/evidence/{id}/download/",
                "Download an evidence file (records an ACCESSED custody record)",
                download,
            )
            .fails(StatusCode::CONFLICT, "The evidence was disposed of, or its stored object is missing"),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<EvidenceType>(&[
                    "Evidence.evidence_type",
                    "EvidenceInput.evidence_type",
                    "ListEvidenceRequest.evidence_type",
                ]),
                ValueSet::of::<EvidenceStatus>(&["Evidence.status", "ListEvidenceRequest.status"]),
                ValueSet::of::<CustodyAction>(&["CustodyRecord.action", "AddCustodyRecordRequest.action"]),
            ],
            required: vec!["EvidenceInput.title", "EvidenceInput.evidence_type", "AddCustodyRecordRequest.action"],
        },
        grpc: vec![GrpcService::new(EvidenceServiceServer::new(app.evidence.clone()))],
        jobs: vec![Kind::new(
            SWEEP_JOB,
            Scope::System,
            "Removes staging objects of abandoned uploads and stored objects no evidence refers to",
            move |job: Job| {
                let sweeper = sweeper.clone();
                async move {
                    let age = custos_blobs::store::STAGING_MAX_AGE;
                    // Each sweep removes only what nothing refers to: doing one twice is harmless.
                    let staging =
                        sweeper.sweep_staging(age).await.map_err(|e| JobError::from_problem(Problem::from(e)))?;
                    job.count("staging_removed", staging as i64);
                    job.set_progress(0.5);
                    let unreferenced =
                        sweeper.sweep_unreferenced(age).await.map_err(|e| JobError::from_problem(Problem::from(e)))?;
                    job.count("unreferenced_removed", unreferenced as i64);
                    Ok(serde_json::json!({ "staging_removed": staging, "unreferenced_removed": unreferenced }))
                }
            },
        )],
        schedules: vec![ScheduleDef::new(
            "evidence-object-sweep",
            SWEEP_JOB,
            Scope::System,
            "15 4 * * *",
            "Daily: remove stored objects no evidence refers to (a day old at least)",
        )],
        ..Serving::default()
    }
}
