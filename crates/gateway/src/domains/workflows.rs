//! Regulatory workflows (seed 000): workflow definitions (state machines), their instances
//! (created from a workflow, advanced step by step, stakeholders, cancellation) and the built-in
//! templates (also seeded by `custos seed`).

use custos_jobs::{ScheduleDef, Scope};
use custos_proto::v1::workflows_service_server::WorkflowsServiceServer;
use custos_workflows::model::{InstanceStatus, WorkflowStatus, WorkflowType};
use custos_workflows::{WorkflowsService, overdue_watch};
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain = Domain { name: "workflows", serve, cli: None };

/// The daily check of overdue instances.
pub const OVERDUE_WATCH_SCHEDULE: &str = "workflow-overdue-watch";

const WORKFLOWS: &str = "/api/compliance/workflows/";
const WORKFLOW: &str = "/api/compliance/workflows/{id}/";
const INSTANCES: &str = "/api/compliance/workflow-instances/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &WorkflowsService::new(app.db.clone());
    let read_only = "The instance is completed or cancelled: it is read-only";
    Serving {
        endpoints: vec![
            Endpoint::get(WORKFLOWS, "List workflows", op!(s, list_workflows)).list(),
            Endpoint::post(
                WORKFLOWS,
                "Create a workflow (editors, admins): its steps, transitions, step data and deadlines are checked",
                op!(s, create_workflow),
            )
            .body_field("workflow")
            .created()
            .fails(StatusCode::CONFLICT, "A workflow with this name exists"),
            Endpoint::post(
                "/api/compliance/workflows/seed_templates/",
                "Seed the built-in workflow templates, each once (admins)",
                op!(s, seed_workflow_templates),
            ),
            Endpoint::get(WORKFLOW, "Get a workflow", op!(s, get_workflow)),
            Endpoint::put(WORKFLOW, "Replace a workflow (editors, admins)", op!(s, update_workflow))
                .body_field("workflow"),
            Endpoint::patch(WORKFLOW, "Partially update a workflow (editors, admins)", op!(s, update_workflow))
                .body_field("workflow"),
            Endpoint::delete(WORKFLOW, "Delete a workflow no instance was started from", op!(s, delete_workflow))
                .fails(StatusCode::CONFLICT, "Instances were started from it: retire it instead"),
            Endpoint::post(
                "/api/compliance/workflows/{id}/create_instance/",
                "Start an instance of an ACTIVE workflow (seed 000's body)",
                op!(s, create_workflow_instance),
            )
            .created()
            .fails(StatusCode::CONFLICT, "The workflow is not ACTIVE"),
            Endpoint::get(
                INSTANCES,
                "List workflow instances, newest first (?workflow=, ?status=, ?assigned_to=, ?related_incident=, \
                 ?overdue=, ?search=)",
                op!(s, list_workflow_instances),
            )
            .list(),
            Endpoint::get(
                "/api/compliance/workflow-instances/{id}/",
                "Get a workflow instance with its history",
                op!(s, get_workflow_instance),
            ),
            Endpoint::post(
                "/api/compliance/workflow-instances/{id}/advance_step/",
                "Move an instance to its next step (seed 000's body): a transition the workflow allows, by the step's \
                 role, with the step's data",
                op!(s, advance_workflow_step),
            )
            .fails(StatusCode::CONFLICT, read_only),
            Endpoint::post(
                "/api/compliance/workflow-instances/{id}/assign_stakeholder/",
                "Add a stakeholder to an instance (seed 000's body)",
                op!(s, assign_stakeholder),
            )
            .fails(StatusCode::CONFLICT, read_only),
            Endpoint::post(
                "/api/compliance/workflow-instances/{id}/cancel/",
                "Cancel an instance, with a reason",
                op!(s, cancel_workflow_instance),
            )
            .fails(StatusCode::CONFLICT, read_only),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<WorkflowType>(&[
                    "Workflow.workflow_type",
                    "WorkflowInput.workflow_type",
                    "ListWorkflowsRequest.workflow_type",
                ]),
                ValueSet::of::<WorkflowStatus>(&[
                    "Workflow.status",
                    "WorkflowInput.status",
                    "ListWorkflowsRequest.status",
                ]),
                ValueSet::of::<InstanceStatus>(&["WorkflowInstance.status", "ListWorkflowInstancesRequest.status"]),
            ],
            required: vec![
                "WorkflowInput.name",
                "WorkflowInput.workflow_type",
                "CreateWorkflowInstanceRequest.title",
                "AdvanceWorkflowStepRequest.next_step",
                "AssignStakeholderRequest.stakeholder_id",
                "CancelWorkflowInstanceRequest.reason",
            ],
        },
        grpc: vec![GrpcService::new(WorkflowsServiceServer::new(s.clone()))],
        jobs: vec![overdue_watch::overdue_watch_job(s.clone())],
        schedules: vec![ScheduleDef::new(
            OVERDUE_WATCH_SCHEDULE,
            overdue_watch::OVERDUE_WATCH_JOB,
            Scope::Organization,
            "30 6 * * *",
            "Announces workflow instances past their due date or a step's deadline (once per deadline)",
        )],
        ..Serving::default()
    }
}
