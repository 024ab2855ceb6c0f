//! The built-in workflow templates, shipped as data (`crates/workflows/templates/*.yaml`, each
//! citing the rule it follows) and seeded into an organisation like the framework catalogue:
//! once each (a template already seeded, by its key, is left as it is, edits included).

use custos_core::{Problem, RequestCtx};
use custos_db::schema::workflows;
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::service::{Fields, WorkflowsError, WorkflowsService, validate};

/// (key, YAML) of every built-in template.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("gdpr-breach", include_str!("../templates/gdpr-breach.yaml")),
    ("hipaa-breach", include_str!("../templates/hipaa-breach.yaml")),
    ("sox-quarterly-testing", include_str!("../templates/sox-quarterly-testing.yaml")),
    ("access-review", include_str!("../templates/access-review.yaml")),
    ("dsr-handling", include_str!("../templates/dsr-handling.yaml")),
];

/// A template read and checked as any workflow is.
pub fn template(key: &str) -> Result<Fields, WorkflowsError> {
    let (_, yaml) = TEMPLATES
        .iter()
        .find(|(k, _)| *k == key)
        .ok_or_else(|| Problem::invalid_field("template", format!("no template {key:?}")))?;
    let input: pb::WorkflowInput =
        serde_yaml_ng::from_str(yaml).map_err(|e| Problem::internal(format!("template {key}: {e}")))?;
    let mut fields = validate(input)?;
    fields.is_template = true;
    Ok(fields)
}

impl WorkflowsService {
    /// `POST /api/compliance/workflows/seed_templates/` (admins).
    pub async fn seed_workflow_templates(
        &self,
        ctx: &RequestCtx,
        _req: pb::SeedWorkflowTemplatesRequest,
    ) -> Result<pb::SeedWorkflowTemplatesResponse, WorkflowsError> {
        ctx.require(custos_core::ctx::Access::Admin)?;
        let (mut seeded, mut present) = (Vec::new(), Vec::new());
        for (key, now) in self.seed_templates(ctx).await? {
            if now { seeded.push(key) } else { present.push(key) }
        }
        Ok(pb::SeedWorkflowTemplatesResponse { seeded, present })
    }

    /// Seeds every built-in template into the caller's organisation, each once; what each did
    /// (key, seeded now).
    pub async fn seed_templates(&self, ctx: &RequestCtx) -> Result<Vec<(String, bool)>, WorkflowsError> {
        let mut out = Vec::new();
        let mut tx = self.db.begin(ctx.organization_id).await?;
        for (key, _) in TEMPLATES {
            let present: i64 = workflows::table
                .filter(workflows::organization_id.eq(ctx.organization_id))
                .filter(workflows::template_key.eq(*key))
                .count()
                .get_result(tx.conn())
                .await?;
            if present > 0 {
                out.push(((*key).to_owned(), false));
                continue;
            }
            let fields = template(key)?;
            self.insert_workflow(&mut tx, ctx, &fields, Some(key)).await?;
            out.push(((*key).to_owned(), true));
        }
        tx.commit().await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_a_sound_workflow() {
        for (key, _) in TEMPLATES {
            let t = template(key).unwrap_or_else(|e| panic!("{key}: {:?}", Problem::from(e)));
            assert!(t.is_template);
        }
        let gdpr = template("gdpr-breach").unwrap();
        let notify = gdpr.definition.step("notify_authority").unwrap();
        let d = notify.deadline.as_ref().unwrap();
        assert_eq!((d.from.as_str(), d.hours), ("incident_detected", 72), "Art. 33: 72 hours from awareness");
        let hipaa = template("hipaa-breach").unwrap();
        let d = hipaa.definition.step("notify_individuals").unwrap().deadline.clone().unwrap();
        assert_eq!((d.from.as_str(), d.hours), ("incident_detected", 60 * 24), "164.404: 60 days from discovery");
    }
}
