-- Back to one row per entry: every run's contents return to `audit_entries` (as sequenced
-- entries: xid 0, no digest, like those sequenced before 000012), and the previous functions.
DO $$
BEGIN
  PERFORM set_config('custos.audit_maintenance', 'on', true);
END
$$;

INSERT INTO audit_entries (organization_id, event_id, fields, salts, xid, digest)
SELECT c.organization_id, encode(substring(r.event_ids FROM k * 16 + 1 FOR 16), 'hex')::uuid,
       c.fields[k + 1], c.salts[k + 1], 0, NULL
  FROM audit_contents c
  JOIN audit_log r ON r.organization_id = c.organization_id AND r.first_seq = c.first_seq
 CROSS JOIN generate_series(0, cardinality(c.fields) - 1) AS k
 WHERE c.fields[k + 1] IS NOT NULL AND c.salts[k + 1] IS NOT NULL;

DO $$
BEGIN
  PERFORM set_config('custos.audit_maintenance', 'off', true);
END
$$;

DROP FUNCTION custos_audit_dequeue(uuid, bigint, bigint);
DROP FUNCTION custos_audit_prune(uuid, bigint);
DROP FUNCTION custos_audit_withhold(uuid, bigint, text, text, text, bytea);
DROP TABLE audit_contents;
CREATE FUNCTION custos_audit_prune(p_org uuid, p_before bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE removed bigint;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'pruning is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF EXISTS (SELECT 1 FROM audit_log WHERE organization_id = p_org AND first_seq < p_before
                AND first_seq + length(leaf_hashes) / 32 > p_before) THEN
    RAISE EXCEPTION 'prune boundary % is inside a run of the log', p_before USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM set_config('custos.audit_maintenance', 'on', true);
  SELECT coalesce(sum(length(leaf_hashes) / 32), 0) INTO removed
    FROM audit_log WHERE organization_id = p_org AND first_seq < p_before;
  DELETE FROM audit_entries e
   USING (SELECT encode(substring(r.event_ids FROM k * 16 + 1 FOR 16), 'hex')::uuid AS id
            FROM audit_log r, generate_series(0, length(r.event_ids) / 16 - 1) AS k
           WHERE r.organization_id = p_org AND r.first_seq < p_before) d
   WHERE e.organization_id = p_org AND e.event_id = d.id;
  DELETE FROM audit_index WHERE organization_id = p_org AND seq < p_before;
  DELETE FROM audit_log WHERE organization_id = p_org AND first_seq < p_before;
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
  UPDATE audit_entries SET fields = p_fields, salts = p_salts
   WHERE organization_id = p_org AND event_id = custos_audit_event_id(p_org, p_seq);
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
