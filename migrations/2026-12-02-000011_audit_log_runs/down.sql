-- Back to one row per entry.
CREATE TABLE audit_log_rows (
  organization_id uuid NOT NULL,
  seq             bigint NOT NULL CHECK (seq >= 0),
  event_id        uuid NOT NULL,
  sequenced_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  leaf_hash       bytea NOT NULL,
  chain_hash      bytea NOT NULL,
  PRIMARY KEY (organization_id, seq)
);
INSERT INTO audit_log_rows
SELECT r.organization_id, r.first_seq + k, encode(substring(r.event_ids FROM k * 16 + 1 FOR 16), 'hex')::uuid,
       r.sequenced_at, substring(r.leaf_hashes FROM k * 32 + 1 FOR 32), substring(r.chain_hashes FROM k * 32 + 1 FOR 32)
  FROM audit_log r, generate_series(0, length(r.leaf_hashes) / 32 - 1) AS k;

DROP FUNCTION custos_audit_withhold(uuid, bigint, text, text, text, bytea);
DROP FUNCTION custos_audit_prune(uuid, bigint);
DROP FUNCTION custos_audit_event_id(uuid, bigint);
DROP TABLE audit_log;
ALTER TABLE audit_log_rows RENAME TO audit_log;
ALTER TABLE audit_log RENAME CONSTRAINT audit_log_rows_pkey TO audit_log_pkey;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION custos_audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION custos_audit_append_only();
GRANT SELECT, INSERT ON audit_log TO custos_app;

-- Retention: removes an organisation's entries below `p_before` (the caller has stored the chain
-- hash and compact range at that boundary in audit_heads and signed a checkpoint there). Stored
-- subtrees and checkpoints are kept: they are what proves the rest.
CREATE FUNCTION custos_audit_prune(p_org uuid, p_before bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE removed bigint;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'pruning is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM set_config('custos.audit_maintenance', 'on', true);
  DELETE FROM audit_entries e USING audit_log l
   WHERE l.organization_id = p_org AND l.seq < p_before
     AND e.organization_id = p_org AND e.event_id = l.event_id;
  DELETE FROM audit_index WHERE organization_id = p_org AND seq < p_before;
  DELETE FROM audit_log WHERE organization_id = p_org AND seq < p_before;
  GET DIAGNOSTICS removed = ROW_COUNT;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  RETURN removed;
END
$$;

-- Withholding fields of a sequenced entry (GDPR erasure, redacted exports): the caller rewrites
-- the field lines with the withheld fields' commitments and explicit salts, and blanks index
-- columns that repeat a withheld value. Only this function may change an entry, only in the current
-- organisation, and never its id, time, action, resource type or any hash.
CREATE FUNCTION custos_audit_withhold(
  p_org uuid, p_seq bigint, p_actor text, p_resource_id text, p_fields text, p_salts bytea
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE changed bigint;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'withholding is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM set_config('custos.audit_maintenance', 'on', true);
  UPDATE audit_entries e SET fields = p_fields, salts = p_salts
    FROM audit_log l
   WHERE l.organization_id = p_org AND l.seq = p_seq AND e.organization_id = p_org AND e.event_id = l.event_id;
  GET DIAGNOSTICS changed = ROW_COUNT;
  UPDATE audit_index SET actor = p_actor, resource_id = p_resource_id
   WHERE organization_id = p_org AND seq = p_seq;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  IF changed = 0 THEN
    RAISE EXCEPTION 'no audit entry % in this organisation', p_seq USING ERRCODE = 'no_data_found';
  END IF;
END
$$;

REVOKE ALL ON FUNCTION custos_audit_prune(uuid, bigint),
  custos_audit_withhold(uuid, bigint, text, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_prune(uuid, bigint),
  custos_audit_withhold(uuid, bigint, text, text, text, bytea) TO custos_app;
