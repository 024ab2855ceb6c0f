DROP TABLE IF EXISTS compliance_checkpoints, vulnerabilities, incident_response_plans;
DROP INDEX IF EXISTS incidents_org_detected;
ALTER TABLE incidents DROP COLUMN IF EXISTS responded_at;
