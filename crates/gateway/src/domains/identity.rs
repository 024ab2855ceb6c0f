//! Organisations, users, roles and API tokens: `whoami`, the administration of users and tokens,
//! the gRPC service, and the operator commands `custos org create` and `custos token create`.

use clap::Subcommand;
use custos_core::Role;
use custos_identity::model::RoleName;
use custos_proto::v1::identity_service_server::IdentityServiceServer;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for, problem};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain =
    Domain { name: "identity", serve, cli: Some(crate::domain_cli!(IdentityCommand, run, |_| false)) };

const USERS: &str = "/api/compliance/users/";
const USER_ID: &str = "/api/compliance/users/{id}/";
const TOKENS: &str = "/api/compliance/tokens/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.identity;
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
        ],
        description: ApiDescription {
            value_sets: vec![ValueSet::of::<RoleName>(&[
                "WhoAmIResponse.role",
                "User.role",
                "UserInput.role",
                "ListUsersRequest.role",
                "ApiToken.role",
                "ApiToken.effective_role",
                "CreateApiTokenRequest.role",
            ])],
            required: vec!["CreateApiTokenRequest.name"],
        },
        grpc: vec![GrpcService::new(IdentityServiceServer::new(app.identity.clone()))],
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
