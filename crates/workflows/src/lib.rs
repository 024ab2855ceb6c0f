//! Regulatory workflows (seed 000: Regulatory Workflows, Workflow Instances).
//!
//! * [`definition`] — a workflow as a state machine: checked when saved, the rules an instance
//!   moves by (transitions, roles, typed step data), deadlines from their anchors. Pure.
//! * [`service::WorkflowsService`] — workflows and their instances (create from a workflow,
//!   advance, assign stakeholders, cancel), written once for REST, gRPC and the CLI.
//! * [`templates`] — the built-in templates (GDPR and HIPAA breach notification, SOX quarterly
//!   control testing, access review, data subject requests), shipped as data and seeded into an
//!   organisation like the framework catalogue.
//! * [`overdue_watch`] — the daily `workflow-overdue-watch`: overdue instances announced once per
//!   deadline through the notification channels (`workflow.overdue`).
//! * [`model`] — value sets and rows; [`grpc`] — the thin tonic adapter.

pub mod definition;
pub mod grpc;
pub mod model;
pub mod overdue_watch;
pub mod service;
pub mod templates;

pub use service::{WorkflowsError, WorkflowsService};
