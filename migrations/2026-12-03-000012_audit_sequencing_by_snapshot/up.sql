-- Sequencing by transaction snapshots instead of a queue (the technique of Skytools' PgQ).
--
-- Each entry carries the 64-bit id of the transaction that wrote it (`pg_current_xact_id()`) and
-- its digest, and the sequencer reads new entries straight from `audit_entries`: those visible in
-- its snapshot that lie beyond a cursor `(sequenced_xid, sequenced_event)`, plus those of the
-- transactions that were still running when the cursor passed them (`pending_xids`). A
-- transaction's entries become visible all at once, when it commits, and a transaction below the
-- cursor that is no longer running was either taken or rolled back, so nothing committed is
-- missed and nothing is taken twice (see crates/audit-chain/src/sequencer.rs).
--
-- Why: the queue cost every change a second row, and sequencing a `DELETE … RETURNING` per entry
-- plus the dead rows it left behind until VACUUM. Now a change writes one row and sequencing is an
-- index range read. The transaction id is a column of its own, not the row's `xmin`, which
-- withholding (an UPDATE) and freezing would change.
DO $$
BEGIN
  PERFORM set_config('custos.audit_maintenance', 'on', true);
END
$$;

-- Entries already sequenced are below every cursor (xid 0); queued ones just above it (xid 1),
-- so the sequencer takes them first. Real transaction ids start at 3.
ALTER TABLE audit_entries
  ADD COLUMN xid bigint NOT NULL DEFAULT 0,
  -- NULL only for entries sequenced before this migration: their digest is committed in their leaf.
  ADD COLUMN digest bytea CHECK (length(digest) = 32);
UPDATE audit_entries e SET xid = 1, digest = q.digest
  FROM audit_queue q
 WHERE q.organization_id = e.organization_id AND q.event_id = e.event_id;
-- Every insert takes its own transaction's id unless told otherwise.
ALTER TABLE audit_entries ALTER COLUMN xid SET DEFAULT pg_current_xact_id()::text::bigint;
CREATE INDEX audit_entries_sequencing ON audit_entries (organization_id, xid, event_id);

ALTER TABLE audit_heads
  ADD COLUMN sequenced_xid bigint NOT NULL DEFAULT 0,
  ADD COLUMN sequenced_event uuid NOT NULL DEFAULT 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  ADD COLUMN pending_xids bigint[] NOT NULL DEFAULT '{}';

DROP FUNCTION custos_audit_pending();
DROP TABLE audit_queue;

-- Organisations with work for the sequencer: committed entries it has not taken, or entries not
-- yet in a checkpoint or not yet indexed.
CREATE FUNCTION custos_audit_pending() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT o.id
    FROM organizations o LEFT JOIN audit_heads h ON h.organization_id = o.id
   WHERE EXISTS (SELECT 1 FROM audit_entries e
                  WHERE e.organization_id = o.id
                    AND (e.xid, e.event_id) > (coalesce(h.sequenced_xid, 0),
                                               coalesce(h.sequenced_event, 'ffffffff-ffff-ffff-ffff-ffffffffffff')))
      OR EXISTS (SELECT 1 FROM audit_entries e WHERE e.organization_id = o.id AND e.xid = ANY(h.pending_xids))
  UNION
  SELECT organization_id FROM audit_heads WHERE tree_size > checkpoint_size OR tree_size > indexed_size
$$;
REVOKE ALL ON FUNCTION custos_audit_pending() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_pending() TO custos_app;

-- How far the sequencers have gone in transaction ids, and the next id the database will assign.
-- A counter behind the cursor means the database was restored into another cluster (pg_dump and
-- restore): entries written there would carry ids the sequencer has passed and never be taken, so
-- Custos refuses to start, and to sequence, until the counter is advanced.
CREATE FUNCTION custos_audit_counter(OUT cursor_xid bigint, OUT next_xid bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT coalesce(max(sequenced_xid), 0), pg_snapshot_xmax(pg_current_snapshot())::text::bigint FROM audit_heads
$$;
REVOKE ALL ON FUNCTION custos_audit_counter() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_counter() TO custos_app;

DO $$
BEGIN
  PERFORM set_config('custos.audit_maintenance', 'off', true);
END
$$;
