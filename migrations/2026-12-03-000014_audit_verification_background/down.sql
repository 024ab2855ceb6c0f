DROP FUNCTION custos_audit_interrupted_verifications(timestamptz);
DROP INDEX audit_verifications_live;
ALTER TABLE audit_verifications DROP COLUMN background;
