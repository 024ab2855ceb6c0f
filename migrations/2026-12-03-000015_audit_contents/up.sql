-- Entries' contents in runs beside the log: `audit_contents` holds, for each run of `audit_log`
-- (same organisation and first sequence number, same length), its entries' committed fields and
-- salts as arrays, element k being entry first_seq + k - 1. `audit_entries` becomes what writers
-- write and the chain has yet to settle: the indexer, which already reads every sequenced entry
-- behind the sequencer, moves each run's entries into the run's contents and removes them from
-- `audit_entries` in the transaction that indexes them. (Not the sequencer: moving an entry
-- costs a second write of its content and a delete, and sequencing is what checkpoints wait on.)
--
-- Why: reading a sequenced entry's content cost one row per entry, and decoding rows one by one
-- was what bounded full verification (the client at 100% CPU, PostgreSQL at a third). A run is
-- read as one row of 256 entries, and only the writers' recent entries live one per row.
--
-- A run's contents are rewritten only by withholding, and removed only by pruning, both through
-- the SECURITY DEFINER functions below; entries leave `audit_entries` only through
-- `custos_audit_dequeue`, and only once their run's contents hold them. A NULL element is an
-- entry whose content is gone, which verification names.
CREATE TABLE audit_contents (
  organization_id uuid NOT NULL,
  first_seq       bigint NOT NULL CHECK (first_seq >= 0),
  fields          text[] NOT NULL,
  salts           bytea[] NOT NULL,
  PRIMARY KEY (organization_id, first_seq),
  CONSTRAINT audit_content_run_shape CHECK (
    array_ndims(fields) = 1 AND array_lower(fields, 1) = 1 AND cardinality(fields) BETWEEN 1 AND 256
    AND array_ndims(salts) = 1 AND array_lower(salts, 1) = 1 AND cardinality(salts) = cardinality(fields)
    AND first_seq / 256 = (first_seq + cardinality(fields) - 1) / 256)
);
-- Read whole by verification and export, and without decompressing: salts do not compress, and
-- verification would pay for inflating the fields on every read.
ALTER TABLE audit_contents
  ALTER COLUMN fields SET STORAGE EXTERNAL,
  ALTER COLUMN salts SET STORAGE EXTERNAL;

ALTER TABLE audit_contents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_contents USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit_contents
  FOR EACH ROW EXECUTE FUNCTION custos_audit_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON audit_contents
  FOR EACH STATEMENT EXECUTE FUNCTION custos_audit_append_only();
GRANT SELECT, INSERT ON audit_contents TO custos_app;

DO $$
BEGIN
  PERFORM set_config('custos.audit_maintenance', 'on', true);
END
$$;

-- Entries already indexed move into their runs, whole runs (one that indexing stopped inside
-- moves too; the indexer carries on after it), and leave `audit_entries`; an entry the log names
-- but that is gone stays gone: a NULL element.
CREATE TEMPORARY TABLE moved_runs ON COMMIT DROP AS
SELECT r.* FROM audit_log r JOIN audit_heads h ON h.organization_id = r.organization_id
 WHERE r.first_seq < h.indexed_size;

INSERT INTO audit_contents (organization_id, first_seq, fields, salts)
SELECT r.organization_id, r.first_seq, array_agg(e.fields ORDER BY k), array_agg(e.salts ORDER BY k)
  FROM moved_runs r
 CROSS JOIN generate_series(0, length(r.event_ids) / 16 - 1) AS k
  LEFT JOIN audit_entries e
    ON e.organization_id = r.organization_id
   AND e.event_id = encode(substring(r.event_ids FROM k * 16 + 1 FOR 16), 'hex')::uuid
 GROUP BY r.organization_id, r.first_seq;

DELETE FROM audit_entries e
 USING (SELECT r.organization_id, encode(substring(r.event_ids FROM k * 16 + 1 FOR 16), 'hex')::uuid AS id
          FROM moved_runs r, generate_series(0, length(r.event_ids) / 16 - 1) AS k) d
 WHERE e.organization_id = d.organization_id AND e.event_id = d.id;

DO $$
BEGIN
  PERFORM set_config('custos.audit_maintenance', 'off', true);
END
$$;

-- The indexer's hand-over: removes from `audit_entries` the entries of the runs starting in
-- `[p_from, p_to)`, each only if its run's contents are stored beside it.
CREATE FUNCTION custos_audit_dequeue(p_org uuid, p_from bigint, p_to bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE removed bigint;
BEGIN
  IF p_org IS DISTINCT FROM custos_current_org() THEN
    RAISE EXCEPTION 'dequeuing is limited to the current organisation' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM set_config('custos.audit_maintenance', 'on', true);
  -- The ids as one array, so that the rows are found through the primary key whatever the
  -- table's statistics say (a join may be planned as a scan of the whole table).
  DELETE FROM audit_entries
   WHERE organization_id = p_org
     AND event_id = ANY(ARRAY(
           SELECT encode(substring(r.event_ids FROM k * 16 + 1 FOR 16), 'hex')::uuid
             FROM audit_log r
             JOIN audit_contents c ON c.organization_id = r.organization_id AND c.first_seq = r.first_seq
                                  AND cardinality(c.fields) = length(r.event_ids) / 16
            CROSS JOIN generate_series(0, length(r.event_ids) / 16 - 1) AS k
            WHERE r.organization_id = p_org AND r.first_seq >= p_from AND r.first_seq < p_to));
  GET DIAGNOSTICS removed = ROW_COUNT;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  RETURN removed;
END
$$;

DROP FUNCTION custos_audit_prune(uuid, bigint);
DROP FUNCTION custos_audit_withhold(uuid, bigint, text, text, text, bytea);

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
  DELETE FROM audit_contents WHERE organization_id = p_org AND first_seq < p_before;
  DELETE FROM audit_index WHERE organization_id = p_org AND seq < p_before;
  DELETE FROM audit_log WHERE organization_id = p_org AND first_seq < p_before;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  RETURN removed;
END
$$;

-- Withholding fields of a sequenced entry (GDPR erasure, redacted exports): the caller rewrites
-- the entry's fields with the withheld fields' commitments and explicit salts, and blanks index
-- columns that repeat a withheld value. Only this function may change an entry, only in the current
-- organisation, and never any hash.
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
  UPDATE audit_contents
     SET fields[p_seq - first_seq + 1] = p_fields, salts[p_seq - first_seq + 1] = p_salts
   WHERE organization_id = p_org AND first_seq <= p_seq AND first_seq > p_seq - 256
     AND first_seq + cardinality(fields) > p_seq AND fields[p_seq - first_seq + 1] IS NOT NULL;
  GET DIAGNOSTICS changed = ROW_COUNT;
  UPDATE audit_index SET actor = p_actor, resource_id = p_resource_id
   WHERE organization_id = p_org AND seq = p_seq;
  PERFORM set_config('custos.audit_maintenance', 'off', true);
  IF changed = 0 THEN
    RAISE EXCEPTION 'no audit entry % in this organisation', p_seq USING ERRCODE = 'no_data_found';
  END IF;
END
$$;

REVOKE ALL ON FUNCTION custos_audit_dequeue(uuid, bigint, bigint), custos_audit_prune(uuid, bigint),
  custos_audit_withhold(uuid, bigint, text, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_dequeue(uuid, bigint, bigint), custos_audit_prune(uuid, bigint),
  custos_audit_withhold(uuid, bigint, text, text, text, bytea) TO custos_app;
