-- Score history (crates/frameworks, score_history.rs; seed 003's trends): a framework's
-- compliance summary taken daily by the `score-snapshot` schedule (once per framework and day)
-- and on demand by an admin. Snapshots are kept as taken.
CREATE TABLE framework_score_snapshots (
  id                                uuid PRIMARY KEY,
  organization_id                   uuid NOT NULL,
  framework_id                      uuid NOT NULL,
  taken_at                          timestamptz NOT NULL DEFAULT now(),
  day                               date NOT NULL,
  source                            text NOT NULL CHECK (source IN ('schedule', 'manual')),
  taken_by                          text NOT NULL,
  total_requirements                bigint NOT NULL,
  compliant                         bigint NOT NULL,
  partially_compliant               bigint NOT NULL,
  non_compliant                     bigint NOT NULL,
  not_assessed                      bigint NOT NULL,
  implemented                       bigint NOT NULL,
  overdue_assessments               bigint NOT NULL,
  compliance_percentage             double precision NOT NULL,
  covered_through_mappings          bigint NOT NULL,
  compliance_percentage_with_mapped double precision NOT NULL,
  FOREIGN KEY (organization_id, framework_id) REFERENCES frameworks (organization_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX framework_score_snapshots_daily ON framework_score_snapshots (framework_id, day) WHERE source = 'schedule';
CREATE INDEX framework_score_snapshots_series ON framework_score_snapshots (organization_id, framework_id, taken_at);
ALTER TABLE framework_score_snapshots ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON framework_score_snapshots USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT ON framework_score_snapshots TO custos_app;
-- A framework's deletion takes its history with it (the cascade).
GRANT DELETE ON framework_score_snapshots TO custos_app;
