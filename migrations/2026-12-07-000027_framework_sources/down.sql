DROP VIEW requirement_evidence_items;
DROP INDEX requirements_org_external_id;
DROP INDEX frameworks_org_external_id;
ALTER TABLE requirements DROP COLUMN attributes, DROP COLUMN external_id;
ALTER TABLE frameworks DROP COLUMN attributes, DROP COLUMN external_id;
