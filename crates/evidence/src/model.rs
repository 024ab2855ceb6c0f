//! Value sets of the seed and the database rows of evidence and custody records.

use custos_core::timefmt;
use custos_db::choice;
use custos_db::schema::{custody_records, evidence};
use diesel::prelude::*;
use serde_json::Value;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

choice! {
    pub enum EvidenceType {
        LogFile = "LOG_FILE",
        Screenshot = "SCREENSHOT",
        Document = "DOCUMENT",
        Email = "EMAIL",
        NetworkCapture = "NETWORK_CAPTURE",
        DatabaseExport = "DATABASE_EXPORT",
        Configuration = "CONFIGURATION",
        Policy = "POLICY",
        Report = "REPORT",
        Certificate = "CERTIFICATE",
        AuditTrail = "AUDIT_TRAIL",
        Interview = "INTERVIEW",
        Photo = "PHOTO",
        Video = "VIDEO",
        Other = "OTHER",
    }
}

choice! {
    pub enum EvidenceStatus {
        Collected = "COLLECTED",
        Verified = "VERIFIED",
        Analyzed = "ANALYZED",
        Sealed = "SEALED",
        Released = "RELEASED",
        Compromised = "COMPROMISED",
        Disposed = "DISPOSED",
    }
}

choice! {
    pub enum CustodyAction {
        Collected = "COLLECTED",
        Transferred = "TRANSFERRED",
        Accessed = "ACCESSED",
        Analyzed = "ANALYZED",
        Verified = "VERIFIED",
        VerificationFailed = "VERIFICATION_FAILED",
        Sealed = "SEALED",
        Released = "RELEASED",
        Disposed = "DISPOSED",
    }
}

impl CustodyAction {
    /// Actions only the service records (collection, hash verification).
    pub fn is_system_only(self) -> bool {
        matches!(self, CustodyAction::Collected | CustodyAction::Verified | CustodyAction::VerificationFailed)
    }

    /// Whether this action may be recorded by hand on an item in `status`. Sealed evidence is
    /// only moved, looked at or released; compromised evidence stays so until `verify_evidence`
    /// finds it intact again (or it is disposed of); nothing follows disposal.
    pub fn allowed_on(self, status: EvidenceStatus) -> bool {
        use CustodyAction as A;
        match status {
            EvidenceStatus::Disposed => false,
            EvidenceStatus::Sealed => matches!(self, A::Transferred | A::Accessed | A::Released),
            EvidenceStatus::Compromised => matches!(self, A::Transferred | A::Accessed | A::Disposed),
            _ => true,
        }
    }

    /// The status an item takes when this action is recorded, if it changes.
    pub fn resulting_status(self) -> Option<EvidenceStatus> {
        match self {
            CustodyAction::Collected => Some(EvidenceStatus::Collected),
            CustodyAction::Analyzed => Some(EvidenceStatus::Analyzed),
            CustodyAction::Verified => Some(EvidenceStatus::Verified),
            CustodyAction::VerificationFailed => Some(EvidenceStatus::Compromised),
            CustodyAction::Sealed => Some(EvidenceStatus::Sealed),
            CustodyAction::Released => Some(EvidenceStatus::Released),
            CustodyAction::Disposed => Some(EvidenceStatus::Disposed),
            CustodyAction::Transferred | CustodyAction::Accessed => None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = evidence)]
pub struct EvidenceRow {
    pub id: Uuid,
    pub incident_id: Option<Uuid>,
    pub title: String,
    pub description: String,
    pub notes: String,
    pub evidence_type: EvidenceType,
    pub status: EvidenceStatus,
    pub source: String,
    pub file_path: Option<String>,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub file_hash: Option<String>,
    pub file_blake3: Option<String>,
    pub collected_by: String,
    pub collected_at: OffsetDateTime,
    pub valid_until: Option<Date>,
    pub retention_period: Option<i32>,
    pub last_verified_at: Option<OffsetDateTime>,
    pub disposed_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub storage_region: Option<String>,
}

impl EvidenceRow {
    pub fn is_expired(&self, today: Date) -> bool {
        self.valid_until.is_some_and(|d| d < today)
    }

    pub fn retention_until(&self) -> Option<Date> {
        self.retention_period.map(|days| (self.collected_at + Duration::days(i64::from(days))).date())
    }
}

/// The writable columns of an evidence item, validated.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = evidence, treat_none_as_null = true)]
pub struct EvidenceFields {
    pub incident_id: Option<Uuid>,
    pub title: String,
    pub description: String,
    pub notes: String,
    pub evidence_type: EvidenceType,
    pub source: String,
    pub collected_at: OffsetDateTime,
    pub valid_until: Option<Date>,
    pub retention_period: Option<i32>,
}

/// A custody record as stored. Its `action` stays text: the chain is verified over what is
/// stored, and a record whose action was tampered with must fail verification, not the read.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = custody_records)]
pub struct CustodyRow {
    pub evidence_id: Uuid,
    pub seq: i32,
    pub action: String,
    pub actor: String,
    pub actor_role: String,
    pub notes: String,
    pub details: Value,
    pub recorded_at: OffsetDateTime,
    pub request_id: Option<String>,
    pub previous_hash: Vec<u8>,
    pub record_hash: Vec<u8>,
}

/// A timestamp as stored (PostgreSQL keeps microseconds), so hashes computed before and after a
/// round trip agree.
pub fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).unwrap_or(t)
}

pub fn ts(t: OffsetDateTime) -> String {
    timefmt::timestamp(t)
}
