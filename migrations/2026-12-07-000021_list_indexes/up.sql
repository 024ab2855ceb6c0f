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
-- for every database on the server; these views are the fix instead.
--
-- A view runs with its owner's rights (security_invoker is off): the owner of the tables, whom
-- RLS does not restrict, so a search condition put on the view may use the trigram indexes. The
-- view applies the tenant itself, as `custos_current_org()` — the setting every request
-- transaction makes, the one the RLS policies read — and shows only the searched columns. It is
-- used in one way only, as `id IN (SELECT id FROM requirement_search WHERE … ILIKE …)` in a
-- query on `requirements`, so the rows a list answers still come through RLS: tenancy is still
-- enforced twice (the view's condition, then the policy on the table read).
--
-- Two details make the planner use the indexes:
-- * the tenant test is written `(… = …) IS TRUE`, not as an equality: an equality would join the
--   outer query's `organization_id = …` and the RLS condition in one equivalence class, and the
--   planner would then derive the RLS condition's security level for this view's scan too,
--   which again forbids the `ILIKE` as an index condition. For the same reason the view has no
--   organization_id column: a query must not add one;
-- * the view is not a security barrier (a barrier would keep the search condition outside it).
--   Without a barrier, a function in a query's condition could see other tenants' rows before
--   the view's tenant test; `custos_app`, the one role granted the view, cannot create
--   functions (it has only USAGE on the schema), and the service's queries call only built-in
--   operators.
CREATE VIEW requirement_search AS
SELECT id, requirement_id, title, description
  FROM requirements
 WHERE (organization_id = custos_current_org()) IS TRUE;

CREATE VIEW evidence_search AS
SELECT id, title, description, notes
  FROM evidence
 WHERE (organization_id = custos_current_org()) IS TRUE;

GRANT SELECT ON requirement_search, evidence_search TO custos_app;

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
    UPDATE framework_requirement_counts c SET requirements = c.requirements - d.n
      FROM (SELECT organization_id, framework_id, count(*) AS n FROM removed
             GROUP BY organization_id, framework_id) d
     WHERE c.organization_id = d.organization_id AND c.framework_id = d.framework_id;
  ELSE
    -- UPDATE: requirements moved to another framework (a row trigger, fired only by a move).
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
