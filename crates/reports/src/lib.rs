//! Compliance reports (seed 000: Compliance Reports; seed 003: `generate_compliance_report`).
//!
//! * [`content`] — what a report holds, computed from the live state in one query (scores and
//!   their trend, gaps by priority, overdue assessments, vulnerabilities past SLA, incidents and
//!   response times, evidence coverage and expiry, mapped coverage as of the latest score
//!   snapshot), and its text rendering.
//! * [`service::ReportsService`] — reports: prepared (DRAFT), generated as a job (the content
//!   frozen as the exact JSON text generated, with its SHA-256 and time), submitted (IN_REVIEW),
//!   signed off by an admin (APPROVED, or back to DRAFT), published; approved content never
//!   changes (refused; a trigger refuses the rest).
//! * [`pdf`] — a report as PDF/A-2b (`custos_pdf`): title page, figures, the score trend as a
//!   chart, tables of gaps, overdue assessments and the Statement of Applicability, sign-offs.
//! * [`grpc`] — the thin tonic adapter.

pub mod content;
pub mod grpc;
pub mod model;
pub mod pdf;
pub mod service;

pub use service::{ReportsError, ReportsService};
