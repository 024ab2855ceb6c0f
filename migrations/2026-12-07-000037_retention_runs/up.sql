-- Retention runs (crates/retention): a run of one policy, previewed or executed as a job in
-- batches; each record it examined and acted on or skipped is an item (once per run: a rerun
-- after a crash never acts twice), with the reason for a skip.
--
-- Soft deletion hides incidents, evidence and vulnerabilities from every read path by the
-- row-level-security policy itself: a soft-deleted row is invisible unless the transaction is a
-- retention run's (custos.retention = 'on', set transaction-locally by the retention crate), so no
-- list, detail, summary, search or later export can show it by mistake.
ALTER TABLE incidents ADD COLUMN deleted_at timestamptz, ADD COLUMN deleted_by_run uuid;
ALTER TABLE evidence ADD COLUMN deleted_at timestamptz, ADD COLUMN deleted_by_run uuid;
ALTER TABLE vulnerabilities ADD COLUMN deleted_at timestamptz, ADD COLUMN deleted_by_run uuid;

CREATE FUNCTION custos_sees_deleted() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(current_setting('custos.retention', true), '') = 'on' $$;

ALTER POLICY tenant_isolation ON incidents
  USING (organization_id = custos_current_org() AND (deleted_at IS NULL OR custos_sees_deleted()))
  WITH CHECK (organization_id = custos_current_org());
ALTER POLICY tenant_isolation ON evidence
  USING (organization_id = custos_current_org() AND (deleted_at IS NULL OR custos_sees_deleted()))
  WITH CHECK (organization_id = custos_current_org());
ALTER POLICY tenant_isolation ON vulnerabilities
  USING (organization_id = custos_current_org() AND (deleted_at IS NULL OR custos_sees_deleted()))
  WITH CHECK (organization_id = custos_current_org());

CREATE TABLE retention_runs (
  id                  uuid PRIMARY KEY,
  organization_id     uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  -- The policy as it was when the run started (a run is a record; the policy may change later).
  policy_id           uuid NOT NULL,
  policy_name         text NOT NULL,
  entity_type         text NOT NULL,
  deletion_method     text NOT NULL,
  status              text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
  started_by          text NOT NULL,
  -- Started by an admin: a policy with legal_hold_override may then delete held records.
  by_admin            boolean NOT NULL DEFAULT false,
  job_id              uuid,
  started_at          timestamptz NOT NULL DEFAULT now(),
  finished_at         timestamptz,
  -- Counts so far; the last record done (records are taken in id order, so a resumed run
  -- carries on after it).
  examined            bigint NOT NULL DEFAULT 0,
  archived            bigint NOT NULL DEFAULT 0,
  soft_deleted        bigint NOT NULL DEFAULT 0,
  hard_deleted        bigint NOT NULL DEFAULT 0,
  skipped             bigint NOT NULL DEFAULT 0,
  restored            bigint NOT NULL DEFAULT 0,
  errors_encountered  bigint NOT NULL DEFAULT 0,
  error               text,
  last_record         uuid,
  UNIQUE (organization_id, id)
);
CREATE INDEX retention_runs_org_started ON retention_runs (organization_id, started_at DESC, id DESC);

CREATE TABLE retention_run_items (
  organization_id uuid NOT NULL,
  run_id          uuid NOT NULL,
  record_id       uuid NOT NULL,
  -- archived, soft_deleted, hard_deleted, skipped or failed; restored_at once a soft deletion
  -- is undone.
  action          text NOT NULL CHECK (action IN ('archived', 'soft_deleted', 'hard_deleted', 'skipped', 'failed')),
  reason          text NOT NULL DEFAULT '',
  at              timestamptz NOT NULL DEFAULT now(),
  restored_at     timestamptz,
  PRIMARY KEY (run_id, record_id),
  FOREIGN KEY (organization_id, run_id) REFERENCES retention_runs (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX retention_run_items_action ON retention_run_items (organization_id, run_id, action, record_id);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['retention_runs', 'retention_run_items'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON retention_runs, retention_run_items TO custos_app;
