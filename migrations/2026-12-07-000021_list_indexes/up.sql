-- Lists at scale: with a million requirements or evidence items in one organisation, page 1 of
-- every list — with any of its filters, a `search`, or as the frameworks list — stays fast.
-- (Figures and plans: ARCHITECTURE.md, "Lists at scale"; `cargo xtask bench lists`.)
--
-- 1. B-tree indexes, organization_id first, for each list's order and its equality filters: a
--    page walks its order index, a filter that matches few rows is read from its own index, and
--    a list's capped count (`custos_db::list`, at most 10,001 rows) is an index-only scan.
-- 2. Trigram (pg_trgm) GIN indexes on the columns `search` looks in, and a view per list that
--    lets them serve `ILIKE` under row-level security (see below).
-- 3. The requirement count of each framework, kept exact by triggers, so the frameworks list
--    does not count a million requirements each time.

-- pg_trgm ships with PostgreSQL (Debian: in the server package itself, postgresql-15); it is a
-- trusted extension, so a database owner who is not a superuser may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Requirements: ordered by (created_at, id) (requirements_org_created), by framework
-- (requirements_org_framework), overdue (requirements_next_assessment); and:
CREATE INDEX requirements_org_status_priority ON requirements (organization_id, compliance_status, priority);
CREATE INDEX requirements_org_priority ON requirements (organization_id, priority);
CREATE INDEX requirements_org_type ON requirements (organization_id, requirement_type);
CREATE INDEX requirements_org_implemented ON requirements (organization_id, is_implemented);
CREATE INDEX requirements_org_assignee ON requirements (organization_id, assigned_to) WHERE assigned_to IS NOT NULL;
CREATE INDEX requirements_search_requirement_id ON requirements USING gin (requirement_id gin_trgm_ops);
CREATE INDEX requirements_search_title ON requirements USING gin (title gin_trgm_ops);
CREATE INDEX requirements_search_description ON requirements USING gin (description gin_trgm_ops);

-- Evidence: ordered by (collected_at, id) descending; by incident and validity
-- (evidence_org_incident, evidence_org_valid_until); by requirement (evidence_requirements_requirement); and:
CREATE INDEX evidence_org_collected ON evidence (organization_id, collected_at, id);
-- The type and the status, alone or together (a 1% match of the two took 210 ms to count by the
-- type's index and a filter; by this index it is an index-only scan of 3 ms).
CREATE INDEX evidence_org_type_status ON evidence (organization_id, evidence_type, status);
CREATE INDEX evidence_org_status ON evidence (organization_id, status);
CREATE INDEX evidence_org_collector ON evidence (organization_id, collected_by);
CREATE INDEX evidence_search_title ON evidence USING gin (title gin_trgm_ops);
CREATE INDEX evidence_search_description ON evidence USING gin (description gin_trgm_ops);
CREATE INDEX evidence_search_notes ON evidence USING gin (notes gin_trgm_ops);

-- Search under row-level security.
--
-- `ILIKE` is not leakproof, and PostgreSQL evaluates no condition that is not leakproof before a
-- table's RLS condition: it cannot be an index condition on a table RLS applies to, so a trigram
-- index on `requirements` is never used by `custos_app`, which reads every row of the tenant
-- instead (1.9 s at a million). Marking `texticlike` LEAKPROOF would take a superuser and hold
-- for every database on the server.
--
-- So the search runs in a function with its owner's rights (SECURITY DEFINER: the owner of the
-- tables, whom RLS does not restrict, so the trigram indexes serve), which applies the tenant
-- itself — `custos_current_org()`, the setting every request transaction makes and the one the
-- RLS policies read — and answers ids only. A caller passes a pattern and nothing else: no
-- condition of its own can run inside (an owner-rights *view* was tried first and refused on
-- review: a caller's condition on it, such as a cast that fails, ran before the view's tenant
-- test and told other tenants' text in its error). The list uses it as
-- `id IN (SELECT custos_requirement_search($pattern))` in a query on `requirements`, so the rows
-- it answers still come through RLS: tenancy is enforced twice. The query is EXECUTEd so that it
-- is planned with the pattern's value (a generic plan would not know a rare id from a common
-- word).
CREATE FUNCTION custos_requirement_search(pattern text) RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
  RETURN QUERY EXECUTE
    'SELECT id FROM public.requirements
      WHERE organization_id = public.custos_current_org()
        AND (title ILIKE $1 OR description ILIKE $1 OR requirement_id ILIKE $1)'
    USING pattern;
END
$$;

CREATE FUNCTION custos_evidence_search(pattern text) RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
  RETURN QUERY EXECUTE
    'SELECT id FROM public.evidence
      WHERE organization_id = public.custos_current_org()
        AND (title ILIKE $1 OR description ILIKE $1 OR notes ILIKE $1)'
    USING pattern;
END
$$;

REVOKE ALL ON FUNCTION custos_requirement_search(text), custos_evidence_search(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_requirement_search(text), custos_evidence_search(text) TO custos_app;

-- Requirements per framework. The frameworks list shows each framework's requirement count,
-- a compliance figure that must be exact; counting a million index entries takes 55-120 ms, so
-- the count is kept here instead, in the transaction that adds, deletes or moves requirements
-- (statement triggers: a catalogue seed's hundreds of rows change the count once). Writers of
-- one framework's requirements serialise on its row until they commit.
CREATE TABLE framework_requirement_counts (
  organization_id uuid NOT NULL,
  framework_id    uuid NOT NULL,
  requirements    bigint NOT NULL CHECK (requirements >= 0),
  PRIMARY KEY (organization_id, framework_id),
  FOREIGN KEY (organization_id, framework_id) REFERENCES frameworks (organization_id, id) ON DELETE CASCADE
);
ALTER TABLE framework_requirement_counts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON framework_requirement_counts USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE ON framework_requirement_counts TO custos_app;

INSERT INTO framework_requirement_counts (organization_id, framework_id, requirements)
SELECT organization_id, framework_id, count(*) FROM requirements GROUP BY organization_id, framework_id;

CREATE FUNCTION custos_count_requirements() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO framework_requirement_counts AS c (organization_id, framework_id, requirements)
    SELECT organization_id, framework_id, count(*) FROM added
     GROUP BY organization_id, framework_id ORDER BY organization_id, framework_id
    ON CONFLICT (organization_id, framework_id) DO UPDATE SET requirements = c.requirements + excluded.requirements;
  ELSIF TG_OP = 'DELETE' THEN
    -- A framework's own deletion may have removed its row already (cascade): nothing to update.
    -- Counter rows locked in key order first (a deletion spanning frameworks must not
    -- deadlock with another), then updated.
    PERFORM 1 FROM framework_requirement_counts c
      WHERE (c.organization_id, c.framework_id) IN (SELECT organization_id, framework_id FROM removed)
      ORDER BY c.organization_id, c.framework_id FOR UPDATE;
    UPDATE framework_requirement_counts c SET requirements = c.requirements - d.n
      FROM (SELECT organization_id, framework_id, count(*) AS n FROM removed
             GROUP BY organization_id, framework_id) d
     WHERE c.organization_id = d.organization_id AND c.framework_id = d.framework_id;
  ELSE
    -- UPDATE: requirements moved to another framework (a row trigger, fired only by a move).
    -- Both counters locked in key order first: two moves in opposite directions that each
    -- locked their source first deadlocked.
    PERFORM 1 FROM framework_requirement_counts
      WHERE (organization_id, framework_id) IN ((OLD.organization_id, OLD.framework_id),
                                                (NEW.organization_id, NEW.framework_id))
      ORDER BY organization_id, framework_id FOR UPDATE;
    UPDATE framework_requirement_counts SET requirements = requirements - 1
     WHERE organization_id = OLD.organization_id AND framework_id = OLD.framework_id;
    INSERT INTO framework_requirement_counts AS c (organization_id, framework_id, requirements)
    VALUES (NEW.organization_id, NEW.framework_id, 1)
    ON CONFLICT (organization_id, framework_id) DO UPDATE SET requirements = c.requirements + 1;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER requirements_counted_insert AFTER INSERT ON requirements
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION custos_count_requirements();
CREATE TRIGGER requirements_counted_delete AFTER DELETE ON requirements
  REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION custos_count_requirements();
CREATE TRIGGER requirements_counted_move AFTER UPDATE OF organization_id, framework_id ON requirements
  FOR EACH ROW WHEN (OLD.organization_id IS DISTINCT FROM NEW.organization_id OR OLD.framework_id IS DISTINCT FROM NEW.framework_id)
  EXECUTE FUNCTION custos_count_requirements();
