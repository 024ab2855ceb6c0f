-- "The history of this object" filters by resource id alone, which an index led by the resource
-- type cannot serve: each page would walk the whole log backwards. Type and id each get their own
-- index, in sequence order; a filter on both reads the (selective) id's.
CREATE INDEX audit_index_org_resource_id ON audit_index (organization_id, resource_id, seq);
CREATE INDEX audit_index_org_resource_type ON audit_index (organization_id, resource_type, seq);
DROP INDEX audit_index_org_resource;
