-- custos-audit/v2 storage: an entry is written once, by the writer, and never copied.
--
-- * `audit_entries` — each entry's committed fields as canonical lines with their salts (see
--   crates/audit-chain/src/encoding.rs), written in the change's transaction.
-- * `audit_queue` — what the sequencer has yet to integrate: the entry's id, time and digest, in
--   the same transaction. The sequencer deletes queued rows as it writes their `audit_log` rows.
-- * `audit_log` — the sequence: seq → entry, leaf and chain hash. Narrow, with no secondary index,
--   so that sequencing costs one small row per entry.
-- * `audit_index` — what listings filter on (time, actor, action, resource), read from the entries'
--   committed fields and written behind the sequencer, so that neither writers nor sequencing pay
--   for search indexes. Verification checks it against the fields.
--
-- No audit table but `audit_heads` references `organizations`: a foreign-key check per row costs as
-- much as the insert itself, and the heads row (one per organisation with a trail, ON DELETE
-- RESTRICT) already keeps such an organisation from being deleted.
--
-- The previous (pre-release) layout kept entries as jsonb and copied them from the queue into the
-- log. Its hashes cannot be recomputed in SQL, so a database that already holds entries in it is
-- refused rather than silently re-based: export it with the version that wrote it first.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM audit_log) OR EXISTS (SELECT 1 FROM audit_queue) THEN
    RAISE EXCEPTION 'this database holds audit entries in the pre-release custos-audit/v1 layout'
      USING HINT = 'export them with `custos audit export` of the version that wrote them, then migrate an empty audit trail';
  END IF;
END
$$;

DROP FUNCTION custos_audit_withhold(uuid, bigint, text, jsonb, text, jsonb, text, text, jsonb, jsonb);
DROP FUNCTION custos_audit_prune(uuid, bigint);
DROP FUNCTION custos_audit_pending();
DROP TABLE audit_log;
DROP TABLE audit_queue;

CREATE TABLE audit_entries (
  organization_id uuid NOT NULL,
  event_id        uuid NOT NULL,
  fields          text NOT NULL,
  salts           bytea NOT NULL,
  PRIMARY KEY (organization_id, event_id)
);

CREATE TABLE audit_queue (
  organization_id uuid NOT NULL,
  event_id        uuid NOT NULL,
  recorded_at     timestamptz NOT NULL,
  digest          bytea NOT NULL CHECK (length(digest) = 32)
);
-- The sequencer's order; rows leave by ctid, so no other index is needed.
CREATE INDEX audit_queue_order ON audit_queue (organization_id, recorded_at, event_id);

CREATE TABLE audit_log (
  organization_id uuid NOT NULL,
  seq             bigint NOT NULL CHECK (seq >= 0),
  event_id        uuid NOT NULL,
  sequenced_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  leaf_hash       bytea NOT NULL,
  chain_hash      bytea NOT NULL,
  PRIMARY KEY (organization_id, seq)
);

CREATE TABLE audit_index (
  organization_id uuid NOT NULL,
  seq             bigint NOT NULL,
  event_id        uuid NOT NULL,
  recorded_at     timestamptz NOT NULL,
  actor           text NOT NULL,
  action          text NOT NULL,
  resource_type   text NOT NULL,
  resource_id     text NOT NULL,
  PRIMARY KEY (organization_id, seq)
);
CREATE INDEX audit_index_org_time ON audit_index (organization_id, recorded_at);
CREATE INDEX audit_index_org_actor ON audit_index (organization_id, actor, seq);
CREATE INDEX audit_index_org_action ON audit_index (organization_id, action, seq);
CREATE INDEX audit_index_org_resource ON audit_index (organization_id, resource_type, resource_id, seq);

-- Entries below this were indexed for listings.
ALTER TABLE audit_heads ADD COLUMN indexed_size bigint NOT NULL DEFAULT 0;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit_entries', 'audit_queue', 'audit_log', 'audit_index'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
  FOREACH t IN ARRAY ARRAY['audit_entries', 'audit_log', 'audit_index'] LOOP
    EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %I
                    FOR EACH ROW EXECUTE FUNCTION custos_audit_append_only()', t);
    EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %I
                    FOR EACH STATEMENT EXECUTE FUNCTION custos_audit_append_only()', t);
  END LOOP;
END
$$;

GRANT SELECT, INSERT ON audit_entries, audit_log, audit_index TO custos_app;
GRANT SELECT, INSERT, DELETE ON audit_queue TO custos_app;

-- Organisations with work for the sequencer: queued entries, or entries not yet in a checkpoint
-- or not yet indexed.
CREATE FUNCTION custos_audit_pending() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT DISTINCT organization_id FROM audit_queue
  UNION
  SELECT organization_id FROM audit_heads WHERE tree_size > checkpoint_size OR tree_size > indexed_size
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
  DELETE FROM audit_entries e USING audit_log l
   WHERE l.organization_id = p_org AND l.seq < p_before
     AND e.organization_id = p_org AND e.event_id = l.event_id;
  DELETE FROM audit_index WHERE organization_id = p_org AND seq < p_before;
  DELETE FROM audit_log WHERE organization_id = p_org AND seq < p_before;
  GET DIAGNOSTICS removed = ROW_COUNT;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  RETURN removed;
END
$$;

-- Withholding fields of a sequenced entry (GDPR erasure, redacted exports): the caller rewrites
-- the field lines with the withheld fields' commitments and explicit salts, and blanks index
-- columns that repeat a withheld value. Only this function may change an entry, only in the current
-- organisation, and never its id, time, action, resource type or any hash.
CREATE FUNCTION custos_audit_withhold(
  p_org uuid, p_seq bigint, p_actor text, p_resource_id text, p_fields text, p_salts bytea
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE changed bigint;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'withholding is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM set_config('custos.audit_maintenance', 'on', true);
  UPDATE audit_entries e SET fields = p_fields, salts = p_salts
    FROM audit_log l
   WHERE l.organization_id = p_org AND l.seq = p_seq AND e.organization_id = p_org AND e.event_id = l.event_id;
  GET DIAGNOSTICS changed = ROW_COUNT;
  UPDATE audit_index SET actor = p_actor, resource_id = p_resource_id
   WHERE organization_id = p_org AND seq = p_seq;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  IF changed = 0 THEN
    RAISE EXCEPTION 'no audit entry % in this organisation', p_seq USING ERRCODE = 'no_data_found';
  END IF;
END
$$;

REVOKE ALL ON FUNCTION custos_audit_pending(), custos_audit_prune(uuid, bigint),
  custos_audit_withhold(uuid, bigint, text, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_pending(), custos_audit_prune(uuid, bigint),
  custos_audit_withhold(uuid, bigint, text, text, text, bytea) TO custos_app;
