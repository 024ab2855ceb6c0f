-- Frameworks are versioned: seeding or importing a newer version of a catalogue framework keeps
-- the old one (its assessments and evidence links) beside it. A catalogue framework is keyed by
-- its key *and* version within an organisation.
ALTER TABLE frameworks DROP CONSTRAINT frameworks_organization_id_catalog_key_key;
ALTER TABLE frameworks ADD CONSTRAINT frameworks_organization_id_catalog_key_version_key
  UNIQUE (organization_id, catalog_key, version);
