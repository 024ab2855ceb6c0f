-- Background verification runs are the server's to finish: one whose runner stopped (a crash, a
-- restart, a deploy) is resumed by the server itself once its lease has lapsed, on whichever
-- replica finds it first (the takeover locks the run's row and checks the lease, so only one
-- does). A run someone waits on (the synchronous API call, the CLI) is left to that caller to
-- resume: it may have been stopped on purpose.

ALTER TABLE audit_verifications ADD COLUMN background boolean NOT NULL DEFAULT false;

CREATE INDEX audit_verifications_live ON audit_verifications (heartbeat_at) WHERE status = 'running';

-- Background runs of every organisation whose runner has not saved progress since `p_before`:
-- what the server resumes. Only ids leave this function; each run is then read and taken over in
-- its own organisation's scope.
CREATE FUNCTION custos_audit_interrupted_verifications(p_before timestamptz)
RETURNS TABLE (organization_id uuid, id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT v.organization_id, v.id FROM audit_verifications v
   WHERE v.status = 'running' AND v.background AND v.heartbeat_at < p_before
   ORDER BY v.heartbeat_at
$$;
REVOKE ALL ON FUNCTION custos_audit_interrupted_verifications(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_audit_interrupted_verifications(timestamptz) TO custos_app;
