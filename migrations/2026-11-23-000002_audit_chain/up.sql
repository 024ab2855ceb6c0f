-- The tamper-evident audit chain.
--
-- Writers insert into `audit_queue` in the transaction of the change (no shared row is touched, so
-- writers never serialise). The sequencer drains the queue per organisation into `audit_log`,
-- assigning sequence numbers, leaf and chain hashes, maintains the Merkle tree's compact range in
-- `audit_heads` and its stored subtrees (every 8th level) in `audit_tree_nodes`, and signs
-- checkpoints into `audit_checkpoints`. The log, the nodes and the checkpoints are append-only:
-- the service role may only SELECT and INSERT them, and a trigger refuses UPDATE, DELETE and
-- TRUNCATE for everyone except the maintenance functions below (retention pruning).

ALTER TABLE audit_events RENAME TO audit_queue;
ALTER INDEX audit_events_org_time RENAME TO audit_queue_org_time;
GRANT DELETE ON audit_queue TO custos_app;

CREATE TABLE audit_log (
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE RESTRICT,
  seq             bigint NOT NULL CHECK (seq >= 0),
  event_id        uuid NOT NULL,
  recorded_at     timestamptz NOT NULL,
  sequenced_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor           text NOT NULL,
  actor_detail    jsonb NOT NULL,
  action          text NOT NULL,
  resource_type   text NOT NULL,
  resource_id     text NOT NULL,
  changes         jsonb NOT NULL,
  request_id      text,
  client_addr     text,
  -- Per-entry seed of the field salts; NULL once a field was withheld (then `salts` holds them).
  salt_seed       bytea,
  salts           jsonb,
  -- Withheld fields: name → hex commitment.
  withheld        jsonb,
  leaf_hash       bytea NOT NULL,
  chain_hash      bytea NOT NULL,
  PRIMARY KEY (organization_id, seq)
);
CREATE INDEX audit_log_org_time ON audit_log (organization_id, recorded_at);
CREATE INDEX audit_log_org_actor ON audit_log (organization_id, actor, seq);
CREATE INDEX audit_log_org_action ON audit_log (organization_id, action, seq);
CREATE INDEX audit_log_org_resource ON audit_log (organization_id, resource_type, resource_id, seq);

CREATE TABLE audit_heads (
  organization_id   uuid PRIMARY KEY REFERENCES organizations(id) ON DELETE RESTRICT,
  tree_size         bigint NOT NULL DEFAULT 0,
  chain_hash        bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
  frontier          bytea NOT NULL DEFAULT '',
  checkpoint_size   bigint NOT NULL DEFAULT 0,
  checkpoint_at     timestamptz,
  -- Retention: entries below `pruned_before` were pruned; the chain hash and compact range at that
  -- boundary let everything after it still be verified and proven.
  pruned_before     bigint NOT NULL DEFAULT 0,
  prune_chain_hash  bytea,
  prune_frontier    bytea,
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_tree_nodes (
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE RESTRICT,
  level           smallint NOT NULL CHECK (level > 0),
  idx             bigint NOT NULL CHECK (idx >= 0),
  hash            bytea NOT NULL,
  PRIMARY KEY (organization_id, level, idx)
);

CREATE TABLE audit_checkpoints (
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE RESTRICT,
  tree_size       bigint NOT NULL,
  root_hash       bytea NOT NULL,
  note            text NOT NULL,
  key_name        text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (organization_id, tree_size)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit_log', 'audit_heads', 'audit_tree_nodes', 'audit_checkpoints'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
END
$$;

GRANT SELECT, INSERT ON audit_log, audit_tree_nodes, audit_checkpoints TO custos_app;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO custos_app;

CREATE FUNCTION custos_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('custos.audit_maintenance', true) = 'on' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit_log', 'audit_tree_nodes', 'audit_checkpoints'] LOOP
    EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %I
                    FOR EACH ROW EXECUTE FUNCTION custos_audit_append_only()', t);
    EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %I
                    FOR EACH STATEMENT EXECUTE FUNCTION custos_audit_append_only()', t);
  END LOOP;
END
$$;

-- Organisations with work for the sequencer: queued entries, or entries not yet in a checkpoint.
CREATE FUNCTION custos_audit_pending() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT DISTINCT organization_id FROM audit_queue
  UNION
  SELECT organization_id FROM audit_heads WHERE tree_size > checkpoint_size
$$;

-- Retention: removes an organisation's entries below `p_before` (the caller has stored the chain
-- hash and compact range at that boundary in audit_heads and signed a checkpoint there). Stored
-- subtrees and checkpoints are kept: they are what proves the rest.
CREATE FUNCTION custos_audit_prune(p_org uuid, p_before bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE removed bigint;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'pruning is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM set_config('custos.audit_maintenance', 'on', true);
  DELETE FROM audit_log WHERE organization_id = p_org AND seq < p_before;
  GET DIAGNOSTICS removed = ROW_COUNT;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  RETURN removed;
END
$$;

REVOKE ALL ON FUNCTION custos_audit_pending(), custos_audit_prune(uuid, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_pending(), custos_audit_prune(uuid, bigint) TO custos_app;
