-- Cross-framework mappings ("test once, comply many"): a relation between two requirements of
-- one organisation, with a NIST OLIR set relation (`subset`: the source's scope lies within the
-- target's). Deleting either requirement deletes the mapping (the deleting transaction records
-- it in the audit trail).

-- A mapping names two requirements of its own organisation, by construction (composite keys).
ALTER TABLE requirements ADD CONSTRAINT requirements_organization_id_id UNIQUE (organization_id, id);

CREATE TABLE requirement_mappings (
  id                    uuid PRIMARY KEY,
  organization_id       uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  source_requirement_id uuid NOT NULL,
  target_requirement_id uuid NOT NULL,
  relationship          text NOT NULL CHECK (relationship IN ('equal', 'subset', 'superset', 'intersect')),
  rationale             text NOT NULL DEFAULT '',
  -- Where it came from: a mapping set's key (`nist-csf-2.0--iso27001-2022`), or `manual`.
  origin                text NOT NULL DEFAULT 'manual',
  created_at            timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (organization_id, source_requirement_id) REFERENCES requirements (organization_id, id) ON DELETE CASCADE,
  FOREIGN KEY (organization_id, target_requirement_id) REFERENCES requirements (organization_id, id) ON DELETE CASCADE,
  UNIQUE (organization_id, source_requirement_id, target_requirement_id),
  CHECK (source_requirement_id <> target_requirement_id)
);
CREATE INDEX requirement_mappings_target ON requirement_mappings (organization_id, target_requirement_id);

ALTER TABLE requirement_mappings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON requirement_mappings USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON requirement_mappings TO custos_app;
