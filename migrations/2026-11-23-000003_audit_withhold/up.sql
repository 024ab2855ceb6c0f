-- Withholding a field of an audit entry (GDPR erasure, redacted exports): the value and its salt
-- are removed and the field's commitment kept, so the entry's leaf hash — and every proof and
-- checkpoint over it — stays valid. Only this function may change a sequenced entry, only for the
-- current organisation, and only in that way: the leaf and chain hashes are never touched.
CREATE FUNCTION custos_audit_withhold(
  p_org uuid, p_seq bigint, p_actor text, p_actor_detail jsonb, p_resource_id text, p_changes jsonb,
  p_request_id text, p_client_addr text, p_salts jsonb, p_withheld jsonb
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE changed bigint;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'withholding is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM set_config('custos.audit_maintenance', 'on', true);
  UPDATE audit_log
     SET actor = p_actor, actor_detail = p_actor_detail, resource_id = p_resource_id, changes = p_changes,
         request_id = p_request_id, client_addr = p_client_addr,
         salt_seed = NULL, salts = p_salts, withheld = p_withheld
   WHERE organization_id = p_org AND seq = p_seq;
  GET DIAGNOSTICS changed = ROW_COUNT;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  IF changed = 0 THEN
    RAISE EXCEPTION 'no audit entry % in this organisation', p_seq USING ERRCODE = 'no_data_found';
  END IF;
END
$$;
REVOKE ALL ON FUNCTION custos_audit_withhold(uuid, bigint, text, jsonb, text, jsonb, text, text, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_withhold(uuid, bigint, text, jsonb, text, jsonb, text, text, jsonb, jsonb) TO custos_app;
