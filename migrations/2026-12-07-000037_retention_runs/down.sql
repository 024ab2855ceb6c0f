DROP TABLE retention_run_items;
DROP TABLE retention_runs;
ALTER POLICY tenant_isolation ON incidents USING (organization_id = custos_current_org()) WITH CHECK (organization_id = custos_current_org());
ALTER POLICY tenant_isolation ON evidence USING (organization_id = custos_current_org()) WITH CHECK (organization_id = custos_current_org());
ALTER POLICY tenant_isolation ON vulnerabilities USING (organization_id = custos_current_org()) WITH CHECK (organization_id = custos_current_org());
DROP FUNCTION custos_sees_deleted();
ALTER TABLE incidents DROP COLUMN deleted_at, DROP COLUMN deleted_by_run;
ALTER TABLE evidence DROP COLUMN deleted_at, DROP COLUMN deleted_by_run;
ALTER TABLE vulnerabilities DROP COLUMN deleted_at, DROP COLUMN deleted_by_run;
