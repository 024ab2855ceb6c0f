//! Service levels of the seed (`COMPLIANCE_INCIDENT_*_SLA`, `COMPLIANCE_VULN_*_SLA`), configurable
//! per deployment, and the deadlines they give.

use time::{Duration, OffsetDateTime};

use crate::model::Severity;

/// Response, resolution and remediation SLAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slas {
    /// Minutes to respond to a CRITICAL incident (seed: 15).
    pub incident_critical_response_minutes: u32,
    /// Minutes to respond to any other incident (seed: 30).
    pub incident_normal_response_minutes: u32,
    /// Hours to resolve an incident (seed: 4).
    pub incident_resolution_hours: u32,
    /// Days to remediate a vulnerability, by severity (seed: 3, 14, 30, 90).
    pub vuln_critical_days: u32,
    pub vuln_high_days: u32,
    pub vuln_medium_days: u32,
    pub vuln_low_days: u32,
}

impl Default for Slas {
    fn default() -> Self {
        Slas {
            incident_critical_response_minutes: 15,
            incident_normal_response_minutes: 30,
            incident_resolution_hours: 4,
            vuln_critical_days: 3,
            vuln_high_days: 14,
            vuln_medium_days: 30,
            vuln_low_days: 90,
        }
    }
}

impl Slas {
    /// When an incident of this severity detected at `detected_at` must be responded to.
    pub fn response_due(&self, severity: Severity, detected_at: OffsetDateTime) -> OffsetDateTime {
        let minutes = match severity {
            Severity::Critical => self.incident_critical_response_minutes,
            _ => self.incident_normal_response_minutes,
        };
        detected_at.saturating_add(Duration::minutes(i64::from(minutes)))
    }

    /// When an incident detected at `detected_at` must be resolved.
    pub fn resolution_due(&self, detected_at: OffsetDateTime) -> OffsetDateTime {
        // Saturating: a detection time late in the year 9999 is still a valid one.
        detected_at.saturating_add(Duration::hours(i64::from(self.incident_resolution_hours)))
    }

    /// Days to remediate a vulnerability of this severity.
    pub fn vuln_days(&self, severity: Severity) -> u32 {
        match severity {
            Severity::Critical => self.vuln_critical_days,
            Severity::High => self.vuln_high_days,
            Severity::Medium => self.vuln_medium_days,
            Severity::Low => self.vuln_low_days,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn seed_defaults() {
        let s = Slas::default();
        let t = datetime!(2024-03-01 09:00 UTC);
        assert_eq!(s.response_due(Severity::Critical, t), datetime!(2024-03-01 09:15 UTC));
        assert_eq!(s.response_due(Severity::High, t), datetime!(2024-03-01 09:30 UTC));
        assert_eq!(s.resolution_due(t), datetime!(2024-03-01 13:00 UTC));
        let days: Vec<u32> =
            [Severity::Critical, Severity::High, Severity::Medium, Severity::Low].map(|v| s.vuln_days(v)).to_vec();
        assert_eq!(days, [3, 14, 30, 90]);
    }
}
