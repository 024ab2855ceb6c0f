DROP TABLE framework_import_uploads;
