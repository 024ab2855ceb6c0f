DROP FUNCTION IF EXISTS custos_audit_prune(uuid, bigint);
DROP FUNCTION IF EXISTS custos_audit_pending();
DROP TABLE IF EXISTS audit_checkpoints, audit_tree_nodes, audit_heads, audit_log;
DROP FUNCTION IF EXISTS custos_audit_append_only();
REVOKE DELETE ON audit_queue FROM custos_app;
ALTER INDEX audit_queue_org_time RENAME TO audit_events_org_time;
ALTER TABLE audit_queue RENAME TO audit_events;
