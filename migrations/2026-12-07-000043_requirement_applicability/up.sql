-- Applicability (ISO/IEC 27001 6.1.3 d, the Statement of Applicability): a requirement may be
-- excluded from scope, and then says why.
ALTER TABLE requirements
  ADD COLUMN is_applicable boolean NOT NULL DEFAULT true,
  ADD COLUMN applicability_justification text NOT NULL DEFAULT '',
  ADD CONSTRAINT requirements_exclusion_justified CHECK (is_applicable OR length(btrim(applicability_justification)) > 0);
