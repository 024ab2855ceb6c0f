-- Verification runs: each verification of an organisation's audit log, how far it has got and
-- what it found.
--
-- A run saves its progress as it goes: the next sequence number, what it has checked, and the
-- verifier's state at that point (chain hash and compact range), authenticated with a key
-- derived from the checkpoint signing key, so that a forged state is refused. A run stopped by a
-- crash or a dropped connection resumes from there instead of starting over.
-- The runner that holds a run refreshes `heartbeat_at`; another may take the run over only once
-- that lease has lapsed, and `runner` tells a stale runner that it lost the run.
--
-- These rows are operational state, not evidence: a run's start, resumptions and result are
-- also recorded in the audit chain itself.

CREATE TABLE audit_verifications (
  id                   uuid PRIMARY KEY,
  organization_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  requested_by         text NOT NULL,
  depth                text NOT NULL CHECK (depth IN ('content', 'structure')),
  days                 integer CHECK (days >= 0),
  status               text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'passed', 'failed')),
  first_seq            bigint NOT NULL CHECK (first_seq >= 0),
  -- The head's size when the run last started or resumed: what it verifies up to.
  tree_size            bigint NOT NULL CHECK (tree_size >= 0),
  next_seq             bigint NOT NULL CHECK (next_seq >= first_seq),
  entries_checked      bigint NOT NULL DEFAULT 0 CHECK (entries_checked >= 0),
  checkpoints_checked  bigint NOT NULL DEFAULT 0 CHECK (checkpoints_checked >= 0),
  resume_state         bytea,
  runner               uuid NOT NULL,
  resumes              integer NOT NULL DEFAULT 0,
  first_bad_seq        bigint,
  problem              text,
  notes                text[] NOT NULL DEFAULT '{}',
  started_at           timestamptz NOT NULL DEFAULT now(),
  heartbeat_at         timestamptz NOT NULL DEFAULT now(),
  finished_at          timestamptz,
  CHECK ((status = 'running') = (finished_at IS NULL)),
  CHECK ((status = 'failed') = (problem IS NOT NULL))
);
CREATE INDEX audit_verifications_org_started ON audit_verifications (organization_id, started_at DESC, id DESC);

ALTER TABLE audit_verifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_verifications USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE ON audit_verifications TO custos_app;
