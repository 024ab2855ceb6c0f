-- A token that exists but no longer authenticates (revoked, expired, user deactivated) names its
-- organisation, so the failed attempt can be recorded in that organisation's audit trail.
CREATE FUNCTION custos_token_owner(p_hash bytea)
RETURNS TABLE (token_id uuid, organization_id uuid, user_id uuid, email text, role text, problem text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT t.id, t.organization_id, u.id, u.email, u.role,
         CASE WHEN t.revoked_at IS NOT NULL THEN 'token revoked'
              WHEN t.expires_at IS NOT NULL AND t.expires_at <= now() THEN 'token expired'
              WHEN NOT u.is_active THEN 'user deactivated'
              ELSE 'unknown' END
    FROM api_tokens t JOIN users u ON u.id = t.user_id AND u.organization_id = t.organization_id
   WHERE t.token_hash = p_hash
$$;
REVOKE ALL ON FUNCTION custos_token_owner(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_token_owner(bytea) TO custos_app;
