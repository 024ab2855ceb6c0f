-- A status carried over from another framework's compliant requirement through a mapping
-- (`apply_mapping`) names that requirement; an assessment of the requirement itself clears it.
-- No foreign key: it records where the status came from, and stays if that requirement goes.
ALTER TABLE requirements ADD COLUMN status_derived_from uuid;
