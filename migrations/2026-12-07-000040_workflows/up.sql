-- Regulatory workflows (crates/workflows; seed 000): definitions as state machines, and their
-- instances with every step taken. An instance keeps the definition it was started from, so
-- changing a workflow never changes the rules of instances already running.
CREATE TABLE workflows (
  id                    uuid PRIMARY KEY,
  organization_id       uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description           text NOT NULL DEFAULT '',
  workflow_type         text NOT NULL CHECK (workflow_type IN ('BREACH_NOTIFICATION', 'CONTROL_TESTING', 'ACCESS_REVIEW',
                                                                'DATA_SUBJECT_REQUEST', 'AUDIT', 'RISK_ASSESSMENT',
                                                                'POLICY_REVIEW', 'CUSTOM')),
  status                text NOT NULL CHECK (status IN ('DRAFT', 'ACTIVE', 'RETIRED')),
  is_template           boolean NOT NULL DEFAULT false,
  applicable_frameworks uuid[] NOT NULL DEFAULT '{}',
  definition            jsonb NOT NULL,
  template_key          text,
  created_by            text NOT NULL,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, name),
  UNIQUE (organization_id, id),
  UNIQUE (organization_id, template_key)
);
CREATE INDEX workflows_org_created ON workflows (organization_id, created_at, id);
ALTER TABLE workflows ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON workflows USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON workflows TO custos_app;

CREATE TABLE workflow_instances (
  id               uuid PRIMARY KEY,
  organization_id  uuid NOT NULL,
  workflow_id      uuid NOT NULL,
  title            text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
  description      text NOT NULL DEFAULT '',
  related_incident uuid,
  assigned_to      uuid,
  due_date         timestamptz,
  status           text NOT NULL CHECK (status IN ('IN_PROGRESS', 'COMPLETED', 'CANCELLED')),
  current_step     text NOT NULL,
  -- The definition it was started from, and the deadlines known so far ({step: due_at}).
  definition       jsonb NOT NULL,
  deadlines        jsonb NOT NULL DEFAULT '{}',
  -- The earlier of the due date and the current step's deadline: what "overdue" compares.
  current_due_at   timestamptz,
  stakeholders     uuid[] NOT NULL DEFAULT '{}',
  step_data        jsonb NOT NULL DEFAULT '{}',
  started_at       timestamptz NOT NULL DEFAULT now(),
  completed_at     timestamptz,
  created_by       text NOT NULL,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  FOREIGN KEY (organization_id, workflow_id) REFERENCES workflows (organization_id, id),
  FOREIGN KEY (organization_id, related_incident) REFERENCES incidents (organization_id, id),
  CHECK ((status = 'COMPLETED') = (completed_at IS NOT NULL) OR status = 'CANCELLED')
);
CREATE INDEX workflow_instances_org_started ON workflow_instances (organization_id, started_at DESC, id DESC);
CREATE INDEX workflow_instances_due ON workflow_instances (organization_id, current_due_at) WHERE status = 'IN_PROGRESS';
ALTER TABLE workflow_instances ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON workflow_instances USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE ON workflow_instances TO custos_app;

-- Every step an instance took: append-only.
CREATE TABLE workflow_instance_history (
  organization_id uuid NOT NULL,
  instance_id     uuid NOT NULL,
  sequence        integer NOT NULL,
  from_step       text,
  to_step         text NOT NULL,
  actor           text NOT NULL,
  at              timestamptz NOT NULL DEFAULT now(),
  data            jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (instance_id, sequence),
  FOREIGN KEY (organization_id, instance_id) REFERENCES workflow_instances (organization_id, id)
);
ALTER TABLE workflow_instance_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON workflow_instance_history USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT ON workflow_instance_history TO custos_app;
