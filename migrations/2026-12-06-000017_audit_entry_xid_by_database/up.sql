-- The sequencer takes entries by the id of the transaction that wrote them. That id is the
-- column's default, the writing transaction's own; the service role may no longer supply it, so a
-- writer cannot place an entry where the sequencer would take it twice or never (an id beyond
-- every snapshot). Column privileges cost nothing per insert, unlike a trigger.
REVOKE INSERT ON audit_entries FROM custos_app;
GRANT INSERT (organization_id, event_id, fields, salts, digest) ON audit_entries TO custos_app;
