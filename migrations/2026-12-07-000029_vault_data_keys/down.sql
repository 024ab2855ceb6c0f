DROP FUNCTION custos_vault_key_usage();
DROP TABLE vault_master_keys;
DROP TABLE vault_data_keys;
