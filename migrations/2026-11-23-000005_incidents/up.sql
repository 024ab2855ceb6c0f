-- Incidents: what evidence, legal holds and workflows link to. Response plans, vulnerabilities
-- and compliance checkpoints follow in their own migration.

CREATE TABLE incidents (
  id                   uuid PRIMARY KEY,
  organization_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  title                text NOT NULL,
  description          text NOT NULL DEFAULT '',
  severity             text NOT NULL,
  category             text NOT NULL,
  data_classification  text NOT NULL,
  status               text NOT NULL,
  occurred_at          timestamptz,
  detected_at          timestamptz,
  resolved_at          timestamptz,
  reported_by          text NOT NULL DEFAULT '',
  assigned_to          uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id)
);
CREATE INDEX incidents_org_created ON incidents (organization_id, created_at, id);
CREATE INDEX incidents_org_status ON incidents (organization_id, status);

ALTER TABLE incidents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON incidents USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON incidents TO custos_app;
