-- Imported frameworks keep the identifiers of the document they came from, so that later imports
-- of mappings (which name requirements by URN) and of newer versions find them: a framework
-- library's URNs, an OSCAL catalog's control ids. `attributes` holds what the source says beyond
-- Custos's own fields (OSCAL parts, params and props; a library's annotations and translations),
-- so that an export gives it back.
ALTER TABLE frameworks
  ADD COLUMN external_id text,
  ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
ALTER TABLE requirements
  ADD COLUMN external_id text,
  ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
CREATE INDEX frameworks_org_external_id ON frameworks (organization_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX requirements_org_external_id ON requirements (organization_id, external_id) WHERE external_id IS NOT NULL;

-- The built-in NIST CSF 2.0 and ISO/IEC 27001:2022 carry the identifiers framework libraries
-- give them (crates/frameworks/catalog/*.yaml: `external_id`, `requirement_external_id_prefix`);
-- frameworks seeded before this migration get them too.
UPDATE frameworks SET external_id = 'urn:intuitem:risk:framework:' || catalog_key
 WHERE catalog_key IN ('nist-csf-2.0', 'iso27001-2022') AND external_id IS NULL;
UPDATE requirements r SET external_id = 'urn:intuitem:risk:req_node:' || f.catalog_key || ':' || lower(r.requirement_id)
  FROM frameworks f
 WHERE f.id = r.framework_id AND f.catalog_key IN ('nist-csf-2.0', 'iso27001-2022') AND r.external_id IS NULL;

-- The evidence that counts for each requirement (as `requirement_evidence` counts it), one row
-- per item: what an OSCAL assessment-results export cites. A view, security invoker so RLS
-- applies, so that the frameworks crate reads a named view and not the evidence tables.
CREATE VIEW requirement_evidence_items WITH (security_invoker = true) AS
SELECT er.organization_id,
       er.requirement_id,
       e.id AS evidence_id,
       e.title,
       e.file_hash,
       e.collected_at
  FROM evidence_requirements er
  JOIN evidence e ON e.organization_id = er.organization_id AND e.id = er.evidence_id
 WHERE (e.valid_until IS NULL OR e.valid_until >= (now() AT TIME ZONE 'UTC')::date)
   AND e.status NOT IN ('COMPROMISED', 'DISPOSED');
GRANT SELECT ON requirement_evidence_items TO custos_app;
