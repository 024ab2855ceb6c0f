-- The log in runs: one row holds up to 256 consecutive entries of one organisation's sequence
-- (their ids, leaf hashes and chain hashes, concatenated), never crossing a multiple of 256, so a
-- full run is exactly the leaves under one stored level-8 tree node (a Tessera-style tile).
--
-- Why: with one row per entry, PostgreSQL's per-row cost (tuple header, primary-key insertion,
-- WAL record) was most of what sequencing cost. A run is written once, in the sequencer's batch
-- that fills it, and never rewritten: a batch that ends inside a 256-block leaves a short run and
-- the next batch starts a new one, so the table stays append-only.
--
-- The hashes do not compress: they are stored uncompressed (STORAGE EXTERNAL), which also lets
-- PostgreSQL read one entry's slice of a run without reading the whole value.
CREATE TABLE audit_log_runs (
  organization_id uuid NOT NULL,
  first_seq       bigint NOT NULL CHECK (first_seq >= 0),
  sequenced_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  event_ids       bytea NOT NULL,
  leaf_hashes     bytea NOT NULL,
  chain_hashes    bytea NOT NULL,
  PRIMARY KEY (organization_id, first_seq),
  CONSTRAINT audit_log_run_shape CHECK (
    length(leaf_hashes) BETWEEN 32 AND 256 * 32 AND length(leaf_hashes) % 32 = 0
    AND length(chain_hashes) = length(leaf_hashes) AND 2 * length(event_ids) = length(leaf_hashes)
    AND first_seq / 256 = (first_seq + length(leaf_hashes) / 32 - 1) / 256)
);
ALTER TABLE audit_log_runs
  ALTER COLUMN event_ids SET STORAGE EXTERNAL,
  ALTER COLUMN leaf_hashes SET STORAGE EXTERNAL,
  ALTER COLUMN chain_hashes SET STORAGE EXTERNAL;

-- Existing rows become runs: consecutive sequence numbers (islands) within each 256-block. A
-- run's time is the latest of its entries' (they were sequenced within moments of each other).
INSERT INTO audit_log_runs (organization_id, first_seq, sequenced_at, event_ids, leaf_hashes, chain_hashes)
SELECT organization_id, min(seq), max(sequenced_at),
       string_agg(uuid_send(event_id), ''::bytea ORDER BY seq),
       string_agg(leaf_hash, ''::bytea ORDER BY seq),
       string_agg(chain_hash, ''::bytea ORDER BY seq)
  FROM (SELECT *, seq - row_number() OVER (PARTITION BY organization_id ORDER BY seq) AS island FROM audit_log) l
 GROUP BY organization_id, seq / 256, island;

DROP FUNCTION custos_audit_withhold(uuid, bigint, text, text, text, bytea);
DROP FUNCTION custos_audit_prune(uuid, bigint);
DROP TABLE audit_log;
ALTER TABLE audit_log_runs RENAME TO audit_log;
ALTER TABLE audit_log RENAME CONSTRAINT audit_log_runs_pkey TO audit_log_pkey;

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION custos_audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION custos_audit_append_only();
GRANT SELECT, INSERT ON audit_log TO custos_app;

-- The id of entry `p_seq`, read from its run.
CREATE FUNCTION custos_audit_event_id(p_org uuid, p_seq bigint) RETURNS uuid
LANGUAGE sql STABLE SET search_path = public, pg_temp
AS $$
  SELECT encode(substring(event_ids FROM (p_seq - first_seq)::int * 16 + 1 FOR 16), 'hex')::uuid
    FROM audit_log
   WHERE organization_id = p_org AND first_seq <= p_seq AND first_seq > p_seq - 256
     AND length(event_ids) >= (p_seq - first_seq + 1) * 16
   ORDER BY first_seq DESC LIMIT 1
$$;

-- Retention: removes an organisation's entries below `p_before`, which must start a run (the
-- caller has stored the chain hash and compact range at that boundary in audit_heads and signed a
-- checkpoint there). Stored subtrees and checkpoints are kept: they are what proves the rest.
CREATE FUNCTION custos_audit_prune(p_org uuid, p_before bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE removed bigint;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'pruning is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF EXISTS (SELECT 1 FROM audit_log WHERE organization_id = p_org AND first_seq < p_before
                AND first_seq + length(leaf_hashes) / 32 > p_before) THEN
    RAISE EXCEPTION 'prune boundary % is inside a run of the log', p_before USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM set_config('custos.audit_maintenance', 'on', true);
  SELECT coalesce(sum(length(leaf_hashes) / 32), 0) INTO removed
    FROM audit_log WHERE organization_id = p_org AND first_seq < p_before;
  DELETE FROM audit_entries e
   USING (SELECT encode(substring(r.event_ids FROM k * 16 + 1 FOR 16), 'hex')::uuid AS id
            FROM audit_log r, generate_series(0, length(r.event_ids) / 16 - 1) AS k
           WHERE r.organization_id = p_org AND r.first_seq < p_before) d
   WHERE e.organization_id = p_org AND e.event_id = d.id;
  DELETE FROM audit_index WHERE organization_id = p_org AND seq < p_before;
  DELETE FROM audit_log WHERE organization_id = p_org AND first_seq < p_before;
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
  UPDATE audit_entries SET fields = p_fields, salts = p_salts
   WHERE organization_id = p_org AND event_id = custos_audit_event_id(p_org, p_seq);
  GET DIAGNOSTICS changed = ROW_COUNT;
  UPDATE audit_index SET actor = p_actor, resource_id = p_resource_id
   WHERE organization_id = p_org AND seq = p_seq;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  IF changed = 0 THEN
    RAISE EXCEPTION 'no audit entry % in this organisation', p_seq USING ERRCODE = 'no_data_found';
  END IF;
END
$$;

REVOKE ALL ON FUNCTION custos_audit_prune(uuid, bigint),
  custos_audit_withhold(uuid, bigint, text, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_prune(uuid, bigint),
  custos_audit_withhold(uuid, bigint, text, text, text, bytea) TO custos_app;
