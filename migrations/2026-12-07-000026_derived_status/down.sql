ALTER TABLE requirements DROP COLUMN status_derived_from;
