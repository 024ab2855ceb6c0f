CREATE INDEX audit_index_org_resource ON audit_index (organization_id, resource_type, resource_id, seq);
DROP INDEX audit_index_org_resource_type;
DROP INDEX audit_index_org_resource_id;
