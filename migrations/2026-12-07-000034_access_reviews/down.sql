DROP TABLE stale_access_findings;
DROP TABLE access_reviews;
DROP FUNCTION custos_access_review_immutable();
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_org_id;
