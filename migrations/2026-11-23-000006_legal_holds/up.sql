-- Legal holds: preservation orders over incidents, evidence and custodian/subject identifiers.
--
-- A hold is a legal record: it is released, never deleted (the service role has no DELETE on
-- either table). Items stay listed after release, so what a hold preserved remains on record.

CREATE TABLE legal_holds (
  id               uuid PRIMARY KEY,
  organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  case_name        text NOT NULL,
  case_number      text NOT NULL DEFAULT '',
  description      text NOT NULL DEFAULT '',
  status           text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'RELEASED')),
  -- Custodian and data-subject identifiers (e-mail addresses, subject ids), trimmed and
  -- lower-cased, so DSR erasure can ask whether a person's data is preserved.
  custodians       text[] NOT NULL DEFAULT '{}',
  start_date       date NOT NULL,
  end_date         date,
  created_by       text NOT NULL,
  released_at      timestamptz,
  released_by      text,
  release_reason   text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  CHECK (end_date IS NULL OR end_date >= start_date),
  CHECK ((status = 'RELEASED') = (released_at IS NOT NULL))
);
CREATE INDEX legal_holds_org_created ON legal_holds (organization_id, created_at, id);
CREATE INDEX legal_holds_custodians ON legal_holds USING gin (custodians) WHERE status = 'ACTIVE';

CREATE TABLE legal_hold_items (
  organization_id  uuid NOT NULL,
  hold_id          uuid NOT NULL,
  resource_type    text NOT NULL CHECK (resource_type IN ('incident', 'evidence')),
  resource_id      uuid NOT NULL,
  added_at         timestamptz NOT NULL DEFAULT now(),
  added_by         text NOT NULL,
  PRIMARY KEY (hold_id, resource_type, resource_id),
  FOREIGN KEY (organization_id, hold_id) REFERENCES legal_holds (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX legal_hold_items_resource ON legal_hold_items (organization_id, resource_type, resource_id);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['legal_holds', 'legal_hold_items'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON legal_holds TO custos_app;
GRANT SELECT, INSERT ON legal_hold_items TO custos_app;
