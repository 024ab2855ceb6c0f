-- A document a large import runs on, as it was uploaded, until its job has imported it (the
-- job's step deletes it in the transaction that imports it). Kept out of the job's parameters:
-- those are in every audit entry of the job, and a document can be tens of megabytes.
CREATE TABLE framework_import_uploads (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  file_name       text NOT NULL,
  content         text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX framework_import_uploads_org ON framework_import_uploads (organization_id, created_at);

ALTER TABLE framework_import_uploads ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON framework_import_uploads USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, DELETE ON framework_import_uploads TO custos_app;
