DROP TABLE workflow_instance_history;
DROP TABLE workflow_instances;
DROP TABLE workflows;
