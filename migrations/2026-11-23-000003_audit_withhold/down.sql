DROP FUNCTION IF EXISTS custos_audit_withhold(uuid, bigint, text, jsonb, text, jsonb, text, text, jsonb, jsonb);
