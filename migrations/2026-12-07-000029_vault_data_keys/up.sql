-- Envelope encryption (crates/vault, FORMAT.md there): every encrypted record has a data key of
-- its own, kept here wrapped by a key-encryption key derived from the master key. `kek_id` is
-- the master key's fingerprint: rotating the master key re-wraps these rows (a job), never the
-- ciphertexts that name them by id.
CREATE TABLE vault_data_keys (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  -- What the key encrypts: `secret`, `blind-index`, … (no key material, no plaintext).
  purpose         text NOT NULL CHECK (length(purpose) BETWEEN 1 AND 100),
  kek_id          text NOT NULL CHECK (kek_id ~ '^[0-9a-f]{16}$'),
  wrapped         bytea NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  rewrapped_at    timestamptz,
  UNIQUE (organization_id, id)
);
-- The rewrap job walks each organisation's keys not under the current master key, by id.
CREATE INDEX vault_data_keys_org_kek ON vault_data_keys (organization_id, kek_id, id);

ALTER TABLE vault_data_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vault_data_keys USING (organization_id = custos_current_org())
  WITH CHECK (organization_id = custos_current_org());
GRANT SELECT, INSERT, UPDATE ON vault_data_keys TO custos_app;

-- The master keys the platform has used, by fingerprint: when no data key is wrapped by one any
-- more, it is retired (recorded here) and can be removed from the configuration. Platform data:
-- read and written in the system scope only.
CREATE TABLE vault_master_keys (
  kek_id        text PRIMARY KEY CHECK (kek_id ~ '^[0-9a-f]{16}$'),
  first_used_at timestamptz NOT NULL DEFAULT now(),
  retired_at    timestamptz
);
ALTER TABLE vault_master_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY system_scope_only ON vault_master_keys USING (custos_system_scope())
  WITH CHECK (custos_system_scope());
GRANT SELECT, INSERT, UPDATE ON vault_master_keys TO custos_app;

-- How many data keys each master key wraps, across organisations (counts only: no tenant data),
-- for the rewrap job and `custos vault status`.
CREATE FUNCTION custos_vault_key_usage() RETURNS TABLE (kek_id text, data_keys bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT kek_id, count(*) FROM vault_data_keys GROUP BY kek_id $$;
REVOKE ALL ON FUNCTION custos_vault_key_usage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_vault_key_usage() TO custos_app;
