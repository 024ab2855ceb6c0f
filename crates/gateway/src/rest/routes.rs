//! The route table: every REST endpoint, the service method it calls, and how it is documented.
//! The gRPC services expose the same methods; this table is the only REST-specific knowledge.

use custos_core::Problem;

use super::{Endpoint, op, public_op};
use crate::server::App;

/// Calls `app.<service>.<method>(&ctx, request)` and maps its error to a [`Problem`].
macro_rules! call {
    ($service:ident . $method:ident) => {
        op(|app: App, ctx, req| async move { app.$service.$method(&ctx, req).await.map_err(Problem::from) })
    };
}

/// Paths served to anonymous callers too (see `edge::is_public`).
pub const PUBLIC_KEY: &str = "/api/compliance/audit-log/public-key/";

pub fn endpoints() -> Vec<Endpoint> {
    const FW: &str = "/api/compliance/frameworks/";
    const FW_ID: &str = "/api/compliance/frameworks/{id}/";
    const REQ: &str = "/api/compliance/requirements/";
    const REQ_ID: &str = "/api/compliance/requirements/{id}/";
    const AUDIT: &str = "/api/compliance/audit-log/";
    const CHECKPOINTS: &str = "/api/compliance/audit-log/checkpoints/";
    const EV: &str = "/api/compliance/evidence/";
    const EV_ID: &str = "/api/compliance/evidence/{id}/";
    const HOLDS: &str = "/api/compliance/legal-holds/";
    const HOLD_ID: &str = "/api/compliance/legal-holds/{id}/";
    const INC: &str = "/api/compliance/incidents/";
    const INC_ID: &str = "/api/compliance/incidents/{id}/";
    const VULN: &str = "/api/compliance/vulnerabilities/";
    const VULN_ID: &str = "/api/compliance/vulnerabilities/{id}/";
    const CP: &str = "/api/compliance/compliance-checkpoints/";
    const CP_ID: &str = "/api/compliance/compliance-checkpoints/{id}/";
    const PLAN: &str = "/api/compliance/incident-response-plans/";
    const PLAN_ID: &str = "/api/compliance/incident-response-plans/{id}/";
    vec![
        Endpoint::get(FW, "listFrameworks", "List regulatory frameworks", call!(frameworks.list_frameworks)).list(),
        Endpoint::post(FW, "createFramework", "Create a framework", call!(frameworks.create_framework))
            .body_field("framework")
            .created(),
        Endpoint::get(FW_ID, "getFramework", "Get a framework", call!(frameworks.get_framework)),
        Endpoint::put(FW_ID, "replaceFramework", "Replace a framework", call!(frameworks.update_framework))
            .body_field("framework"),
        Endpoint::patch(FW_ID, "updateFramework", "Partially update a framework", call!(frameworks.update_framework))
            .body_field("framework"),
        Endpoint::delete(
            FW_ID,
            "deleteFramework",
            "Delete a framework and its requirements",
            call!(frameworks.delete_framework),
        ),
        Endpoint::get(
            "/api/compliance/frameworks/{id}/requirements/",
            "listFrameworkRequirements",
            "List a framework's requirements",
            call!(frameworks.list_framework_requirements),
        )
        .list(),
        Endpoint::get(
            "/api/compliance/frameworks/{id}/compliance_summary/",
            "getComplianceSummary",
            "Live compliance figures of a framework",
            call!(frameworks.compliance_summary),
        ),
        Endpoint::get(REQ, "listRequirements", "List compliance requirements", call!(frameworks.list_requirements))
            .list(),
        Endpoint::post(REQ, "createRequirement", "Create a requirement", call!(frameworks.create_requirement))
            .body_field("requirement")
            .created(),
        Endpoint::get(REQ_ID, "getRequirement", "Get a requirement", call!(frameworks.get_requirement)),
        Endpoint::put(REQ_ID, "replaceRequirement", "Replace a requirement", call!(frameworks.update_requirement))
            .body_field("requirement"),
        Endpoint::patch(
            REQ_ID,
            "updateRequirement",
            "Partially update a requirement",
            call!(frameworks.update_requirement),
        )
        .body_field("requirement"),
        Endpoint::delete(REQ_ID, "deleteRequirement", "Delete a requirement", call!(frameworks.delete_requirement)),
        Endpoint::post(
            "/api/compliance/requirements/{id}/update_status/",
            "updateRequirementStatus",
            "Record a requirement's compliance status",
            call!(frameworks.update_status),
        ),
        Endpoint::post(
            "/api/compliance/requirements/{id}/schedule_assessment/",
            "scheduleAssessment",
            "Schedule a requirement's next assessment",
            call!(frameworks.schedule_assessment),
        ),
        Endpoint::get(EV, "listEvidence", "List evidence", call!(evidence.list_evidence)).list(),
        Endpoint::post(
            EV,
            "createEvidence",
            "Record evidence: JSON (metadata only) or multipart/form-data with a streamed `file` part",
            call!(evidence.create_evidence),
        )
        .body_field("evidence")
        .multipart_upload()
        .created(),
        Endpoint::get(
            EV_ID,
            "getEvidence",
            "Get an evidence item with its chain of custody",
            call!(evidence.get_evidence),
        ),
        Endpoint::put(EV_ID, "replaceEvidence", "Replace an evidence item's metadata", call!(evidence.update_evidence))
            .body_field("evidence"),
        Endpoint::patch(
            EV_ID,
            "updateEvidence",
            "Partially update an evidence item's metadata",
            call!(evidence.update_evidence),
        )
        .body_field("evidence"),
        Endpoint::delete(
            EV_ID,
            "deleteEvidence",
            "Delete an evidence item (refused while a legal hold covers it)",
            call!(evidence.delete_evidence),
        ),
        Endpoint::post(
            "/api/compliance/evidence/{id}/add_custody_record/",
            "addCustodyRecord",
            "Append a record to the chain of custody",
            call!(evidence.add_custody_record),
        ),
        Endpoint::post(
            "/api/compliance/evidence/{id}/verify_evidence/",
            "verifyEvidence",
            "Re-read the stored file, recompute its digests and check the custody chain",
            call!(evidence.verify_evidence),
        ),
        Endpoint::get(HOLDS, "listLegalHolds", "List legal holds", call!(legal_holds.list_legal_holds)).list(),
        Endpoint::post(HOLDS, "createLegalHold", "Place a legal hold", call!(legal_holds.create_legal_hold))
            .body_field("legal_hold")
            .created(),
        Endpoint::get(HOLD_ID, "getLegalHold", "Get a legal hold", call!(legal_holds.get_legal_hold)),
        Endpoint::put(
            HOLD_ID,
            "replaceLegalHold",
            "Replace a legal hold's details",
            call!(legal_holds.update_legal_hold),
        )
        .body_field("legal_hold"),
        Endpoint::patch(
            HOLD_ID,
            "updateLegalHold",
            "Partially update a legal hold's details",
            call!(legal_holds.update_legal_hold),
        )
        .body_field("legal_hold"),
        Endpoint::post(
            "/api/compliance/legal-holds/{id}/add_incident/",
            "addIncidentToLegalHold",
            "Place an incident (and its evidence) under the hold",
            call!(legal_holds.add_incident),
        ),
        Endpoint::post(
            "/api/compliance/legal-holds/{id}/add_evidence/",
            "addEvidenceToLegalHold",
            "Place an evidence item under the hold",
            call!(legal_holds.add_evidence),
        ),
        Endpoint::post(
            "/api/compliance/legal-holds/{id}/release/",
            "releaseLegalHold",
            "Release the hold, with a reason (admins)",
            call!(legal_holds.release_legal_hold),
        ),
        Endpoint::get(INC, "listIncidents", "List incidents", call!(incidents.list_incidents)).list(),
        Endpoint::post(INC, "createIncident", "Report an incident", call!(incidents.create_incident))
            .body_field("incident")
            .created(),
        Endpoint::get(INC_ID, "getIncident", "Get an incident", call!(incidents.get_incident)),
        Endpoint::put(INC_ID, "replaceIncident", "Replace an incident", call!(incidents.update_incident))
            .body_field("incident"),
        Endpoint::patch(INC_ID, "updateIncident", "Partially update an incident", call!(incidents.update_incident))
            .body_field("incident"),
        Endpoint::delete(
            INC_ID,
            "deleteIncident",
            "Delete an incident (refused under legal hold)",
            call!(incidents.delete_incident),
        ),
        Endpoint::get(VULN, "listVulnerabilities", "List vulnerabilities", call!(incidents.list_vulnerabilities))
            .list(),
        Endpoint::post(VULN, "createVulnerability", "Record a vulnerability", call!(incidents.create_vulnerability))
            .body_field("vulnerability")
            .created(),
        Endpoint::get(VULN_ID, "getVulnerability", "Get a vulnerability", call!(incidents.get_vulnerability)),
        Endpoint::put(
            VULN_ID,
            "replaceVulnerability",
            "Replace a vulnerability",
            call!(incidents.update_vulnerability),
        )
        .body_field("vulnerability"),
        Endpoint::patch(
            VULN_ID,
            "updateVulnerability",
            "Partially update a vulnerability",
            call!(incidents.update_vulnerability),
        )
        .body_field("vulnerability"),
        Endpoint::delete(
            VULN_ID,
            "deleteVulnerability",
            "Delete a vulnerability",
            call!(incidents.delete_vulnerability),
        ),
        Endpoint::get(
            CP,
            "listComplianceCheckpoints",
            "List compliance checkpoints",
            call!(incidents.list_checkpoints),
        )
        .list(),
        Endpoint::post(
            CP,
            "createComplianceCheckpoint",
            "Schedule a compliance checkpoint",
            call!(incidents.create_checkpoint),
        )
        .body_field("checkpoint")
        .created(),
        Endpoint::get(CP_ID, "getComplianceCheckpoint", "Get a compliance checkpoint", call!(incidents.get_checkpoint)),
        Endpoint::put(
            CP_ID,
            "replaceComplianceCheckpoint",
            "Replace a compliance checkpoint",
            call!(incidents.update_checkpoint),
        )
        .body_field("checkpoint"),
        Endpoint::patch(
            CP_ID,
            "updateComplianceCheckpoint",
            "Partially update a compliance checkpoint",
            call!(incidents.update_checkpoint),
        )
        .body_field("checkpoint"),
        Endpoint::delete(
            CP_ID,
            "deleteComplianceCheckpoint",
            "Delete a compliance checkpoint",
            call!(incidents.delete_checkpoint),
        ),
        Endpoint::get(PLAN, "listIncidentResponsePlans", "List incident response plans", call!(incidents.list_plans))
            .list(),
        Endpoint::post(
            PLAN,
            "createIncidentResponsePlan",
            "Create an incident response plan",
            call!(incidents.create_plan),
        )
        .body_field("plan")
        .created(),
        Endpoint::get(PLAN_ID, "getIncidentResponsePlan", "Get an incident response plan", call!(incidents.get_plan)),
        Endpoint::put(
            PLAN_ID,
            "replaceIncidentResponsePlan",
            "Replace an incident response plan",
            call!(incidents.update_plan),
        )
        .body_field("plan"),
        Endpoint::patch(
            PLAN_ID,
            "updateIncidentResponsePlan",
            "Partially update an incident response plan",
            call!(incidents.update_plan),
        )
        .body_field("plan"),
        Endpoint::delete(
            PLAN_ID,
            "deleteIncidentResponsePlan",
            "Delete an incident response plan",
            call!(incidents.delete_plan),
        ),
        Endpoint::get(
            "/api/compliance/whoami/",
            "whoAmI",
            "The caller's organisation, role and identity",
            call!(identity.who_am_i),
        ),
        Endpoint::get(
            AUDIT,
            "listAuditEntries",
            "The audit trail, newest first (auditors, admins)",
            call!(audit.list_entries),
        )
        .cursor_list(),
        Endpoint::get("/api/compliance/audit-log/{seq}/", "getAuditEntry", "One audit entry", call!(audit.get_entry)),
        Endpoint::get(
            CHECKPOINTS,
            "listAuditCheckpoints",
            "Signed checkpoints, newest first",
            call!(audit.list_checkpoints),
        )
        .cursor_list(),
        Endpoint::post(
            CHECKPOINTS,
            "createAuditCheckpoint",
            "Integrate committed entries and sign a checkpoint now",
            call!(audit.create_checkpoint),
        )
        .created(),
        Endpoint::get(
            "/api/compliance/audit-log/checkpoints/latest/",
            "latestAuditCheckpoint",
            "The latest signed checkpoint",
            call!(audit.latest_checkpoint),
        ),
        Endpoint::get(
            "/api/compliance/audit-log/proofs/inclusion/",
            "auditInclusionProof",
            "Merkle inclusion proof of an entry in a checkpoint (RFC 9162)",
            call!(audit.inclusion_proof),
        ),
        Endpoint::get(
            "/api/compliance/audit-log/proofs/consistency/",
            "auditConsistencyProof",
            "Merkle consistency proof between two tree sizes (RFC 9162)",
            call!(audit.consistency_proof),
        ),
        Endpoint::post(
            "/api/compliance/audit-log/verify/",
            "verifyAuditChain",
            "Recompute every hash and the tree and check every checkpoint (a run whose progress is saved as it goes)",
            call!(audit.verify_chain),
        ),
        Endpoint::post(
            "/api/compliance/audit-log/verifications/",
            "startAuditVerification",
            "Start a verification in the background; answers at once with the run to watch",
            call!(audit.start_verification),
        )
        .accepted(),
        Endpoint::get(
            "/api/compliance/audit-log/verifications/",
            "listAuditVerifications",
            "Verification runs, newest first: progress while running, result once finished",
            call!(audit.list_verifications),
        )
        .cursor_list(),
        Endpoint::get(
            "/api/compliance/audit-log/verifications/{id}/",
            "getAuditVerification",
            "One verification run: its progress or result",
            call!(audit.get_verification),
        ),
        Endpoint::post(
            "/api/compliance/audit-log/verifications/{id}/resume/",
            "resumeAuditVerification",
            "Take over an interrupted verification and run it to the end from where it stopped",
            call!(audit.resume_verification),
        ),
        Endpoint::post(
            "/api/compliance/audit-log/{seq}/withhold/",
            "withholdAuditFields",
            "Withhold field values of an entry, keeping their commitments (admins)",
            call!(audit.withhold_fields),
        ),
        Endpoint::get(
            PUBLIC_KEY,
            "auditPublicKey",
            "The checkpoint signing key (public)",
            public_op(|app: App, ctx, req| async move {
                app.audit.public_key(ctx.as_ref(), req).await.map_err(Problem::from)
            }),
        ),
    ]
}
