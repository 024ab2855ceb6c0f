//! Organisations, users, roles and API tokens: `whoami`, the administration of users and tokens,
//! access reviews (stale-access findings, their decisions, sign-off; the quarterly
//! `access-review` schedule), the gRPC services, and the operator commands `custos org create`,
//! `custos token create` and `custos access-review run`.

use clap::Subcommand;
use custos_core::{Problem, Role};
use custos_identity::model::RoleName;
use custos_identity::reviews::findings::Resolution;
use custos_identity::reviews::{self, AccessReviewService, FindingKind, FindingStatus, ReviewStatus};
use custos_jobs::{ScheduleDef, Scope};
use custos_proto::v1 as pb;
use custos_proto::v1::access_reviews_service_server::AccessReviewsServiceServer;
use custos_proto::v1::identity_service_server::IdentityServiceServer;
use futures::StreamExt;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for, organisations, problem};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::endpoint::{Download, FileDownload};
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain =
    Domain { name: "identity", serve, cli: Some(crate::domain_cli!(IdentityCommand, run, |_| false)) };

const USERS: &str = "/api/compliance/users/";
const USER_ID: &str = "/api/compliance/users/{id}/";
const TOKENS: &str = "/api/compliance/tokens/";
const REVIEWS: &str = "/api/compliance/access-reviews/";
const REVIEW: &str = "/api/compliance/access-reviews/{id}/";
const STALE: &str = "/api/compliance/stale-access/";

/// The quarterly access review (seed 004: the 1st of January, April, July and October).
pub const ACCESS_REVIEW_SCHEDULE: &str = "access-review";

/// The access reviews' service, over the identity service the server built (so a revocation
/// reaches the same authenticators).
fn access_reviews(app: &App, config: &Config) -> AccessReviewService {
    AccessReviewService::new(app.identity.clone(), config.access_reviews).with_job_waker(app.jobs.waker())
}

fn serve(app: &App, config: &Config) -> Serving {
    let s = &app.identity;
    let r = &access_reviews(app, config);
    let report = {
        let r = r.clone();
        Download::new("get_access_review_report", move |ctx, req: pb::GetAccessReviewReportRequest| {
            let r = r.clone();
            async move {
                let report = r.get_access_review_report(&ctx, req.clone()).await.map_err(Problem::from)?;
                let body = bytes::Bytes::from(report.content);
                Ok(FileDownload {
                    content_type: "application/json".into(),
                    size: body.len() as u64,
                    file_name: format!("access-review-{}.json", req.id.trim()),
                    sha256: Some(report.sha256),
                    blake3: None,
                    body: futures::stream::once(async move { Ok(body) }).boxed(),
                })
            }
        })
        .media_types(&["application/json"])
    };
    let not_ready = "The review is not in a state for this (collecting, failed, signed off, or findings still open)";
    Serving {
        endpoints: vec![
            Endpoint::get("/api/compliance/whoami/", "The caller's organisation, role and identity", op!(s, who_am_i)),
            Endpoint::get(USERS, "List the organisation's users (admins, auditors)", op!(s, list_users)).list(),
            Endpoint::get(USER_ID, "Get a user (admins, auditors)", op!(s, get_user)),
            Endpoint::patch(USER_ID, "Change a user's role or deactivate them (admins)", op!(s, update_user))
                .body_field("user")
                .fails(StatusCode::CONFLICT, "The user is the organisation's last active admin"),
            Endpoint::get(TOKENS, "List API tokens (one's own; admins and auditors: all)", op!(s, list_api_tokens))
                .list(),
            Endpoint::post(TOKENS, "Create an API token; its secret is answered this once", op!(s, create_api_token))
                .created()
                .fails(StatusCode::CONFLICT, "The token's user is deactivated"),
            Endpoint::post(
                "/api/compliance/tokens/{id}/revoke/",
                "Revoke an API token (its owner, or an admin)",
                op!(s, revoke_api_token),
            ),
            Endpoint::get(REVIEWS, "List access reviews, newest first (admins, auditors)", op!(r, list_access_reviews))
                .list(),
            Endpoint::post(
                "/api/compliance/access-reviews/start_review/",
                "Start an access review (admins): its findings are collected by a job",
                op!(r, start_access_review),
            )
            .accepted()
            .fails(StatusCode::CONFLICT, "Another review is still collecting its findings"),
            Endpoint::get(REVIEW, "Get an access review (admins, auditors)", op!(r, get_access_review)),
            Endpoint::post(
                "/api/compliance/access-reviews/{id}/sign_off/",
                "Sign an access review off once every finding is decided (admins); it never changes again",
                op!(r, sign_off_access_review),
            )
            .fails(StatusCode::CONFLICT, not_ready),
            Endpoint::download(
                "/api/compliance/access-reviews/{id}/report/",
                "The signed-off review's report: the exact bytes whose SHA-256 the review shows (admins, auditors)",
                report,
            )
            .fails(StatusCode::CONFLICT, "The review is not signed off yet: it has no report"),
            Endpoint::get(
                STALE,
                "List stale-access findings: ?review=, ?status=, ?kind=, ?user= (admins, auditors)",
                op!(r, list_stale_access),
            )
            .list(),
            Endpoint::get(
                "/api/compliance/stale-access/{id}/",
                "Get a stale-access finding (admins, auditors)",
                op!(r, get_stale_access),
            ),
            Endpoint::post(
                "/api/compliance/stale-access/{id}/resolve/",
                "Decide a finding (admins): revoked takes the access away at once; retained needs a justification",
                op!(r, resolve_stale_access),
            )
            .fails(StatusCode::CONFLICT, "Already decided, the review is signed off, or the last active admin"),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<RoleName>(&[
                    "WhoAmIResponse.role",
                    "User.role",
                    "UserInput.role",
                    "ListUsersRequest.role",
                    "ApiToken.role",
                    "ApiToken.effective_role",
                    "CreateApiTokenRequest.role",
                    "StaleAccessFinding.user_role",
                    "ResolveStaleAccessRequest.demote_to",
                ]),
                ValueSet::of::<ReviewStatus>(&["AccessReview.status", "ListAccessReviewsRequest.status"]),
                ValueSet::of::<FindingKind>(&["StaleAccessFinding.kind", "ListStaleAccessRequest.kind"]),
                ValueSet::of::<FindingStatus>(&["StaleAccessFinding.status", "ListStaleAccessRequest.status"]),
                ValueSet::of::<Resolution>(&["ResolveStaleAccessRequest.resolution"]),
            ],
            required: vec!["CreateApiTokenRequest.name", "ResolveStaleAccessRequest.resolution"],
        },
        grpc: vec![
            GrpcService::new(IdentityServiceServer::new(app.identity.clone())),
            GrpcService::new(AccessReviewsServiceServer::new(r.clone())),
        ],
        jobs: vec![reviews::review_job(r.clone())],
        schedules: vec![ScheduleDef::new(
            ACCESS_REVIEW_SCHEDULE,
            reviews::REVIEW_JOB,
            Scope::Organization,
            "0 0 1 1,4,7,10 *",
            "Starts the quarterly access review: stale users and tokens, unconfirmed admins, tokens of deactivated users and tokens without expiry",
        )],
        ..Serving::default()
    }
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Manage organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Access reviews.
    #[command(subcommand)]
    AccessReview(AccessReviewCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccessReviewCommand {
    /// Run an access review now (as the quarterly schedule does), here, with progress: for one
    /// organisation, or for every organisation in turn. Decide its findings and sign it off over
    /// the API.
    Run {
        /// The organisation's slug (default: every organisation).
        #[arg(long)]
        org: Option<String>,
        /// Queue the review's job for a server and return.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation.
    Create {
        /// URL-safe identifier: lowercase letters, digits and dashes.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user (the user is created if missing; their role is set).
    /// The token is printed once, as the last line of output.
    Create {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// viewer, editor, admin or auditor.
        #[arg(long)]
        role: String,
        /// A label for the token, shown in listings.
        #[arg(long, default_value = "cli")]
        name: String,
        /// When the token stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z); default: never.
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

async fn run(command: IdentityCommand) -> anyhow::Result<()> {
    match command {
        IdentityCommand::AccessReview(AccessReviewCommand::Run { org, detach, db }) => {
            let app = app_for(&db).await?;
            for (_, slug) in organisations(&app, org.as_deref()).await? {
                println!("access review of {slug}:");
                super::jobs::run_schedule(ACCESS_REVIEW_SCHEDULE, Some(slug), detach, &db).await?;
            }
        }
        IdentityCommand::Org(OrgCommand::Create { slug, name, db }) => {
            let app = app_for(&db).await?;
            let org = app.identity.create_organization(&slug, &name).await.map_err(problem)?;
            println!("created organisation {} ({}) id={}", org.slug, org.name, org.id);
        }
        IdentityCommand::Token(TokenCommand::Create { org, email, role, name, expires_at, db }) => {
            let role: Role = role.parse().map_err(|p: custos_core::Problem| {
                anyhow::anyhow!("{}", p.details.as_str().unwrap_or("invalid role"))
            })?;
            let expires_at = custos_core::filter::parse_opt_timestamp("expires_at", expires_at.as_deref())
                .map_err(|p| anyhow::anyhow!("--expires-at: {}", p.details.as_str().unwrap_or("invalid timestamp")))?;
            let app = app_for(&db).await?;
            let issued =
                app.identity.issue_token_expiring(&org, &email, role, &name, expires_at).await.map_err(problem)?;
            if issued.user_created {
                println!("created user {email} ({role}) id={}", issued.user_id);
            } else {
                println!("user {email} ({role}) id={}", issued.user_id);
            }
            if let Some(at) = expires_at {
                println!("the token expires at {}", custos_core::timefmt::timestamp(at));
            }
            println!("token id={} — store it now, it cannot be shown again:", issued.token_id);
            println!("{}", issued.token);
        }
    }
    Ok(())
}
