//! Organisations, users, roles and API tokens: `whoami`, the gRPC service, and the operator
//! commands `custos org create` and `custos token create`.

use clap::Subcommand;
use custos_core::Role;
use custos_proto::v1::identity_service_server::IdentityServiceServer;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for, problem};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::server::App;

pub const DOMAIN: Domain =
    Domain { name: "identity", serve, cli: Some(crate::domain_cli!(IdentityCommand, run, |_| false)) };

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.identity;
    Serving {
        endpoints: vec![Endpoint::get(
            "/api/compliance/whoami/",
            "The caller's organisation, role and identity",
            op!(s, who_am_i),
        )],
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
        IdentityCommand::Token(TokenCommand::Create { org, email, role, name, db }) => {
            let role: Role = role.parse().map_err(|p: custos_core::Problem| {
                anyhow::anyhow!("{}", p.details.as_str().unwrap_or("invalid role"))
            })?;
            let app = app_for(&db).await?;
            let issued = app.identity.issue_token(&org, &email, role, &name).await.map_err(problem)?;
            if issued.user_created {
                println!("created user {email} ({role}) id={}", issued.user_id);
            } else {
                println!("user {email} ({role}) id={}", issued.user_id);
            }
            println!("token id={} — store it now, it cannot be shown again:", issued.token_id);
            println!("{}", issued.token);
        }
    }
    Ok(())
}
