DROP TABLE requirement_mappings;
ALTER TABLE requirements DROP CONSTRAINT requirements_organization_id_id;
