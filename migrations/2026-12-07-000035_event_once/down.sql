DROP INDEX notification_outbox_once;
ALTER TABLE notification_outbox DROP COLUMN once_key;
