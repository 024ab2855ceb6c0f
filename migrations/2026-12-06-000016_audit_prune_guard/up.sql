-- Retention pruning checked by the database itself, not only by its caller: it removes only
-- entries that are indexed (the indexer has moved their contents out of `audit_entries`, and
-- their recording times are known) and were all recorded before a cutoff that is not in the
-- future. The cutoff is what the pruning's own audit entry records. This guards against a faulty
-- caller; the service role keeps the head (as the sequencer) and could feed it false inputs, which
-- is what verification and checkpoints held elsewhere are for.
DROP FUNCTION custos_audit_prune(uuid, bigint);

CREATE FUNCTION custos_audit_prune(p_org uuid, p_before bigint, p_cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  removed bigint;
  head audit_heads%ROWTYPE;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'pruning is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF p_cutoff IS NULL OR p_cutoff > clock_timestamp() THEN
    RAISE EXCEPTION 'prune cutoff % is in the future', p_cutoff USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO head FROM audit_heads WHERE organization_id = p_org FOR UPDATE;
  IF NOT FOUND OR p_before > head.indexed_size THEN
    RAISE EXCEPTION 'prune boundary % is beyond the indexed entries', p_before USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF EXISTS (SELECT 1 FROM audit_log WHERE organization_id = p_org AND first_seq < p_before
                AND first_seq + length(leaf_hashes) / 32 > p_before) THEN
    RAISE EXCEPTION 'prune boundary % is inside a run of the log', p_before USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF EXISTS (SELECT 1 FROM audit_index WHERE organization_id = p_org AND seq < p_before AND recorded_at >= p_cutoff) THEN
    RAISE EXCEPTION 'entries below % were recorded after the cutoff %', p_before, p_cutoff
      USING ERRCODE = 'invalid_parameter_value';
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

REVOKE ALL ON FUNCTION custos_audit_prune(uuid, bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_prune(uuid, bigint, timestamptz) TO custos_app;
