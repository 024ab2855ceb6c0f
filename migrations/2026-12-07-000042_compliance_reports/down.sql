DROP TABLE report_sign_offs;
DROP TABLE compliance_reports;
DROP FUNCTION custos_report_frozen();
