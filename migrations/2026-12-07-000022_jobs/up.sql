-- Jobs and schedules: the platform's one mechanism for long and periodic work.
--
-- A job is a row. Runners (every `custos serve`, and `custos jobs run`) claim due jobs with
-- `FOR UPDATE SKIP LOCKED` and hold them under a lease they renew (the heartbeat); a job whose
-- lease lapsed (its runner died) is claimed again and resumes from the checkpoint its kind saved.
-- A step recorded in `job_steps` commits in the same transaction as the step's own changes, so
-- a resumed job never does a step twice. A schedule fires a job at most once per fire time: the
-- schedule row is locked while it fires, and `jobs_scheduled_once` refuses a second row for the
-- same schedule and time whatever the replicas' clocks say.
--
-- Tenancy: a job belongs to an organisation (RLS, like every tenant table) or, with no
-- organisation, to the platform. Runners and the scheduler work across organisations in the
-- *system scope* (`custos.scope = 'system'`, set only by `Db::begin_system`), which sees the rows
-- of these three tables (and the organisations' ids) and nothing of any tenant's data: a job's
-- work for an organisation runs in that organisation's tenant transaction.

CREATE FUNCTION custos_system_scope() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(current_setting('custos.scope', true), '') = 'system' $$;

CREATE TABLE jobs (
  id                  uuid PRIMARY KEY,
  organization_id     uuid REFERENCES organizations(id) ON DELETE CASCADE,
  kind                text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
  parameters          jsonb NOT NULL DEFAULT '{}',
  status              text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
  progress            double precision NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
  counters            jsonb NOT NULL DEFAULT '{}',
  -- What the job's kind saved to resume from; its format is the kind's own.
  checkpoint          jsonb,
  result              jsonb,
  attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts        integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
  -- How often a runner took the job over from one whose lease had lapsed.
  takeovers           integer NOT NULL DEFAULT 0,
  error               text,
  -- Not claimed before this time (a retry's backoff).
  run_after           timestamptz NOT NULL DEFAULT now(),
  runner              uuid,
  lease_expires_at    timestamptz,
  heartbeat_at        timestamptz,
  cancel_requested_at timestamptz,
  cancel_requested_by text,
  created_by          text NOT NULL,
  schedule_name       text,
  scheduled_for       timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  started_at          timestamptz,
  finished_at         timestamptz,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  CHECK ((schedule_name IS NULL) = (scheduled_for IS NULL))
);
CREATE UNIQUE INDEX jobs_scheduled_once
  ON jobs (coalesce(organization_id, '00000000-0000-0000-0000-000000000000'), schedule_name, scheduled_for)
  WHERE schedule_name IS NOT NULL;
-- What runners claim: due jobs, queued or interrupted; and the held ones whose lease lapsed.
CREATE INDEX jobs_claimable ON jobs (run_after, id) WHERE status IN ('queued', 'interrupted');
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
-- Lists: newest first, by organisation, with the equality filters.
CREATE INDEX jobs_org_created ON jobs (organization_id, created_at, id);
CREATE INDEX jobs_org_kind ON jobs (organization_id, kind, created_at, id);
CREATE INDEX jobs_org_status ON jobs (organization_id, status, created_at, id);

CREATE TABLE job_steps (
  job_id          uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  step            text NOT NULL CHECK (length(step) BETWEEN 1 AND 200),
  -- The scope the step ran in (a system job's step for one organisation runs in its scope).
  organization_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
  done_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, step)
);

CREATE TABLE job_schedules (
  id              uuid PRIMARY KEY,
  -- NULL: a platform schedule (a sweep across organisations), configured by the operator.
  organization_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
  name            text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  kind            text NOT NULL,
  cron            text NOT NULL,
  enabled         boolean NOT NULL DEFAULT true,
  -- Changed through the API: the environment's default no longer applies to it.
  customized      boolean NOT NULL DEFAULT false,
  next_run_at     timestamptz,
  last_run_at     timestamptz,
  last_job_id     uuid,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  updated_by      text
);
CREATE UNIQUE INDEX job_schedules_name
  ON job_schedules (coalesce(organization_id, '00000000-0000-0000-0000-000000000000'), name);
CREATE INDEX job_schedules_due ON job_schedules (next_run_at) WHERE enabled;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['jobs', 'job_steps', 'job_schedules'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I
                    USING (organization_id = custos_current_org() OR custos_system_scope())
                    WITH CHECK (organization_id = custos_current_org() OR custos_system_scope())', t);
  END LOOP;
END
$$;

-- The scheduler creates each organisation's schedules: the system scope may read which
-- organisations exist (ids and slugs; none of their data).
CREATE POLICY system_scope_reads ON organizations FOR SELECT USING (custos_system_scope());

GRANT SELECT, INSERT, UPDATE, DELETE ON jobs, job_steps, job_schedules TO custos_app;
GRANT EXECUTE ON FUNCTION custos_system_scope() TO custos_app;

-- An organisation's admins see the platform's own jobs as kind, status and times only: these
-- functions (past RLS) answer exactly that, newest first, and how many there are.
CREATE FUNCTION custos_system_jobs(p_id uuid, p_kind text, p_status text, p_offset bigint, p_limit integer)
RETURNS TABLE (id uuid, kind text, status text, created_at timestamptz, started_at timestamptz,
               finished_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT j.id, j.kind, j.status, j.created_at, j.started_at, j.finished_at
    FROM jobs j
   WHERE j.organization_id IS NULL
     AND (p_id IS NULL OR j.id = p_id)
     AND (p_kind IS NULL OR j.kind = p_kind)
     AND (p_status IS NULL OR j.status = p_status)
   ORDER BY j.created_at DESC, j.id DESC
  OFFSET greatest(p_offset, 0)
   LIMIT least(greatest(p_limit, 1), 101)
$$;
CREATE FUNCTION custos_system_jobs_count(p_kind text, p_status text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT count(*) FROM jobs j
   WHERE j.organization_id IS NULL
     AND (p_kind IS NULL OR j.kind = p_kind)
     AND (p_status IS NULL OR j.status = p_status)
$$;
REVOKE ALL ON FUNCTION custos_system_jobs(uuid, text, text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION custos_system_jobs_count(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_system_jobs(uuid, text, text, bigint, integer), custos_system_jobs_count(text, text) TO custos_app;
