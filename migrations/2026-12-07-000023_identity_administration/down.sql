-- The functions as migrations 000001 and 000004 left them.
CREATE OR REPLACE FUNCTION custos_token_owner(p_hash bytea)
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

CREATE OR REPLACE FUNCTION custos_authenticate_token(p_hash bytea)
RETURNS TABLE (token_id uuid, organization_id uuid, organization_slug text, user_id uuid, email text, role text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  RETURN QUERY
    SELECT t.id, o.id, o.slug, u.id, u.email, u.role
      FROM api_tokens t
      JOIN users u ON u.id = t.user_id AND u.organization_id = t.organization_id
      JOIN organizations o ON o.id = t.organization_id
     WHERE t.token_hash = p_hash
       AND t.revoked_at IS NULL
       AND (t.expires_at IS NULL OR t.expires_at > now())
       AND u.is_active;
  IF FOUND THEN
    UPDATE api_tokens SET last_used_at = now()
     WHERE token_hash = p_hash AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds');
  END IF;
END
$$;

DROP FUNCTION custos_role_meet(text, text);
DROP INDEX api_tokens_org_created, users_org_role, users_org_email_order;
ALTER TABLE api_tokens DROP COLUMN role;
ALTER TABLE users DROP COLUMN last_seen_at;
