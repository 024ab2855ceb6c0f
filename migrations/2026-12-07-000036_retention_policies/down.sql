DROP TABLE retention_policies;
DROP FUNCTION custos_retention_policy_lock();
