REVOKE INSERT (organization_id, event_id, fields, salts, digest) ON audit_entries FROM custos_app;
GRANT INSERT ON audit_entries TO custos_app;
