-- How much evidence supports each requirement: the named read API the frameworks crate uses,
-- so it never reads the evidence tables itself.
--
-- Current evidence is unexpired (valid_until today or later, in UTC) and neither compromised
-- nor disposed of; expired evidence no longer counts towards its requirements. The view runs
-- with the caller's rights (security_invoker), so row-level security applies through it.

CREATE VIEW requirement_evidence WITH (security_invoker = true) AS
SELECT er.organization_id,
       er.requirement_id,
       count(*) FILTER (
         WHERE (e.valid_until IS NULL OR e.valid_until >= (now() AT TIME ZONE 'UTC')::date)
           AND e.status NOT IN ('COMPROMISED', 'DISPOSED')
       ) AS current_count,
       count(*) FILTER (WHERE e.valid_until < (now() AT TIME ZONE 'UTC')::date) AS expired_count
  FROM evidence_requirements er
  JOIN evidence e ON e.organization_id = er.organization_id AND e.id = er.evidence_id
 GROUP BY er.organization_id, er.requirement_id;

GRANT SELECT ON requirement_evidence TO custos_app;
