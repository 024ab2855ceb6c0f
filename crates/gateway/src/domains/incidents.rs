//! Incident response (seed 003): incidents, vulnerabilities, compliance checkpoints and response
//! plans; the SLA watch announcing missed deadlines (the `sla-watch` schedule).

use custos_incidents::sla_watch;
use custos_jobs::{ScheduleDef, Scope};
use custos_proto::v1::incidents_service_server::IncidentsServiceServer;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;
use custos_incidents::model::{
    Category, CheckpointStatus, DataClassification, IncidentStatus, Severity, VulnerabilityStatus,
};

pub const DOMAIN: Domain = Domain { name: "incidents", serve, cli: None };

const INC: &str = "/api/compliance/incidents/";
const INC_ID: &str = "/api/compliance/incidents/{id}/";
const VULN: &str = "/api/compliance/vulnerabilities/";
const VULN_ID: &str = "/api/compliance/vulnerabilities/{id}/";
const CP: &str = "/api/compliance/compliance-checkpoints/";
const CP_ID: &str = "/api/compliance/compliance-checkpoints/{id}/";
const PLAN: &str = "/api/compliance/incident-response-plans/";
const PLAN_ID: &str = "/api/compliance/incident-response-plans/{id}/";

/// The SLA watch: every five minutes, missed incident and vulnerability deadlines are announced.
pub const SLA_WATCH_SCHEDULE: &str = "sla-watch";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.incidents;
    Serving {
        endpoints: vec![
            Endpoint::get(INC, "List incidents", op!(s, list_incidents)).list(),
            Endpoint::post(INC, "Report an incident", op!(s, create_incident)).body_field("incident").created(),
            Endpoint::get(INC_ID, "Get an incident", op!(s, get_incident)),
            Endpoint::put(INC_ID, "Replace an incident", op!(s, update_incident)).body_field("incident"),
            Endpoint::patch(INC_ID, "Partially update an incident", op!(s, update_incident)).body_field("incident"),
            Endpoint::delete(INC_ID, "Delete an incident (refused under legal hold)", op!(s, delete_incident))
                .fails(StatusCode::CONFLICT, "A legal hold covers it, or evidence or vulnerabilities still link to it"),
            Endpoint::get(VULN, "List vulnerabilities", op!(s, list_vulnerabilities)).list(),
            Endpoint::post(VULN, "Record a vulnerability", op!(s, create_vulnerability))
                .body_field("vulnerability")
                .created(),
            Endpoint::get(VULN_ID, "Get a vulnerability", op!(s, get_vulnerability)),
            Endpoint::put(VULN_ID, "Replace a vulnerability", op!(s, update_vulnerability)).body_field("vulnerability"),
            Endpoint::patch(VULN_ID, "Partially update a vulnerability", op!(s, update_vulnerability))
                .body_field("vulnerability"),
            Endpoint::delete(VULN_ID, "Delete a vulnerability", op!(s, delete_vulnerability)),
            Endpoint::get(CP, "List compliance checkpoints", op!(s, list_compliance_checkpoints)).list(),
            Endpoint::post(CP, "Schedule a compliance checkpoint", op!(s, create_compliance_checkpoint))
                .body_field("checkpoint")
                .created(),
            Endpoint::get(CP_ID, "Get a compliance checkpoint", op!(s, get_compliance_checkpoint)),
            Endpoint::put(CP_ID, "Replace a compliance checkpoint", op!(s, update_compliance_checkpoint))
                .body_field("checkpoint"),
            Endpoint::patch(CP_ID, "Partially update a compliance checkpoint", op!(s, update_compliance_checkpoint))
                .body_field("checkpoint"),
            Endpoint::delete(CP_ID, "Delete a compliance checkpoint", op!(s, delete_compliance_checkpoint)),
            Endpoint::get(PLAN, "List incident response plans", op!(s, list_incident_response_plans)).list(),
            Endpoint::post(PLAN, "Create an incident response plan", op!(s, create_incident_response_plan))
                .body_field("plan")
                .created(),
            Endpoint::get(PLAN_ID, "Get an incident response plan", op!(s, get_incident_response_plan)),
            Endpoint::put(PLAN_ID, "Replace an incident response plan", op!(s, update_incident_response_plan))
                .body_field("plan"),
            Endpoint::patch(
                PLAN_ID,
                "Partially update an incident response plan",
                op!(s, update_incident_response_plan),
            )
            .body_field("plan"),
            Endpoint::delete(PLAN_ID, "Delete an incident response plan", op!(s, delete_incident_response_plan)),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<Severity>(&[
                    "Incident.severity",
                    "IncidentInput.severity",
                    "ListIncidentsRequest.severity",
                    "Vulnerability.severity",
                    "VulnerabilityInput.severity",
                    "ListVulnerabilitiesRequest.severity",
                    "IncidentResponsePlan.severity",
                    "IncidentResponsePlanInput.severity",
                    "ListIncidentResponsePlansRequest.severity",
                ]),
                ValueSet::of::<Category>(&[
                    "Incident.category",
                    "IncidentInput.category",
                    "ListIncidentsRequest.category",
                    "IncidentResponsePlan.incident_type",
                    "IncidentResponsePlanInput.incident_type",
                    "ListIncidentResponsePlansRequest.incident_type",
                ]),
                ValueSet::of::<DataClassification>(&[
                    "Incident.data_classification",
                    "IncidentInput.data_classification",
                    "ListIncidentsRequest.data_classification",
                ]),
                ValueSet::of::<IncidentStatus>(&[
                    "Incident.status",
                    "IncidentInput.status",
                    "ListIncidentsRequest.status",
                ]),
                ValueSet::of::<VulnerabilityStatus>(&[
                    "Vulnerability.status",
                    "VulnerabilityInput.status",
                    "ListVulnerabilitiesRequest.status",
                ]),
                ValueSet::of::<CheckpointStatus>(&[
                    "ComplianceCheckpoint.status",
                    "ComplianceCheckpointInput.status",
                    "ListComplianceCheckpointsRequest.status",
                ]),
            ],
            required: vec![
                "IncidentInput.title",
                "IncidentInput.severity",
                "IncidentInput.category",
                "VulnerabilityInput.title",
                "VulnerabilityInput.severity",
                "ComplianceCheckpointInput.name",
                "IncidentResponsePlanInput.name",
                "IncidentResponsePlanInput.incident_type",
                "IncidentResponsePlanInput.severity",
            ],
        },
        grpc: vec![GrpcService::new(IncidentsServiceServer::new(app.incidents.clone()))],
        jobs: vec![sla_watch::sla_watch_job(app.incidents.clone())],
        schedules: vec![ScheduleDef::new(
            SLA_WATCH_SCHEDULE,
            sla_watch::SLA_WATCH_JOB,
            Scope::Organization,
            "*/5 * * * *",
            "Announces incidents and vulnerabilities whose SLA deadline has passed unmet (once per deadline)",
        )],
        ..Serving::default()
    }
}
