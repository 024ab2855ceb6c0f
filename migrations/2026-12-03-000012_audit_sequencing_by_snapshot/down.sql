-- Back to the queue: entries the sequencer has not taken are queued again.
CREATE TABLE audit_queue (
  organization_id uuid NOT NULL,
  event_id        uuid NOT NULL,
  recorded_at     timestamptz NOT NULL,
  digest          bytea NOT NULL CHECK (length(digest) = 32)
);
CREATE INDEX audit_queue_order ON audit_queue (organization_id, recorded_at, event_id);
ALTER TABLE audit_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_queue USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, DELETE ON audit_queue TO custos_app;

INSERT INTO audit_queue (organization_id, event_id, recorded_at, digest)
SELECT e.organization_id, e.event_id,
       substring(e.fields FROM '(?:^|\n)recorded_at\t"([^"]+)"')::timestamptz, e.digest
  FROM audit_entries e LEFT JOIN audit_heads h ON h.organization_id = e.organization_id
 WHERE (e.xid, e.event_id) > (coalesce(h.sequenced_xid, 0),
                              coalesce(h.sequenced_event, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
    OR e.xid = ANY(h.pending_xids);

DROP FUNCTION custos_audit_counter();
DROP FUNCTION custos_audit_pending();
CREATE FUNCTION custos_audit_pending() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT DISTINCT organization_id FROM audit_queue
  UNION
  SELECT organization_id FROM audit_heads WHERE tree_size > checkpoint_size OR tree_size > indexed_size
$$;
REVOKE ALL ON FUNCTION custos_audit_pending() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_pending() TO custos_app;

DROP INDEX audit_entries_sequencing;
ALTER TABLE audit_entries DROP COLUMN xid, DROP COLUMN digest;
ALTER TABLE audit_heads DROP COLUMN sequenced_xid, DROP COLUMN sequenced_event, DROP COLUMN pending_xids;
