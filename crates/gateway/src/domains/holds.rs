//! Legal holds: placing, extending and releasing them. Every deleting path asks the one hold
//! check (`custos_core::hold`), which the server hands to each service as `App::holds`.

use custos_proto::v1::legal_holds_service_server::LegalHoldsServiceServer;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;
use custos_holds::model::HoldStatus;

pub const DOMAIN: Domain = Domain { name: "holds", serve, cli: None };

const HOLDS: &str = "/api/compliance/legal-holds/";
const HOLD_ID: &str = "/api/compliance/legal-holds/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.legal_holds;
    let released = "The hold was released: it can no longer change";
    Serving {
        endpoints: vec![
            Endpoint::get(HOLDS, "List legal holds", op!(s, list_legal_holds)).list(),
            Endpoint::post(HOLDS, "Place a legal hold", op!(s, create_legal_hold)).body_field("legal_hold").created(),
            Endpoint::get(HOLD_ID, "Get a legal hold", op!(s, get_legal_hold)),
            Endpoint::put(HOLD_ID, "Replace a legal hold's details", op!(s, update_legal_hold))
                .body_field("legal_hold")
                .fails(StatusCode::CONFLICT, released),
            Endpoint::patch(HOLD_ID, "Partially update a legal hold's details", op!(s, update_legal_hold))
                .body_field("legal_hold")
                .fails(StatusCode::CONFLICT, released),
            Endpoint::post(
                "/api/compliance/legal-holds/{id}/add_incident/",
                "Place an incident (and its evidence) under the hold",
                op!(s, add_incident),
            )
            .fails(StatusCode::CONFLICT, released),
            Endpoint::post(
                "/api/compliance/legal-holds/{id}/add_evidence/",
                "Place an evidence item under the hold",
                op!(s, add_evidence),
            )
            .fails(StatusCode::CONFLICT, released),
            Endpoint::post(
                "/api/compliance/legal-holds/{id}/release/",
                "Release the hold, with a reason (admins)",
                op!(s, release_legal_hold),
            )
            .fails(StatusCode::CONFLICT, "The hold was already released"),
        ],
        description: ApiDescription {
            value_sets: vec![ValueSet::of::<HoldStatus>(&["LegalHold.status", "ListLegalHoldsRequest.status"])],
            required: vec![
                "LegalHoldInput.case_name",
                "ReleaseLegalHoldRequest.reason",
                "AddIncidentToHoldRequest.incident_id",
                "AddEvidenceToHoldRequest.evidence_id",
            ],
        },
        grpc: vec![GrpcService::new(LegalHoldsServiceServer::new(app.legal_holds.clone()))],
        ..Serving::default()
    }
}
