-- Notification channels (crates/notify): where an organisation's events go — e-mail recipients
-- or a webhook, whose signing secret the server generates, shows once and keeps encrypted under
-- a vault data key of the channel's own. Every delivery (test sends included) is recorded.
CREATE TABLE notification_channels (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  kind            text NOT NULL CHECK (kind IN ('email', 'webhook')),
  recipients      text[] NOT NULL DEFAULT '{}',
  url             text,
  -- The event types the channel is subscribed to.
  event_types     text[] NOT NULL DEFAULT '{}',
  is_active       boolean NOT NULL DEFAULT true,
  data_key_id     uuid,
  signing_secret  bytea,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, name),
  UNIQUE (organization_id, id),
  FOREIGN KEY (organization_id, data_key_id) REFERENCES vault_data_keys (organization_id, id),
  CHECK ((kind = 'webhook') = (url IS NOT NULL AND signing_secret IS NOT NULL))
);

CREATE TABLE notification_deliveries (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL,
  channel_id      uuid NOT NULL,
  event_type      text NOT NULL,
  payload         jsonb NOT NULL,
  status          text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  last_error      text,
  delivered_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (organization_id, channel_id) REFERENCES notification_channels (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX notification_deliveries_channel ON notification_deliveries (organization_id, channel_id, created_at);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['notification_channels', 'notification_deliveries'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_channels, notification_deliveries TO custos_app;
