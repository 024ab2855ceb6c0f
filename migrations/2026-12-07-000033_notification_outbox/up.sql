-- The notification outbox: an event is written here in the transaction of the change it is about
-- (`custos_db::outbox::emit`), so it exists exactly when the change does; the `notify.deliver`
-- job turns each into a delivery per subscribed channel and sends them, with retries.
CREATE TABLE notification_outbox (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  event_type      text NOT NULL,
  payload         jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  dispatched_at   timestamptz
);
CREATE INDEX notification_outbox_pending ON notification_outbox (organization_id, created_at) WHERE dispatched_at IS NULL;
ALTER TABLE notification_outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notification_outbox USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE ON notification_outbox TO custos_app;

ALTER TABLE notification_deliveries
  ADD COLUMN event_id uuid REFERENCES notification_outbox(id) ON DELETE CASCADE,
  ADD COLUMN next_attempt_at timestamptz;
CREATE UNIQUE INDEX notification_deliveries_once ON notification_deliveries (event_id, channel_id) WHERE event_id IS NOT NULL;
CREATE INDEX notification_deliveries_due ON notification_deliveries (organization_id, next_attempt_at) WHERE status = 'pending';
