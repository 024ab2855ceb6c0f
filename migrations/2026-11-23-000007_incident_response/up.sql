-- Incident response: response plans, vulnerabilities with remediation SLAs and compliance
-- checkpoints (seed 003), and the incident columns the response SLA needs.
--
-- References stay inside the tenant by construction: every foreign key is composite
-- (organization_id, id). People and frameworks may go away (the reference is cleared); an incident
-- a vulnerability is linked to may not (ON DELETE RESTRICT: the API answers 409).

-- When the incident was first taken up (its status first left OPEN): measured against the
-- response SLA.
ALTER TABLE incidents ADD COLUMN responded_at timestamptz;
CREATE INDEX incidents_org_detected ON incidents (organization_id, detected_at);

CREATE TABLE incident_response_plans (
  id                        uuid PRIMARY KEY,
  organization_id           uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name                      text NOT NULL,
  incident_type             text NOT NULL,
  severity                  text NOT NULL,
  detection_procedures      text NOT NULL DEFAULT '',
  initial_response          text NOT NULL DEFAULT '',
  escalation_path           text NOT NULL DEFAULT '',
  investigation_procedures  text NOT NULL DEFAULT '',
  recovery_procedures       text NOT NULL DEFAULT '',
  primary_contact           uuid,
  is_active                 boolean NOT NULL DEFAULT true,
  review_date               date,
  version                   text NOT NULL DEFAULT '1.0',
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  FOREIGN KEY (organization_id, primary_contact) REFERENCES users (organization_id, id)
    ON DELETE SET NULL (primary_contact)
);
CREATE INDEX incident_response_plans_org_name ON incident_response_plans (organization_id, name, id);
CREATE INDEX incident_response_plans_org_type ON incident_response_plans (organization_id, incident_type, severity);

CREATE TABLE vulnerabilities (
  id               uuid PRIMARY KEY,
  organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  title            text NOT NULL,
  description      text NOT NULL DEFAULT '',
  severity         text NOT NULL,
  status           text NOT NULL,
  cve_id           text,
  cvss_score       double precision CHECK (cvss_score IS NULL OR (cvss_score >= 0 AND cvss_score <= 10)),
  affected_asset   text NOT NULL DEFAULT '',
  discovered_at    timestamptz NOT NULL,
  -- The remediation SLA in force when severity or discovered_at last changed, and the deadline
  -- it gives (discovered_at + sla_days): stored so that overdue/due filters run in SQL.
  sla_days         integer NOT NULL CHECK (sla_days > 0),
  due_at           timestamptz NOT NULL,
  remediated_at    timestamptz,
  incident_id      uuid,
  assigned_to      uuid,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  FOREIGN KEY (organization_id, incident_id) REFERENCES incidents (organization_id, id) ON DELETE RESTRICT,
  FOREIGN KEY (organization_id, assigned_to) REFERENCES users (organization_id, id)
    ON DELETE SET NULL (assigned_to)
);
CREATE INDEX vulnerabilities_org_created ON vulnerabilities (organization_id, created_at, id);
CREATE INDEX vulnerabilities_org_status_due ON vulnerabilities (organization_id, status, due_at);
CREATE INDEX vulnerabilities_org_incident ON vulnerabilities (organization_id, incident_id)
  WHERE incident_id IS NOT NULL;

CREATE TABLE compliance_checkpoints (
  id               uuid PRIMARY KEY,
  organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name             text NOT NULL,
  description      text NOT NULL DEFAULT '',
  framework_id     uuid,
  status           text NOT NULL,
  scheduled_date   date,
  due_date         date,
  completed_date   date,
  owner            uuid,
  notes            text NOT NULL DEFAULT '',
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  FOREIGN KEY (organization_id, framework_id) REFERENCES frameworks (organization_id, id)
    ON DELETE SET NULL (framework_id),
  FOREIGN KEY (organization_id, owner) REFERENCES users (organization_id, id) ON DELETE SET NULL (owner)
);
CREATE INDEX compliance_checkpoints_org_due ON compliance_checkpoints (organization_id, due_date, id);
CREATE INDEX compliance_checkpoints_org_status ON compliance_checkpoints (organization_id, status);
CREATE INDEX compliance_checkpoints_org_framework ON compliance_checkpoints (organization_id, framework_id)
  WHERE framework_id IS NOT NULL;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['incident_response_plans', 'vulnerabilities', 'compliance_checkpoints'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO custos_app', t);
  END LOOP;
END
$$;
