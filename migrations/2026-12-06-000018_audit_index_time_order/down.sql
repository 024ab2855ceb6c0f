CREATE INDEX audit_index_org_time ON audit_index (organization_id, recorded_at);
DROP INDEX audit_index_org_time_seq;
