//! Authentication: `Authorization: Token <api token>` or `Authorization: Bearer <jwt>`.
//!
//! Bearer tokens come from an SSO provider: HS256 with a shared secret or RS256 with the
//! provider's public key. Their claims name the organisation (`org`, its slug) and the `role`;
//! `sub` identifies the caller and `email` is recorded when present.

use custos_core::{Actor, ErrorKind, Problem, Role};
use custos_db::{Db, DbError};
use diesel::QueryableByName;
use diesel::sql_types::{Bytea, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use crate::service::hash_token;

/// The authenticated caller, before a request id or client address is attached.
#[derive(Debug, Clone)]
pub struct Principal {
    pub organization_id: Uuid,
    pub organization_slug: String,
    pub role: Role,
    pub actor: Actor,
}

/// How bearer JWTs are verified.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret.
    Hs256(Vec<u8>),
    /// RS256 with the provider's public key (PEM).
    Rs256Pem(Vec<u8>),
}

#[derive(Clone)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    org: String,
    role: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Clone)]
pub struct Authenticator {
    db: Db,
    jwt: Option<(DecodingKey, Validation)>,
}

fn unauthenticated(details: impl Into<String>) -> Problem {
    Problem::new(ErrorKind::Unauthenticated, "Authentication failed", details.into())
}

impl Authenticator {
    pub fn new(db: Db, jwt: Option<JwtConfig>) -> Result<Self, String> {
        let jwt = match jwt {
            None => None,
            Some(cfg) => {
                let (key, alg) = match &cfg.key {
                    JwtKey::Hs256(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
                    JwtKey::Rs256Pem(pem) => (
                        DecodingKey::from_rsa_pem(pem).map_err(|e| format!("invalid RS256 public key: {e}"))?,
                        Algorithm::RS256,
                    ),
                };
                let mut validation = Validation::new(alg);
                validation.set_required_spec_claims(&["exp", "sub"]);
                if let Some(iss) = &cfg.issuer {
                    validation.set_issuer(&[iss]);
                }
                match &cfg.audience {
                    Some(aud) => validation.set_audience(&[aud]),
                    None => validation.validate_aud = false,
                }
                Some((key, validation))
            }
        };
        Ok(Authenticator { db, jwt })
    }

    /// Resolves an `Authorization` header value to a principal, or a 401 problem.
    pub async fn authenticate(&self, authorization: &str) -> Result<Principal, Problem> {
        let (scheme, credentials) = authorization
            .trim()
            .split_once(' ')
            .ok_or_else(|| unauthenticated("Use 'Authorization: Token <token>' or 'Authorization: Bearer <jwt>'"))?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("token") {
            self.api_token(credentials).await
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(credentials).await
        } else {
            Err(unauthenticated(format!("Unsupported authorization scheme {scheme:?}")))
        }
    }

    async fn api_token(&self, token: &str) -> Result<Principal, Problem> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = SqlUuid)]
            token_id: Uuid,
            #[diesel(sql_type = SqlUuid)]
            organization_id: Uuid,
            #[diesel(sql_type = Text)]
            organization_slug: String,
            #[diesel(sql_type = SqlUuid)]
            user_id: Uuid,
            #[diesel(sql_type = Text)]
            email: String,
            #[diesel(sql_type = Text)]
            role: String,
        }
        let mut tx = self.db.begin_untenanted().await?;
        let row: Option<Row> = diesel::sql_query(
            "SELECT token_id, organization_id, organization_slug, user_id, email, role FROM custos_authenticate_token($1)",
        )
        .bind::<Bytea, _>(hash_token(token).to_vec())
        .get_result(tx.conn())
        .await
        .map(Some)
        .or_else(|e| if e == diesel::result::Error::NotFound { Ok(None) } else { Err(DbError::from(e)) })?;
        tx.commit().await?;
        let row = row.ok_or_else(|| unauthenticated("Invalid, expired or revoked token"))?;
        let role = row.role.parse::<Role>().map_err(|_| unauthenticated("The token's user has an unknown role"))?;
        Ok(Principal {
            organization_id: row.organization_id,
            organization_slug: row.organization_slug,
            role,
            actor: Actor::User { user_id: row.user_id, email: row.email, token_id: row.token_id },
        })
    }

    async fn bearer(&self, jwt: &str) -> Result<Principal, Problem> {
        let (key, validation) =
            self.jwt.as_ref().ok_or_else(|| unauthenticated("Bearer tokens are not enabled on this server"))?;
        let data = jsonwebtoken::decode::<Claims>(jwt, key, validation)
            .map_err(|e| unauthenticated(format!("Invalid bearer token: {e}")))?;
        let claims = data.claims;
        let role =
            claims.role.parse::<Role>().map_err(|_| unauthenticated(format!("Unknown role {:?}", claims.role)))?;
        let (organization_id, _) = self
            .db
            .organization_by_slug(&claims.org)
            .await?
            .ok_or_else(|| unauthenticated(format!("Unknown organisation {:?}", claims.org)))?;
        Ok(Principal {
            organization_id,
            organization_slug: claims.org,
            role,
            actor: Actor::Jwt { subject: claims.sub, email: claims.email },
        })
    }
}
