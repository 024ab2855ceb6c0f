REVOKE DELETE ON data_residency FROM custos_app;
ALTER TABLE data_residency DROP CONSTRAINT data_residency_organization_id_policy_id_fkey;
ALTER TABLE retention_policies DROP COLUMN managed_by_policy;
DROP TABLE compliance_policy_versions;
DROP FUNCTION custos_policy_version_immutable();
DROP TABLE compliance_policies;
