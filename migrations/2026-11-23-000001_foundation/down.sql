DROP FUNCTION IF EXISTS custos_organization_by_slug(text);
DROP FUNCTION IF EXISTS custos_authenticate_token(bytea);
DROP TABLE IF EXISTS audit_events, requirements, frameworks, api_tokens, users, organizations;
DROP FUNCTION IF EXISTS custos_current_org();
