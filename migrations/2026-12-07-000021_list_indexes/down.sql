DROP TRIGGER requirements_counted_move ON requirements;
DROP TRIGGER requirements_counted_delete ON requirements;
DROP TRIGGER requirements_counted_insert ON requirements;
DROP FUNCTION custos_count_requirements();
DROP TABLE framework_requirement_counts;
DROP FUNCTION custos_evidence_search(text);
DROP FUNCTION custos_requirement_search(text);
DROP INDEX evidence_search_notes, evidence_search_description, evidence_search_title,
           evidence_org_collector, evidence_org_status, evidence_org_type_status, evidence_org_collected;
DROP INDEX requirements_search_description, requirements_search_title, requirements_search_requirement_id,
           requirements_org_assignee, requirements_org_implemented, requirements_org_type,
           requirements_org_priority, requirements_org_status_priority;
-- pg_trgm stays: other objects may have come to use it.
