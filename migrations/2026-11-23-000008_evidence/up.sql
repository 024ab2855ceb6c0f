-- Evidence, its chain of custody, and its links to compliance requirements.
--
-- Files live in the blob store (content-addressed by BLAKE3, never overwritten); a row holds
-- the object key and both digests. Custody records are append-only and hash-linked per item:
-- nobody may UPDATE them, and they disappear only with their evidence (cascade), never alone.

CREATE TABLE evidence (
  id                uuid PRIMARY KEY,
  organization_id   uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  incident_id       uuid,
  title             text NOT NULL,
  description       text NOT NULL DEFAULT '',
  notes             text NOT NULL DEFAULT '',
  evidence_type     text NOT NULL,
  status            text NOT NULL,
  source            text NOT NULL DEFAULT '',
  file_path         text,
  file_name         text,
  content_type      text,
  file_size         bigint CHECK (file_size >= 0),
  file_hash         text CHECK (file_hash ~ '^[0-9a-f]{64}$'),
  file_blake3       text CHECK (file_blake3 ~ '^[0-9a-f]{64}$'),
  collected_by      text NOT NULL,
  collected_at      timestamptz NOT NULL,
  valid_until       date,
  retention_period  integer CHECK (retention_period > 0),
  last_verified_at  timestamptz,
  disposed_at       timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  -- Incidents with evidence cannot be deleted out from under it.
  FOREIGN KEY (organization_id, incident_id) REFERENCES incidents (organization_id, id) ON DELETE RESTRICT,
  CHECK ((file_path IS NULL) = (file_hash IS NULL))
);
CREATE INDEX evidence_org_created ON evidence (organization_id, created_at, id);
CREATE INDEX evidence_org_incident ON evidence (organization_id, incident_id);
CREATE INDEX evidence_org_valid_until ON evidence (organization_id, valid_until) WHERE valid_until IS NOT NULL;
CREATE INDEX evidence_blob ON evidence (organization_id, file_path) WHERE file_path IS NOT NULL;

CREATE TABLE evidence_requirements (
  organization_id  uuid NOT NULL,
  evidence_id      uuid NOT NULL,
  requirement_id   uuid NOT NULL REFERENCES requirements(id) ON DELETE CASCADE,
  linked_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (evidence_id, requirement_id),
  FOREIGN KEY (organization_id, evidence_id) REFERENCES evidence (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX evidence_requirements_requirement ON evidence_requirements (organization_id, requirement_id);

CREATE TABLE custody_records (
  id               uuid NOT NULL UNIQUE,
  organization_id  uuid NOT NULL,
  evidence_id      uuid NOT NULL,
  -- 1-based position in the item's chain.
  seq              integer NOT NULL CHECK (seq >= 1),
  action           text NOT NULL,
  actor            text NOT NULL,
  actor_role       text NOT NULL,
  notes            text NOT NULL DEFAULT '',
  details          jsonb NOT NULL DEFAULT '{}',
  recorded_at      timestamptz NOT NULL,
  request_id       text,
  previous_hash    bytea NOT NULL CHECK (length(previous_hash) = 32),
  record_hash      bytea NOT NULL CHECK (length(record_hash) = 32),
  PRIMARY KEY (evidence_id, seq),
  FOREIGN KEY (organization_id, evidence_id) REFERENCES evidence (organization_id, id) ON DELETE CASCADE
);

CREATE FUNCTION custos_custody_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM evidence WHERE id = OLD.evidence_id) THEN
    RETURN OLD;  -- the evidence itself is being deleted (cascade)
  END IF;
  RAISE EXCEPTION 'custody records are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER custody_records_append_only BEFORE UPDATE OR DELETE ON custody_records
  FOR EACH ROW EXECUTE FUNCTION custos_custody_append_only();
CREATE TRIGGER custody_records_no_truncate BEFORE TRUNCATE ON custody_records
  FOR EACH STATEMENT EXECUTE FUNCTION custos_custody_append_only();

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['evidence', 'evidence_requirements', 'custody_records'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON evidence, evidence_requirements TO custos_app;
GRANT SELECT, INSERT ON custody_records TO custos_app;
