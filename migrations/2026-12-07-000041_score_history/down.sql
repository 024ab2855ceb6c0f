DROP TABLE framework_score_snapshots;
