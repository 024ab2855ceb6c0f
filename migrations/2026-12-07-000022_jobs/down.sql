DROP FUNCTION custos_system_jobs_count(text, text);
DROP FUNCTION custos_system_jobs(uuid, text, text, bigint, integer);
DROP POLICY system_scope_reads ON organizations;
DROP TABLE job_schedules;
DROP TABLE job_steps;
DROP TABLE jobs;
DROP FUNCTION custos_system_scope();
