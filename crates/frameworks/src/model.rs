//! Value sets of the seed and the database rows of frameworks and requirements.

use custos_core::timefmt;
use custos_db::choice;
use custos_db::schema::{frameworks, requirements};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

choice! {
    pub enum FrameworkType {
        Gdpr = "GDPR",
        Hipaa = "HIPAA",
        Sox = "SOX",
        Iso27001 = "ISO27001",
        NistCsf = "NIST_CSF",
        Soc2 = "SOC2",
        PciDss = "PCI_DSS",
        Iso20000 = "ISO20000",
        Ccpa = "CCPA",
        NistSp80053 = "NIST_SP_800_53",
        NistSp800171 = "NIST_SP_800_171",
        Iso27701 = "ISO27701",
        Dora = "DORA",
        Nis2 = "NIS2",
        CisControls = "CIS_CONTROLS",
        Fedramp = "FEDRAMP",
        Custom = "CUSTOM",
    }
}

impl FrameworkType {
    /// The seed's `framework_type_display`.
    pub fn display_name(self) -> &'static str {
        match self {
            FrameworkType::Gdpr => "General Data Protection Regulation",
            FrameworkType::Hipaa => "Health Insurance Portability and Accountability Act",
            FrameworkType::Sox => "Sarbanes-Oxley Act",
            FrameworkType::Iso27001 => "ISO/IEC 27001 Information Security Management",
            FrameworkType::NistCsf => "NIST Cybersecurity Framework",
            FrameworkType::Soc2 => "SOC 2 Trust Services Criteria",
            FrameworkType::PciDss => "Payment Card Industry Data Security Standard",
            FrameworkType::Iso20000 => "ISO/IEC 20000 IT Service Management",
            FrameworkType::Ccpa => "California Consumer Privacy Act",
            FrameworkType::NistSp80053 => "NIST SP 800-53 Security and Privacy Controls",
            FrameworkType::NistSp800171 => "NIST SP 800-171 Protecting Controlled Unclassified Information",
            FrameworkType::Iso27701 => "ISO/IEC 27701 Privacy Information Management",
            FrameworkType::Dora => "Digital Operational Resilience Act",
            FrameworkType::Nis2 => "NIS 2 Directive",
            FrameworkType::CisControls => "CIS Critical Security Controls",
            FrameworkType::Fedramp => "FedRAMP",
            FrameworkType::Custom => "Custom Framework",
        }
    }
}

impl FrameworkType {
    /// The type an imported framework most likely is, from its identifiers and name (a library
    /// URN, an OSCAL title): the first kind whose mark appears as a word, else `CUSTOM`.
    pub fn closest(texts: &[&str]) -> FrameworkType {
        // Words joined by '-', with a '-' at each end, so that marks match whole words.
        let mut words = String::from("-");
        for text in texts {
            for c in text.chars() {
                words.push(if c.is_alphanumeric() { c.to_ascii_lowercase() } else { '-' });
            }
            words.push('-');
        }
        const MARKS: &[(&str, FrameworkType)] = &[
            ("-nist-csf-", FrameworkType::NistCsf),
            ("-csf-", FrameworkType::NistCsf),
            ("-800-53", FrameworkType::NistSp80053),
            ("-800-171", FrameworkType::NistSp800171),
            ("-sp800-53", FrameworkType::NistSp80053),
            ("-27701", FrameworkType::Iso27701),
            ("-27001", FrameworkType::Iso27001),
            ("-20000", FrameworkType::Iso20000),
            ("-gdpr-", FrameworkType::Gdpr),
            ("-hipaa-", FrameworkType::Hipaa),
            ("-sox-", FrameworkType::Sox),
            ("-sarbanes-", FrameworkType::Sox),
            ("-soc2-", FrameworkType::Soc2),
            ("-soc-2-", FrameworkType::Soc2),
            ("-pci-", FrameworkType::PciDss),
            ("-ccpa-", FrameworkType::Ccpa),
            ("-dora-", FrameworkType::Dora),
            ("-nis2-", FrameworkType::Nis2),
            ("-nis-2-", FrameworkType::Nis2),
            ("-cis-controls-", FrameworkType::CisControls),
            ("-cis-csc-", FrameworkType::CisControls),
            ("-fedramp-", FrameworkType::Fedramp),
        ];
        MARKS.iter().find(|(mark, _)| words.contains(mark)).map_or(FrameworkType::Custom, |(_, t)| *t)
    }
}

choice! {
    pub enum RequirementType {
        Technical = "TECHNICAL",
        Administrative = "ADMINISTRATIVE",
        Physical = "PHYSICAL",
        Organizational = "ORGANIZATIONAL",
        People = "PEOPLE",
        Legal = "LEGAL",
        Procedural = "PROCEDURAL",
    }
}

choice! {
    pub enum Priority {
        Critical = "CRITICAL",
        High = "HIGH",
        Medium = "MEDIUM",
        Low = "LOW",
    }
}

choice! {
    pub enum ComplianceStatus {
        Compliant = "COMPLIANT",
        PartiallyCompliant = "PARTIALLY_COMPLIANT",
        NonCompliant = "NON_COMPLIANT",
        NotAssessed = "NOT_ASSESSED",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = frameworks)]
pub struct FrameworkRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub framework_type: FrameworkType,
    pub version: String,
    pub description: String,
    pub applicable_regions: Vec<String>,
    pub industry_sectors: Vec<String>,
    pub is_active: bool,
    pub effective_date: Option<Date>,
    pub review_date: Option<Date>,
    pub catalog_key: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub external_id: Option<String>,
}

impl FrameworkRow {
    pub fn to_pb(&self, requirements_count: i64) -> pb::Framework {
        pb::Framework {
            id: self.id.to_string(),
            name: self.name.clone(),
            framework_type: self.framework_type.to_string(),
            framework_type_display: self.framework_type.display_name().to_owned(),
            version: self.version.clone(),
            description: self.description.clone(),
            applicable_regions: self.applicable_regions.clone(),
            industry_sectors: self.industry_sectors.clone(),
            is_active: self.is_active,
            effective_date: self.effective_date.map(timefmt::date),
            review_date: self.review_date.map(timefmt::date),
            requirements_count,
            catalog_key: self.catalog_key.clone(),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
            external_id: self.external_id.clone(),
        }
    }

    /// The writable fields as they stand, the base a partial update overlays.
    pub fn to_input(&self) -> pb::FrameworkInput {
        pb::FrameworkInput {
            name: self.name.clone(),
            framework_type: self.framework_type.to_string(),
            version: self.version.clone(),
            description: self.description.clone(),
            applicable_regions: self.applicable_regions.clone(),
            industry_sectors: self.industry_sectors.clone(),
            is_active: Some(self.is_active),
            effective_date: self.effective_date.map(timefmt::date),
            review_date: self.review_date.map(timefmt::date),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = requirements)]
pub struct RequirementRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub framework_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub requirement_id: String,
    pub title: String,
    pub description: String,
    pub section: String,
    pub requirement_type: RequirementType,
    pub priority: Priority,
    pub compliance_status: ComplianceStatus,
    pub is_implemented: bool,
    pub assigned_to: Option<Uuid>,
    pub last_assessment_date: Option<Date>,
    pub next_assessment_date: Option<Date>,
    pub implementation_notes: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The requirement whose compliant result `apply_mapping` carried over, if that is where the
    /// status came from.
    pub status_derived_from: Option<Uuid>,
    /// Its identifier in the document it was imported from.
    pub external_id: Option<String>,
    pub is_applicable: bool,
    pub applicability_justification: String,
}

impl RequirementRow {
    pub fn to_pb(&self, framework_name: &str) -> pb::Requirement {
        pb::Requirement {
            id: self.id.to_string(),
            framework: self.framework_id.to_string(),
            framework_name: framework_name.to_owned(),
            requirement_id: self.requirement_id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            section: self.section.clone(),
            parent: self.parent_id.map(|p| p.to_string()),
            requirement_type: self.requirement_type.to_string(),
            priority: self.priority.to_string(),
            compliance_status: self.compliance_status.to_string(),
            is_implemented: self.is_implemented,
            assigned_to: self.assigned_to.map(|u| u.to_string()),
            last_assessment_date: self.last_assessment_date.map(timefmt::date),
            next_assessment_date: self.next_assessment_date.map(timefmt::date),
            implementation_notes: self.implementation_notes.clone(),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
            // Filled in from the `requirement_evidence` view by the service.
            evidence_count: 0,
            expired_evidence_count: 0,
            status_derived_from: self.status_derived_from.map(|r| r.to_string()),
            external_id: self.external_id.clone(),
            is_applicable: self.is_applicable,
            applicability_justification: self.applicability_justification.clone(),
        }
    }

    pub fn to_input(&self) -> pb::RequirementInput {
        pb::RequirementInput {
            framework: self.framework_id.to_string(),
            requirement_id: self.requirement_id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            section: self.section.clone(),
            parent: self.parent_id.map(|p| p.to_string()),
            requirement_type: self.requirement_type.to_string(),
            priority: self.priority.to_string(),
            compliance_status: Some(self.compliance_status.to_string()),
            is_implemented: Some(self.is_implemented),
            assigned_to: self.assigned_to.map(|u| u.to_string()),
            next_assessment_date: self.next_assessment_date.map(timefmt::date),
            implementation_notes: self.implementation_notes.clone(),
            is_applicable: Some(self.is_applicable),
            applicability_justification: self.applicability_justification.clone(),
        }
    }
}

/// Validated writable fields of a framework.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = frameworks, treat_none_as_null = true)]
pub struct FrameworkFields {
    pub name: String,
    pub framework_type: FrameworkType,
    pub version: String,
    pub description: String,
    pub applicable_regions: Vec<String>,
    pub industry_sectors: Vec<String>,
    pub is_active: bool,
    pub effective_date: Option<Date>,
    pub review_date: Option<Date>,
}

/// Validated writable fields of a requirement.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = requirements, treat_none_as_null = true)]
pub struct RequirementFields {
    pub framework_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub requirement_id: String,
    pub title: String,
    pub description: String,
    pub section: String,
    pub requirement_type: RequirementType,
    pub priority: Priority,
    pub compliance_status: ComplianceStatus,
    pub is_implemented: bool,
    pub assigned_to: Option<Uuid>,
    pub next_assessment_date: Option<Date>,
    pub implementation_notes: String,
    pub is_applicable: bool,
    pub applicability_justification: String,
}
