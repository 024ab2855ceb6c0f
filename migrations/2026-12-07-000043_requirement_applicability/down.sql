ALTER TABLE requirements DROP CONSTRAINT requirements_exclusion_justified,
  DROP COLUMN applicability_justification, DROP COLUMN is_applicable;
