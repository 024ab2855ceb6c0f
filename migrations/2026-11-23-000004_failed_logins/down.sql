DROP FUNCTION IF EXISTS custos_token_owner(bytea);
