//! Retention (seeds 000 and 004): retention policies and the explanation of one record's
//! retention by the precedence rules.

use custos_db::values::{Category, DataClassification};
use custos_proto::v1::retention_service_server::RetentionServiceServer;
use custos_retention::RetentionService;
use custos_retention::model::{DeletionMethod, EntityType, PolicyType, RetentionUnit};
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain = Domain { name: "retention", serve, cli: None };

const POLICIES: &str = "/api/compliance/retention-policies/";
const POLICY: &str = "/api/compliance/retention-policies/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &RetentionService::new(app.db.clone(), app.holds.clone());
    let locked = "The policy is locked: it can be extended but never loosened, deactivated or deleted";
    Serving {
        endpoints: vec![
            Endpoint::get(POLICIES, "List retention policies", op!(s, list_retention_policies)).list(),
            Endpoint::post(POLICIES, "Create a retention policy (admins)", op!(s, create_retention_policy))
                .body_field("policy")
                .created()
                .fails(StatusCode::CONFLICT, "A retention policy with this name exists"),
            Endpoint::get(POLICY, "Get a retention policy", op!(s, get_retention_policy)),
            Endpoint::put(POLICY, "Replace a retention policy (admins)", op!(s, update_retention_policy))
                .body_field("policy")
                .fails(StatusCode::CONFLICT, locked),
            Endpoint::patch(POLICY, "Partially update a retention policy (admins)", op!(s, update_retention_policy))
                .body_field("policy")
                .fails(StatusCode::CONFLICT, locked),
            Endpoint::delete(
                POLICY,
                "Delete a retention policy (admins; never a locked one)",
                op!(s, delete_retention_policy),
            )
            .fails(StatusCode::CONFLICT, locked),
            Endpoint::get(
                "/api/compliance/retention/explain/",
                "Explain one record's retention: ?entity_type=incident|evidence|vulnerability|job&id= — the policies \
                 covering it, the longest retention, the deletion that applies, when it is eligible, and its holds",
                op!(s, explain_retention),
            ),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<PolicyType>(&[
                    "RetentionPolicy.policy_type",
                    "RetentionPolicyInput.policy_type",
                    "ListRetentionPoliciesRequest.policy_type",
                ]),
                ValueSet::of::<EntityType>(&[
                    "RetentionPolicy.entity_type",
                    "RetentionPolicyInput.entity_type",
                    "ListRetentionPoliciesRequest.entity_type",
                    "RetentionExplanation.entity_type",
                ]),
                ValueSet::of::<RetentionUnit>(&[
                    "RetentionPolicy.retention_unit",
                    "RetentionPolicyInput.retention_unit",
                ]),
                ValueSet::of::<DeletionMethod>(&[
                    "RetentionPolicy.deletion_method",
                    "RetentionPolicyInput.deletion_method",
                    "CoveringPolicy.deletion_method",
                    "RetentionExplanation.deletion_method",
                ]),
                ValueSet::of::<DataClassification>(&[
                    "RetentionPolicy.data_classification_levels",
                    "RetentionPolicyInput.data_classification_levels",
                ]),
                ValueSet::of::<Category>(&[
                    "RetentionPolicy.incident_categories",
                    "RetentionPolicyInput.incident_categories",
                ]),
            ],
            required: vec![
                "RetentionPolicyInput.name",
                "RetentionPolicyInput.policy_type",
                "ExplainRetentionRequest.entity_type",
                "ExplainRetentionRequest.id",
            ],
        },
        grpc: vec![GrpcService::new(RetentionServiceServer::new(s.clone()))],
        ..Serving::default()
    }
}
