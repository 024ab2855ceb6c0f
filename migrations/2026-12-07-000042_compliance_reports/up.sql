-- Compliance reports (crates/reports; seeds 000 and 003): generated content frozen as the exact
-- JSON text generated, and sign-offs naming the SHA-256 of the content decided on. Approved and
-- published content never changes (the service refuses; a trigger refuses the rest).
CREATE TABLE compliance_reports (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL,
  title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
  description     text NOT NULL DEFAULT '',
  summary         text NOT NULL DEFAULT '',
  report_type     text NOT NULL CHECK (report_type IN ('ASSESSMENT', 'GAP_ANALYSIS', 'AUDIT', 'EXECUTIVE_SUMMARY',
                                                        'STATEMENT_OF_APPLICABILITY')),
  status          text NOT NULL CHECK (status IN ('DRAFT', 'IN_REVIEW', 'APPROVED', 'PUBLISHED')),
  framework_id    uuid,
  prepared_by     text NOT NULL,
  content         text,
  content_sha256  text,
  generated_at    timestamptz,
  job_id          uuid,
  published_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  FOREIGN KEY (organization_id, framework_id) REFERENCES frameworks (organization_id, id),
  CHECK ((content IS NULL) = (content_sha256 IS NULL))
);
CREATE INDEX compliance_reports_org_created ON compliance_reports (organization_id, created_at DESC, id DESC);
ALTER TABLE compliance_reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON compliance_reports USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON compliance_reports TO custos_app;

CREATE FUNCTION custos_report_frozen() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
  IF OLD.status IN ('APPROVED', 'PUBLISHED') THEN
    IF TG_OP = 'DELETE' OR NEW.content IS DISTINCT FROM OLD.content OR NEW.title <> OLD.title
       OR NEW.report_type <> OLD.report_type OR NEW.framework_id IS DISTINCT FROM OLD.framework_id THEN
      RAISE EXCEPTION 'report % is approved: its content is frozen', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER compliance_reports_frozen BEFORE UPDATE OR DELETE ON compliance_reports
  FOR EACH ROW EXECUTE FUNCTION custos_report_frozen();

CREATE TABLE report_sign_offs (
  organization_id uuid NOT NULL,
  report_id       uuid NOT NULL,
  sequence        integer NOT NULL,
  decision        text NOT NULL CHECK (decision IN ('APPROVED', 'REJECTED')),
  comment         text NOT NULL DEFAULT '',
  signer          text NOT NULL,
  signed_at       timestamptz NOT NULL DEFAULT now(),
  content_sha256  text NOT NULL,
  PRIMARY KEY (report_id, sequence),
  FOREIGN KEY (organization_id, report_id) REFERENCES compliance_reports (organization_id, id) ON DELETE CASCADE
);
ALTER TABLE report_sign_offs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON report_sign_offs USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, DELETE ON report_sign_offs TO custos_app;
