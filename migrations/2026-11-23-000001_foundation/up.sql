-- Foundation: organisations, users, API tokens, frameworks, requirements, and tenant isolation.
--
-- Tenancy is enforced twice: every query of the service filters by organisation, and row-level
-- security filters again. The service runs each request transaction as `custos_app` (SET LOCAL
-- ROLE), a role that is neither superuser nor BYPASSRLS, with the tenant in `custos.org_id`.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'custos_app') THEN
    CREATE ROLE custos_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
  END IF;
  -- The migrating user must be able to SET ROLE custos_app (superusers always can).
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
     AND NOT pg_has_role(current_user, 'custos_app', 'MEMBER') THEN
    EXECUTE format('GRANT custos_app TO %I', current_user);
  END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO custos_app;

-- The tenant of the current transaction, or NULL when none is set (then RLS shows nothing).
CREATE FUNCTION custos_current_org() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('custos.org_id', true), '')::uuid $$;

CREATE TABLE organizations (
  id          uuid PRIMARY KEY,
  slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  email           text NOT NULL CHECK (position('@' in email) > 1),
  display_name    text NOT NULL DEFAULT '',
  role            text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin', 'auditor')),
  is_active       boolean NOT NULL DEFAULT true,
  last_login_at   timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id)
);
CREATE UNIQUE INDEX users_org_email ON users (organization_id, lower(email));

CREATE TABLE api_tokens (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL,
  user_id         uuid NOT NULL,
  name            text NOT NULL DEFAULT '',
  -- The first characters of the token, shown in listings so a user can tell tokens apart.
  token_prefix    text NOT NULL,
  -- BLAKE3 of the whole token; the token itself is never stored.
  token_hash      bytea NOT NULL UNIQUE,
  created_at      timestamptz NOT NULL DEFAULT now(),
  last_used_at    timestamptz,
  expires_at      timestamptz,
  revoked_at      timestamptz,
  FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX api_tokens_user ON api_tokens (organization_id, user_id);

CREATE TABLE frameworks (
  id                  uuid PRIMARY KEY,
  organization_id     uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name                text NOT NULL,
  framework_type      text NOT NULL,
  version             text NOT NULL DEFAULT '',
  description         text NOT NULL DEFAULT '',
  applicable_regions  text[] NOT NULL DEFAULT '{}',
  industry_sectors    text[] NOT NULL DEFAULT '{}',
  is_active           boolean NOT NULL DEFAULT true,
  effective_date      date,
  review_date         date,
  catalog_key         text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  UNIQUE (organization_id, catalog_key)
);
CREATE INDEX frameworks_org_created ON frameworks (organization_id, created_at, id);

CREATE TABLE requirements (
  id                    uuid PRIMARY KEY,
  organization_id       uuid NOT NULL,
  framework_id          uuid NOT NULL,
  parent_id             uuid REFERENCES requirements(id) ON DELETE SET NULL,
  requirement_id        text NOT NULL,
  title                 text NOT NULL,
  description           text NOT NULL DEFAULT '',
  section               text NOT NULL DEFAULT '',
  requirement_type      text NOT NULL,
  priority              text NOT NULL,
  compliance_status     text NOT NULL DEFAULT 'NOT_ASSESSED',
  is_implemented        boolean NOT NULL DEFAULT false,
  assigned_to           uuid REFERENCES users(id) ON DELETE SET NULL,
  last_assessment_date  date,
  next_assessment_date  date,
  implementation_notes  text NOT NULL DEFAULT '',
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (organization_id, framework_id) REFERENCES frameworks (organization_id, id) ON DELETE CASCADE,
  UNIQUE (framework_id, requirement_id)
);
CREATE INDEX requirements_org_framework ON requirements (organization_id, framework_id, created_at, id);
CREATE INDEX requirements_org_created ON requirements (organization_id, created_at, id);
CREATE INDEX requirements_next_assessment ON requirements (organization_id, next_assessment_date);

-- Audit events, written in the same transaction as the change they record. The hash chain,
-- sequencing and Merkle commitments are layered on this table by the audit-chain migrations.
CREATE TABLE audit_events (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE RESTRICT,
  recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor           text NOT NULL,
  actor_detail    jsonb NOT NULL DEFAULT '{}',
  action          text NOT NULL,
  resource_type   text NOT NULL,
  resource_id     text NOT NULL,
  changes         jsonb NOT NULL DEFAULT '{}',
  request_id      text,
  client_addr     text
);
CREATE INDEX audit_events_org_time ON audit_events (organization_id, recorded_at, id);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['users', 'api_tokens', 'frameworks', 'requirements', 'audit_events'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
END
$$;
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations USING (id = custos_current_org())
  WITH CHECK (id = custos_current_org());

GRANT SELECT, INSERT, UPDATE, DELETE ON organizations, users, api_tokens, frameworks, requirements TO custos_app;
-- The audit trail is append-only for the service.
GRANT SELECT, INSERT ON audit_events TO custos_app;

-- Authentication has to find a token before it knows the tenant: this function (running as the
-- table owner, so past RLS) answers exactly that question and nothing more, and marks the token
-- used at most once a minute so a busy client does not turn every read into a write.
CREATE FUNCTION custos_authenticate_token(p_hash bytea)
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

-- Resolves an organisation's slug (JWT claims, CLI arguments) to its id before the tenant is set.
CREATE FUNCTION custos_organization_by_slug(p_slug text)
RETURNS TABLE (id uuid, slug text, name text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT o.id, o.slug, o.name FROM organizations o WHERE o.slug = p_slug $$;

REVOKE ALL ON FUNCTION custos_authenticate_token(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION custos_organization_by_slug(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_authenticate_token(bytea), custos_organization_by_slug(text), custos_current_org() TO custos_app;
