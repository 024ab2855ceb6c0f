-- An incident's SLA deadlines are fixed when they start, as a vulnerability's already are:
-- raising the severity starts the new severity's clocks at the escalation time, lowering it keeps
-- the deadlines running, and a later change of the configured SLAs no longer moves deadlines of
-- incidents already reported. NULL (rows written before this migration) means "computed from
-- the detection time and the configured SLAs", as before; the next update stores them.
ALTER TABLE incidents
    ADD COLUMN response_due_at timestamptz,
    ADD COLUMN resolution_due_at timestamptz,
    ADD COLUMN severity_changed_at timestamptz;
