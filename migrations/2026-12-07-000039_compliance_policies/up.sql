-- Policy-as-code (crates/retention, compliance_policies.rs; seed 004): YAML policy documents,
-- applied as immutable versions. An apply makes the retention policies the document names (marked
-- managed_by_policy) and the data residency configuration what the document says, and keeps that
-- effective configuration in the version, so a rollback restores it exactly.
CREATE TABLE compliance_policies (
  id                uuid PRIMARY KEY,
  organization_id   uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name              text NOT NULL,
  version_label     text NOT NULL,
  policy_type       text NOT NULL,
  description       text NOT NULL DEFAULT '',
  enforcement_level text NOT NULL CHECK (enforcement_level IN ('hard', 'soft')),
  enforcement_scope text NOT NULL,
  locked            boolean NOT NULL DEFAULT false,
  content           text NOT NULL,
  content_sha256    text NOT NULL,
  document          jsonb NOT NULL,
  applied_version   integer,
  applied_at        timestamptz,
  applied_by        text,
  created_by        text NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, name),
  UNIQUE (organization_id, id)
);
CREATE INDEX compliance_policies_org_created ON compliance_policies (organization_id, created_at, id);
ALTER TABLE compliance_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON compliance_policies USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON compliance_policies TO custos_app;

-- Every apply and rollback, never changed: the document it put in effect and the effective
-- configuration after it.
CREATE TABLE compliance_policy_versions (
  organization_id  uuid NOT NULL,
  policy_id        uuid NOT NULL,
  version          integer NOT NULL CHECK (version >= 1),
  action           text NOT NULL CHECK (action IN ('apply', 'rollback')),
  restored_version integer,
  content          text NOT NULL,
  content_sha256   text NOT NULL,
  document         jsonb NOT NULL,
  effective        jsonb NOT NULL,
  applied_by       text NOT NULL,
  applied_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (policy_id, version),
  FOREIGN KEY (organization_id, policy_id) REFERENCES compliance_policies (organization_id, id) ON DELETE CASCADE,
  CHECK ((action = 'rollback') = (restored_version IS NOT NULL))
);
ALTER TABLE compliance_policy_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON compliance_policy_versions USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT ON compliance_policy_versions TO custos_app;

-- A version is never changed; it goes only with its policy (a policy ever applied is never
-- deleted: the service refuses, so versions outlive nothing they record).
CREATE FUNCTION custos_policy_version_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'policy versions are immutable' USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER compliance_policy_versions_immutable BEFORE UPDATE ON compliance_policy_versions
  FOR EACH ROW EXECUTE FUNCTION custos_policy_version_immutable();

-- The retention policies a document manages: changed by hand, they break it.
ALTER TABLE retention_policies ADD COLUMN managed_by_policy uuid;
ALTER TABLE retention_policies ADD FOREIGN KEY (organization_id, managed_by_policy)
  REFERENCES compliance_policies (organization_id, id);

-- A policy's apply may remove the residency configuration an earlier version set (a rollback
-- to a version without one).
GRANT DELETE ON data_residency TO custos_app;
ALTER TABLE data_residency ADD FOREIGN KEY (organization_id, policy_id)
  REFERENCES compliance_policies (organization_id, id);
