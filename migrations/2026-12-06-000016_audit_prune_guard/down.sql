DROP FUNCTION custos_audit_prune(uuid, bigint, timestamptz);

-- Retention: removes an organisation's entries below `p_before`, which must start a run (the
-- caller has stored the chain hash and compact range at that boundary in audit_heads and signed a
-- checkpoint there). Stored subtrees and checkpoints are kept: they are what proves the rest.
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
  DELETE FROM audit_contents WHERE organization_id = p_org AND first_seq < p_before;
  DELETE FROM audit_index WHERE organization_id = p_org AND seq < p_before;
  DELETE FROM audit_log WHERE organization_id = p_org AND first_seq < p_before;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  RETURN removed;
END
$$;

REVOKE ALL ON FUNCTION custos_audit_prune(uuid, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_prune(uuid, bigint) TO custos_app;
