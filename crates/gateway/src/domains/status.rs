//! `custos check-compliance-status` (seed 003's `check_compliance_status`): what needs attention
//! now, for cron and monitoring — overdue assessments, vulnerabilities past their SLA, overdue
//! workflow instances, frameworks below a target score, and evidence expiring soon. It asks the
//! domains' own list and summary operations (the REST endpoints' code), so it can never disagree
//! with the API. Exit status 0 when nothing is overdue or below target, 1 when something is, 2
//! when it could not check (expiring evidence is reported, and fails nothing).

use clap::{Args, Subcommand, ValueEnum};
use custos_core::RequestCtx;
use custos_proto::v1 as pb;
use custos_workflows::WorkflowsService;
use serde_json::{Value, json};

use super::{Domain, Serving};
use crate::cli::{Broken, DbArgs, app_for, organisations, problem};
use crate::config::Config;
use crate::server::App;

pub const DOMAIN: Domain =
    Domain { name: "status", serve, cli: Some(crate::domain_cli!(StatusCommands, run, StatusCommands::verifies)) };

fn serve(_app: &App, _config: &Config) -> Serving {
    Serving::default()
}

/// How many items of each kind are listed (the counts are always whole).
const SHOWN: u32 = 20;

#[derive(Debug, Subcommand)]
pub enum StatusCommands {
    /// What needs attention now: overdue assessments, vulnerabilities past SLA, overdue workflow
    /// instances, frameworks below --min-score, evidence expiring within --expiring-days. Exit 0
    /// when nothing is overdue or below target, 1 when something is, 2 when it could not check.
    CheckComplianceStatus(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Only this organisation (its slug; default every organisation).
    #[arg(long)]
    org: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// A framework whose compliance percentage is below this (0–100) needs attention.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    min_score: Option<u8>,
    /// Evidence expiring within this many days is reported.
    #[arg(long, default_value_t = 30)]
    expiring_days: u32,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

impl StatusCommands {
    fn verifies(&self) -> bool {
        true
    }
}

async fn run(command: StatusCommands) -> anyhow::Result<()> {
    let StatusCommands::CheckComplianceStatus(args) = command;
    let app = app_for(&args.db).await?;
    let workflows = WorkflowsService::new(app.db.clone());
    let mut reports = Vec::new();
    for (org_id, slug) in organisations(&app, args.org.as_deref()).await? {
        let ctx = RequestCtx::operator(org_id, slug.clone());
        reports.push(check(&app, &workflows, &ctx, &args).await?);
    }
    let attention = reports.iter().any(|r| r["needs_attention"] == true);
    let out = json!({
        "checked_at": custos_core::timefmt::timestamp(custos_core::timefmt::now()),
        "needs_attention": attention,
        "organizations": reports,
    });
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        Format::Text => print_text(&out),
    }
    if attention {
        return Err(Broken("compliance needs attention (see above)".into()).into());
    }
    Ok(())
}

/// One organisation's findings.
async fn check(app: &App, workflows: &WorkflowsService, ctx: &RequestCtx, args: &CheckArgs) -> anyhow::Result<Value> {
    let page = Some(1);
    let page_size = Some(SHOWN);
    let requirements = app
        .frameworks
        .list_requirements(
            ctx,
            pb::ListRequirementsRequest { overdue: Some(true), page, page_size, ..Default::default() },
        )
        .await
        .map_err(problem)?;
    let vulnerabilities = app
        .incidents
        .list_vulnerabilities(
            ctx,
            pb::ListVulnerabilitiesRequest { overdue: Some(true), page, page_size, ..Default::default() },
        )
        .await
        .map_err(problem)?;
    let instances = workflows
        .list_workflow_instances(
            ctx,
            pb::ListWorkflowInstancesRequest { overdue: Some(true), page, page_size, ..Default::default() },
        )
        .await
        .map_err(problem)?;
    let evidence = app
        .evidence
        .list_evidence(
            ctx,
            pb::ListEvidenceRequest {
                expiring_within: Some(args.expiring_days),
                page,
                page_size,
                ..Default::default()
            },
        )
        .await
        .map_err(problem)?;
    let mut below = Vec::new();
    if let Some(min) = args.min_score {
        let frameworks = app
            .frameworks
            .list_frameworks(
                ctx,
                pb::ListFrameworksRequest { is_active: Some(true), page_size: Some(100), ..Default::default() },
            )
            .await
            .map_err(problem)?;
        for f in frameworks.results {
            let s = app
                .frameworks
                .get_compliance_summary(ctx, pb::ComplianceSummaryRequest { id: f.id.clone(), include_mapped: None })
                .await
                .map_err(problem)?;
            if s.compliance_percentage < f64::from(min) {
                below.push(json!({"framework": f.id, "name": f.name, "compliance_percentage": s.compliance_percentage,
                                  "target": min}));
            }
        }
    }
    let needs_attention =
        requirements.count > 0 || vulnerabilities.count > 0 || instances.count > 0 || !below.is_empty();
    Ok(json!({
        "organization": ctx.organization_slug,
        "needs_attention": needs_attention,
        "overdue_assessments": {
            "count": requirements.count,
            "items": requirements.results.iter().map(|r| json!({"requirement": r.id, "requirement_id": r.requirement_id,
                "title": r.title, "framework": r.framework_name, "next_assessment_date": r.next_assessment_date})).collect::<Vec<_>>(),
        },
        "vulnerabilities_past_sla": {
            "count": vulnerabilities.count,
            "items": vulnerabilities.results.iter().map(|v| json!({"vulnerability": v.id, "title": v.title,
                "severity": v.severity, "due_at": v.due_at})).collect::<Vec<_>>(),
        },
        "overdue_workflow_instances": {
            "count": instances.count,
            "items": instances.results.iter().map(|i| json!({"instance": i.id, "title": i.title,
                "current_step": i.current_step, "workflow": i.workflow_name, "due_at": i.current_step_due_at.clone().or(i.due_date.clone())})).collect::<Vec<_>>(),
        },
        "frameworks_below_target": below,
        "evidence_expiring": {
            "within_days": args.expiring_days,
            "count": evidence.count,
            "items": evidence.results.iter().map(|e| json!({"evidence": e.id, "title": e.title, "valid_until": e.valid_until})).collect::<Vec<_>>(),
        },
    }))
}

fn print_text(out: &Value) {
    for org in out["organizations"].as_array().into_iter().flatten() {
        let slug = org["organization"].as_str().unwrap_or_default();
        let verdict = if org["needs_attention"] == true { "NEEDS ATTENTION" } else { "ok" };
        println!("{slug}: {verdict}");
        let section = |key: &str, label: &str, line: &dyn Fn(&Value) -> String| {
            let count = org[key]["count"].as_i64().unwrap_or(0);
            println!("  {label}: {count}");
            for item in org[key]["items"].as_array().into_iter().flatten() {
                println!("    - {}", line(item));
            }
        };
        section("overdue_assessments", "overdue assessments", &|r| {
            format!(
                "{} {} ({}), due {}",
                r["requirement_id"].as_str().unwrap_or_default(),
                r["title"].as_str().unwrap_or_default(),
                r["framework"].as_str().unwrap_or_default(),
                r["next_assessment_date"].as_str().unwrap_or_default()
            )
        });
        section("vulnerabilities_past_sla", "vulnerabilities past SLA", &|v| {
            format!(
                "{} [{}], due {}",
                v["title"].as_str().unwrap_or_default(),
                v["severity"].as_str().unwrap_or_default(),
                v["due_at"].as_str().unwrap_or_default()
            )
        });
        section("overdue_workflow_instances", "overdue workflow instances", &|i| {
            format!(
                "{} ({}, at {}), due {}",
                i["title"].as_str().unwrap_or_default(),
                i["workflow"].as_str().unwrap_or_default(),
                i["current_step"].as_str().unwrap_or_default(),
                i["due_at"].as_str().unwrap_or_default()
            )
        });
        let below = org["frameworks_below_target"].as_array().cloned().unwrap_or_default();
        println!("  frameworks below target: {}", below.len());
        for f in &below {
            println!(
                "    - {}: {}% (target {}%)",
                f["name"].as_str().unwrap_or_default(),
                f["compliance_percentage"],
                f["target"]
            );
        }
        section(
            "evidence_expiring",
            &format!("evidence expiring within {} days", org["evidence_expiring"]["within_days"]),
            &|e| {
                format!(
                    "{}, valid until {}",
                    e["title"].as_str().unwrap_or_default(),
                    e["valid_until"].as_str().unwrap_or_default()
                )
            },
        );
    }
}
