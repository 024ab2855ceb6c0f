ALTER TABLE secrets DROP COLUMN rotation_error, DROP COLUMN due_reported_at;
