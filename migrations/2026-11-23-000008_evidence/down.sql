DROP TABLE IF EXISTS custody_records, evidence_requirements, evidence;
DROP FUNCTION IF EXISTS custos_custody_append_only();
