DROP TABLE secret_reveal_requests;
DROP TABLE secret_versions;
DROP TABLE secrets;
