DROP TABLE policy_violations;
ALTER TABLE evidence DROP COLUMN storage_region;
DROP TABLE data_residency;
