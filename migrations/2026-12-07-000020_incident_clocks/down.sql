ALTER TABLE incidents
    DROP COLUMN response_due_at,
    DROP COLUMN resolution_due_at,
    DROP COLUMN severity_changed_at;
