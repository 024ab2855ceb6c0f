//! Value sets that more than one domain reads, kept in the kernel so that no domain crate
//! depends on another: an incident's category and data classification (the incidents domain
//! owns them; retention policies are scoped by them).

use crate::choice;

choice! {
    /// Incident categories; also the `incident_type` of response plans.
    pub enum Category {
        DataBreach = "DATA_BREACH",
        SecurityBreach = "SECURITY_BREACH",
        ServiceOutage = "SERVICE_OUTAGE",
        PolicyViolation = "POLICY_VIOLATION",
        Malware = "MALWARE",
        Phishing = "PHISHING",
        UnauthorizedAccess = "UNAUTHORIZED_ACCESS",
        Other = "OTHER",
    }
}

choice! {
    pub enum DataClassification {
        Public = "PUBLIC",
        Internal = "INTERNAL",
        Confidential = "CONFIDENTIAL",
        Restricted = "RESTRICTED",
    }
}
