//! Data residency (seed 004): the organisation's regions and their enforcement, and the record of
//! operations that broke a rule (`/api/compliance/policy-violations/`). The placement of writes
//! is not an endpoint: the domains that store files ask `custos-residency` themselves.

use custos_proto::v1::data_residency_service_server::DataResidencyServiceServer;
use custos_residency::violations::{Enforcement, Outcome};
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain = Domain { name: "residency", serve, cli: None };

const CONFIGS: &str = "/api/compliance/data-residency/";
const CONFIG: &str = "/api/compliance/data-residency/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.residency;
    Serving {
        endpoints: vec![
            Endpoint::get(
                CONFIGS,
                "The organisation's data residency configuration (at most one)",
                op!(s, list_data_residency),
            )
            .list(),
            Endpoint::post(CONFIGS, "Configure data residency (admins)", op!(s, create_data_residency))
                .body_field("residency")
                .created()
                .fails(StatusCode::CONFLICT, "The organisation has a configuration: change it with PUT or PATCH"),
            Endpoint::get(CONFIG, "Get the data residency configuration", op!(s, get_data_residency)),
            Endpoint::put(CONFIG, "Replace the data residency configuration (admins)", op!(s, update_data_residency))
                .body_field("residency"),
            Endpoint::patch(
                CONFIG,
                "Partially update the data residency configuration (admins)",
                op!(s, update_data_residency),
            )
            .body_field("residency"),
            Endpoint::get(
                "/api/compliance/policy-violations/",
                "Operations that broke a rule, newest first (admins, auditors): ?policy=, ?rule=, ?outcome=, \
                 ?operation=, ?occurred_after=, ?occurred_before=",
                op!(s, list_policy_violations),
            )
            .list(),
            Endpoint::get(
                "/api/compliance/policy-violations/{id}/",
                "Get a policy violation (admins, auditors)",
                op!(s, get_policy_violation),
            ),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<Outcome>(&["PolicyViolation.outcome", "ListPolicyViolationsRequest.outcome"]),
                ValueSet::of::<Enforcement>(&["PolicyViolation.enforcement"]),
            ],
            required: vec!["DataResidencyInput.primary_region"],
        },
        grpc: vec![GrpcService::new(DataResidencyServiceServer::new(s.clone()))],
        ..Serving::default()
    }
}
