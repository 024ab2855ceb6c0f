-- Identity administration (issue 28): users and API tokens managed over the API.
--
-- * `users.last_seen_at`: when the user last authenticated with an API token.
-- * `api_tokens.role`: the role a token is limited to (NULL: its user's role). A token acts with
--   the meet of its own role and its user's *current* role, so demoting a user demotes every one
--   of their tokens at once.
-- * Authentication marks the token used and the user seen at most once an HOUR each (it was once
--   a minute for tokens): a busy client must not turn reads into writes.

ALTER TABLE users ADD COLUMN last_seen_at timestamptz;
ALTER TABLE api_tokens ADD COLUMN role text CHECK (role IN ('viewer', 'editor', 'admin', 'auditor'));

-- The lists' orders and equality filters, organisation first.
CREATE INDEX users_org_email_order ON users (organization_id, email, id);
CREATE INDEX users_org_role ON users (organization_id, role);
CREATE INDEX api_tokens_org_created ON api_tokens (organization_id, created_at, id);

-- The greatest role within both `a` and `b` (NULL `a`: `b`). Roles are ordered by what they
-- grant: viewer below every role, editor and auditor each below admin, editor and auditor
-- incomparable (their meet is viewer). `custos_core::Role::meet` is the same in Rust.
CREATE FUNCTION custos_role_meet(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN a IS NULL THEN b
              WHEN a = b OR b = 'admin' THEN a
              WHEN a = 'admin' THEN b
              ELSE 'viewer' END
$$;

-- As before (migration 000001), but answering the token's effective role, and marking the token
-- used and its user seen at most once an hour.
CREATE OR REPLACE FUNCTION custos_authenticate_token(p_hash bytea)
RETURNS TABLE (token_id uuid, organization_id uuid, organization_slug text, user_id uuid, email text, role text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  RETURN QUERY
    SELECT t.id, o.id, o.slug, u.id, u.email, custos_role_meet(t.role, u.role)
      FROM api_tokens t
      JOIN users u ON u.id = t.user_id AND u.organization_id = t.organization_id
      JOIN organizations o ON o.id = t.organization_id
     WHERE t.token_hash = p_hash
       AND t.revoked_at IS NULL
       AND (t.expires_at IS NULL OR t.expires_at > now())
       AND u.is_active;
  IF FOUND THEN
    UPDATE api_tokens t SET last_used_at = now()
     WHERE t.token_hash = p_hash
       AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 hour');
    UPDATE users u SET last_seen_at = now()
      FROM api_tokens t
     WHERE t.token_hash = p_hash AND u.id = t.user_id AND u.organization_id = t.organization_id
       AND (u.last_seen_at IS NULL OR u.last_seen_at < now() - interval '1 hour');
  END IF;
END
$$;

-- As before (migration 000004), answering the token's effective role.
CREATE OR REPLACE FUNCTION custos_token_owner(p_hash bytea)
RETURNS TABLE (token_id uuid, organization_id uuid, user_id uuid, email text, role text, problem text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT t.id, t.organization_id, u.id, u.email, custos_role_meet(t.role, u.role),
         CASE WHEN t.revoked_at IS NOT NULL THEN 'token revoked'
              WHEN t.expires_at IS NOT NULL AND t.expires_at <= now() THEN 'token expired'
              WHEN NOT u.is_active THEN 'user deactivated'
              ELSE 'unknown' END
    FROM api_tokens t JOIN users u ON u.id = t.user_id AND u.organization_id = t.organization_id
   WHERE t.token_hash = p_hash
$$;
