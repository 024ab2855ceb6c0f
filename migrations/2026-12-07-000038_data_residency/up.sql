-- Data residency (crates/residency; seed 004): where an organisation's files may be stored. Regions
-- are the platform's blob stores named in CUSTOS_BLOB_STORES; with enforce_region, evidence and
-- archives are written only to allowed regions (refusals are 409s, each recorded below and in the
-- audit trail); without it, a write elsewhere is allowed and recorded as a violation.
CREATE TABLE data_residency (
  id                    uuid PRIMARY KEY,
  organization_id       uuid NOT NULL UNIQUE REFERENCES organizations(id) ON DELETE CASCADE,
  primary_region        text NOT NULL,
  allowed_regions       text[] NOT NULL CHECK (cardinality(allowed_regions) >= 1),
  storage_prefix        text,
  enforce_region        boolean NOT NULL DEFAULT true,
  block_cross_region    boolean NOT NULL DEFAULT false,
  compliance_frameworks text[] NOT NULL DEFAULT '{}',
  -- The policy document whose apply set this configuration, if one did.
  policy_id             uuid,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  CHECK (primary_region = ANY (allowed_regions))
);
ALTER TABLE data_residency ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON data_residency USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE ON data_residency TO custos_app;

-- Where an evidence item's file is stored: a region of CUSTOS_BLOB_STORES, NULL for the default store.
ALTER TABLE evidence ADD COLUMN storage_region text;

-- Operations checked against a rule (a residency setting, a policy document's rule) that broke it:
-- refused under hard enforcement (outcome 'blocked'), allowed and recorded under soft. Append-only.
CREATE TABLE policy_violations (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  policy_id       uuid,
  rule            text NOT NULL,
  enforcement     text NOT NULL CHECK (enforcement IN ('hard', 'soft')),
  outcome         text NOT NULL CHECK (outcome IN ('blocked', 'allowed')),
  operation       text NOT NULL,
  entity_type     text,
  entity_id       uuid,
  region          text,
  message         text NOT NULL,
  details         jsonb NOT NULL DEFAULT '{}',
  actor           text NOT NULL,
  request_id      text,
  occurred_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX policy_violations_org_time ON policy_violations (organization_id, occurred_at DESC, id DESC);
ALTER TABLE policy_violations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON policy_violations USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT ON policy_violations TO custos_app;
