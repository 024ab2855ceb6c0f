-- Events about a moment that is found rather than caused — a deadline passing (an incident's or
-- vulnerability's SLA, a requirement's assessment date) — are looked for by periodic checks that
-- see the same moment again on every run. `custos_db::outbox::emit_once` names the moment by a
-- key (e.g. `incident:<id>:response:<deadline>`), and this index keeps one event per key.
ALTER TABLE notification_outbox ADD COLUMN once_key text;
CREATE UNIQUE INDEX notification_outbox_once ON notification_outbox (organization_id, event_type, once_key)
  WHERE once_key IS NOT NULL;
