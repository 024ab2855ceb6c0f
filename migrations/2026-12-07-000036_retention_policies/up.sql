-- Retention policies (crates/retention; seeds 000 and 004). A policy retains the records of one
-- platform entity for a period and, if it deletes (auto_archive / auto_delete), then deletes or
-- archives them. The precedence between policies (holds, longest retention, explicit scope,
-- shortest deletion) is in crates/retention/src/precedence.rs and docs/api/retention.md.
CREATE TABLE retention_policies (
  id                         uuid PRIMARY KEY,
  organization_id            uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name                       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description                text NOT NULL DEFAULT '',
  policy_type                text NOT NULL CHECK (policy_type IN ('INCIDENT_DATA', 'EVIDENCE', 'VULNERABILITY_DATA',
                                                                  'AUDIT_LOGS', 'JOB_RECORDS', 'CUSTOM')),
  entity_type                text NOT NULL CHECK (entity_type IN ('incident', 'evidence', 'vulnerability', 'audit_log', 'job')),
  retention_period           integer NOT NULL CHECK (retention_period >= 1),
  retention_unit             text NOT NULL CHECK (retention_unit IN ('DAYS', 'WEEKS', 'MONTHS', 'YEARS')),
  deletion_method            text NOT NULL CHECK (deletion_method IN ('soft', 'hard', 'archive')),
  auto_archive               boolean NOT NULL DEFAULT false,
  auto_delete                boolean NOT NULL DEFAULT false,
  data_classification_levels text[] NOT NULL DEFAULT '{}',
  incident_categories        text[] NOT NULL DEFAULT '{}',
  applicable_frameworks      uuid[] NOT NULL DEFAULT '{}',
  legal_hold_override        boolean NOT NULL DEFAULT false,
  is_active                  boolean NOT NULL DEFAULT true,
  -- A preservation lock: never lifted (the service refuses loosening; this refuses the rest).
  locked                     boolean NOT NULL DEFAULT false,
  locked_at                  timestamptz,
  locked_by                  text,
  created_at                 timestamptz NOT NULL DEFAULT now(),
  updated_at                 timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, name),
  UNIQUE (organization_id, id),
  CHECK (locked = (locked_at IS NOT NULL)),
  CHECK (NOT auto_archive OR deletion_method = 'archive')
);
CREATE INDEX retention_policies_org_entity ON retention_policies (organization_id, entity_type) WHERE is_active;
CREATE INDEX retention_policies_org_created ON retention_policies (organization_id, created_at, id);

-- A locked policy is never unlocked, deactivated or deleted: a backstop under the service's 409s.
CREATE FUNCTION custos_retention_policy_lock() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
  IF OLD.locked THEN
    IF TG_OP = 'DELETE' THEN
      RAISE EXCEPTION 'retention policy % is locked and cannot be deleted', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    ELSIF NOT NEW.locked OR NOT NEW.is_active THEN
      RAISE EXCEPTION 'retention policy % is locked and cannot be unlocked or deactivated', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER retention_policies_lock BEFORE UPDATE OR DELETE ON retention_policies
  FOR EACH ROW EXECUTE FUNCTION custos_retention_policy_lock();

ALTER TABLE retention_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON retention_policies USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON retention_policies TO custos_app;
