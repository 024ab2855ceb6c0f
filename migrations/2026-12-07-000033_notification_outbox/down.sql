DROP INDEX notification_deliveries_due;
DROP INDEX notification_deliveries_once;
ALTER TABLE notification_deliveries DROP COLUMN next_attempt_at, DROP COLUMN event_id;
DROP TABLE notification_outbox;
