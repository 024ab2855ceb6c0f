DROP VIEW IF EXISTS requirement_evidence;
