-- Date-range listings are read newest recorded first, by (recording time, sequence number): one
-- index range scan per page wherever the range lies in the log.
CREATE INDEX audit_index_org_time_seq ON audit_index (organization_id, recorded_at, seq);
DROP INDEX audit_index_org_time;
