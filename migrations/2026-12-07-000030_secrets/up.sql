-- The central secrets vault (seed 004). A secret's values are kept only encrypted, each version
-- under the secret's own data key (vault_data_keys), bound to the secret, the field and the
-- version (crates/vault/FORMAT.md); the last versions stay retrievable by an admin with a reason.
CREATE TABLE secrets (
  id               uuid PRIMARY KEY,
  organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description      text NOT NULL DEFAULT '',
  secret_type      text NOT NULL,
  owner_id         uuid,
  rotation_enabled boolean NOT NULL DEFAULT false,
  rotation_days    integer CHECK (rotation_days BETWEEN 1 AND 3650),
  two_person_rule  boolean NOT NULL DEFAULT false,
  version          integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  data_key_id      uuid NOT NULL,
  last_rotated_at  timestamptz,
  next_rotation_at timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, name),
  UNIQUE (organization_id, id),
  FOREIGN KEY (organization_id, owner_id) REFERENCES users (organization_id, id),
  FOREIGN KEY (organization_id, data_key_id) REFERENCES vault_data_keys (organization_id, id)
);
CREATE INDEX secrets_org_created ON secrets (organization_id, created_at, id);
CREATE INDEX secrets_org_rotation ON secrets (organization_id, next_rotation_at) WHERE rotation_enabled;

CREATE TABLE secret_versions (
  organization_id uuid NOT NULL,
  secret_id       uuid NOT NULL,
  version         integer NOT NULL,
  ciphertext      bytea NOT NULL,
  created_by      text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (secret_id, version),
  FOREIGN KEY (organization_id, secret_id) REFERENCES secrets (organization_id, id) ON DELETE CASCADE
);

CREATE TABLE secret_reveal_requests (
  id              uuid PRIMARY KEY,
  organization_id uuid NOT NULL,
  secret_id       uuid NOT NULL,
  requested_by    uuid NOT NULL,
  reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'used', 'expired')),
  approved_by     uuid,
  approved_at     timestamptz,
  expires_at      timestamptz,
  used_at         timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (organization_id, secret_id) REFERENCES secrets (organization_id, id) ON DELETE CASCADE,
  FOREIGN KEY (organization_id, requested_by) REFERENCES users (organization_id, id),
  FOREIGN KEY (organization_id, approved_by) REFERENCES users (organization_id, id),
  CHECK (approved_by IS NULL OR approved_by <> requested_by)
);
CREATE INDEX secret_reveal_requests_secret ON secret_reveal_requests (organization_id, secret_id, created_at);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['secrets', 'secret_versions', 'secret_reveal_requests'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (organization_id = custos_current_org())
                    WITH CHECK (organization_id = custos_current_org())', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON secrets, secret_versions, secret_reveal_requests TO custos_app;
