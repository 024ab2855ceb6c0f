-- Automated secret rotation (the daily `secret-rotation` schedule): when a due secret was last
-- reported to its owner (once per due period), and why its last automated rotation failed.
ALTER TABLE secrets
  ADD COLUMN due_reported_at timestamptz,
  ADD COLUMN rotation_error text;
