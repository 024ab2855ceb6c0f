-- Back to the pre-release v1 layout (empty: v2 entries cannot be expressed in it).
DROP FUNCTION IF EXISTS custos_audit_withhold(uuid, bigint, text, text, text, bytea);
DROP FUNCTION IF EXISTS custos_audit_prune(uuid, bigint);
DROP FUNCTION IF EXISTS custos_audit_pending();
DROP TABLE IF EXISTS audit_index, audit_log, audit_queue, audit_entries;
ALTER TABLE audit_heads DROP COLUMN IF EXISTS indexed_size;

CREATE TABLE audit_queue (
  id uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE RESTRICT,
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor text NOT NULL, actor_detail jsonb NOT NULL DEFAULT '{}', action text NOT NULL,
  resource_type text NOT NULL, resource_id text NOT NULL, changes jsonb NOT NULL DEFAULT '{}',
  request_id text, client_addr text
);
CREATE INDEX audit_queue_org_time ON audit_queue (organization_id, recorded_at, id);
CREATE TABLE audit_log (
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE RESTRICT,
  seq bigint NOT NULL CHECK (seq >= 0), event_id uuid NOT NULL, recorded_at timestamptz NOT NULL,
  sequenced_at timestamptz NOT NULL DEFAULT clock_timestamp(), actor text NOT NULL, actor_detail jsonb NOT NULL,
  action text NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL, changes jsonb NOT NULL,
  request_id text, client_addr text, salt_seed bytea, salts jsonb, withheld jsonb,
  leaf_hash bytea NOT NULL, chain_hash bytea NOT NULL, PRIMARY KEY (organization_id, seq)
);
ALTER TABLE audit_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_queue USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
CREATE POLICY tenant_isolation ON audit_log USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION custos_audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION custos_audit_append_only();
GRANT SELECT, INSERT, DELETE ON audit_queue TO custos_app;
GRANT SELECT, INSERT ON audit_log TO custos_app;
CREATE FUNCTION custos_audit_pending() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT DISTINCT organization_id FROM audit_queue
  UNION
  SELECT organization_id FROM audit_heads WHERE tree_size > checkpoint_size
$$;
REVOKE ALL ON FUNCTION custos_audit_pending() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_pending() TO custos_app;
-- v1's prune and withhold functions are not restored: an older binary's retention and erasure
-- need them recreated from migrations 000002 and 000003.
