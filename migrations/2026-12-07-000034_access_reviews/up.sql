-- Access reviews (seed 004, crates/identity): a review collects findings about who can reach the
-- organisation — users and API tokens unused for a period, admins no recent review confirmed,
-- tokens of deactivated users, tokens that never expire —; an admin decides each finding
-- (revoked: the access is taken away at once; retained: with a justification) and signs the
-- review off. A signed-off review and its findings never change again: the report signed (its
-- exact bytes and their SHA-256) is kept with it.

-- Findings name the token they are about within its organisation.
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_org_id UNIQUE (organization_id, id);

CREATE TABLE access_reviews (
  id               uuid PRIMARY KEY,
  organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  -- running: the job is collecting findings; in_review: findings to decide; signed_off; failed:
  -- its job failed or was cancelled (recorded when the next review starts; reads show it as
  -- soon as the job has ended).
  status           text NOT NULL CHECK (status IN ('running', 'in_review', 'signed_off', 'failed')),
  stale_after_days integer NOT NULL CHECK (stale_after_days BETWEEN 1 AND 3650),
  started_by       text NOT NULL,
  started_at       timestamptz NOT NULL DEFAULT now(),
  -- The job collecting the findings (absent once the jobs' own retention removed it).
  job_id           uuid,
  collected_at     timestamptz,
  signed_off_by    text,
  signed_off_at    timestamptz,
  sign_off_comment text,
  -- The report as signed (JSON text, kept byte for byte) and its SHA-256 (hex).
  report           text,
  report_sha256    text,
  UNIQUE (organization_id, id),
  CHECK ((status = 'signed_off') = (signed_off_at IS NOT NULL AND report IS NOT NULL AND report_sha256 IS NOT NULL)),
  CHECK ((status IN ('in_review', 'signed_off')) = (collected_at IS NOT NULL))
);
CREATE INDEX access_reviews_org_started ON access_reviews (organization_id, started_at DESC, id DESC);
-- One review collecting at a time per organisation.
CREATE UNIQUE INDEX access_reviews_one_running ON access_reviews (organization_id) WHERE status = 'running';

CREATE TABLE stale_access_findings (
  id               uuid PRIMARY KEY,
  organization_id  uuid NOT NULL,
  review_id        uuid NOT NULL,
  kind             text NOT NULL CHECK (kind IN ('user_unused', 'token_unused', 'admin_unreviewed',
                                                 'token_of_inactive_user', 'token_without_expiry')),
  user_id          uuid NOT NULL,
  token_id         uuid,
  -- The user's role and e-mail address when found (the report shows what was reviewed).
  user_email       text NOT NULL,
  user_role        text NOT NULL,
  token_prefix     text,
  token_name       text,
  -- The activity the finding was judged by (NULL: never active).
  last_activity_at timestamptz,
  reason           text NOT NULL,
  status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'revoked', 'retained')),
  -- revoked: what was done (token_revoked, user_deactivated, user_demoted, already_revoked, …).
  action           text,
  justification    text,
  resolved_by      text,
  resolved_at      timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (organization_id, review_id) REFERENCES access_reviews (organization_id, id) ON DELETE CASCADE,
  FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE,
  FOREIGN KEY (organization_id, token_id) REFERENCES api_tokens (organization_id, id) ON DELETE CASCADE,
  UNIQUE NULLS NOT DISTINCT (review_id, kind, user_id, token_id),
  CHECK ((kind IN ('user_unused', 'admin_unreviewed')) = (token_id IS NULL)),
  CHECK ((status = 'open') = (resolved_at IS NULL)),
  CHECK (status <> 'retained' OR length(btrim(justification)) > 0)
);
CREATE INDEX stale_access_findings_review ON stale_access_findings (organization_id, review_id, created_at, id);
CREATE INDEX stale_access_findings_org ON stale_access_findings (organization_id, created_at, id);
CREATE INDEX stale_access_findings_user ON stale_access_findings (organization_id, user_id);

-- A signed-off review, and every finding of one, is immutable: a backstop under the service's
-- own checks (which answer 409), for everyone but a superuser disabling triggers.
CREATE FUNCTION custos_access_review_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
  IF TG_TABLE_NAME = 'access_reviews' THEN
    IF OLD.status = 'signed_off' THEN
      RAISE EXCEPTION 'access review % is signed off and cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  ELSIF EXISTS (SELECT 1 FROM access_reviews r WHERE r.id = OLD.review_id AND r.status = 'signed_off') THEN
    RAISE EXCEPTION 'finding % belongs to a signed-off access review and cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER access_reviews_immutable BEFORE UPDATE OR DELETE ON access_reviews
  FOR EACH ROW EXECUTE FUNCTION custos_access_review_immutable();
CREATE TRIGGER stale_access_findings_immutable BEFORE UPDATE OR DELETE ON stale_access_findings
  FOR EACH ROW EXECUTE FUNCTION custos_access_review_immutable();

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['access_reviews', 'stale_access_findings'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
END
$$;
-- No DELETE: reviews are records.
GRANT SELECT, INSERT, UPDATE ON access_reviews, stale_access_findings TO custos_app;
