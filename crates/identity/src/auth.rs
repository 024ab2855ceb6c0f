//! Authentication: `Authorization: Token <api token>` or `Authorization: Bearer <jwt>`.
//!
//! Bearer tokens come from an SSO provider: HS256 with a shared secret or RS256 with the
//! provider's public key. Their claims name the organisation (`org`, its slug) and the `role`;
//! `sub` identifies the caller and `email` is recorded when present.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Where an authentication attempt came from, for the audit trail of failed attempts.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    pub request_id: Option<String>,
    pub client_addr: Option<std::net::IpAddr>,
}

#[derive(Clone)]
pub struct Authenticator {
    db: Db,
    jwt: Option<Jwt>,
    recent: Arc<RecentTokens>,
    /// API tokens refused in the last few seconds, by hash: the same bad token sent again and
    /// again (a misconfigured script, a flood) is answered without a database lookup each time.
    refused_tokens: Arc<RecentTokenRefusals>,
    refusals: Arc<RecentRefusals>,
    /// Bumped when a user or token changes: what was remembered before is not used after.
    changes: CredentialChanges,
}

/// What the identity service tells the authenticators of its process when a user or an API token
/// changes (a role, a deactivation, a revocation): every token lookup they remember from before
/// is forgotten, so the change holds at once here (other processes see it within
/// `CUSTOS_AUTH_CACHE_SECONDS`). Changes are rare, so all is forgotten, not only the one user's.
#[derive(Clone, Default)]
pub struct CredentialChanges(Arc<AtomicU64>);

impl CredentialChanges {
    /// A user or token changed (call after the change is committed).
    pub fn changed(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn generation(&self) -> u64 {
        AtomicU64::load(&self.0, Ordering::SeqCst)
    }
}

const REFUSED_TOKEN: &str = "Invalid, expired or revoked token";

/// How often the same refused credential is recorded in the audit trail at most.
const REFUSAL_RECORD_INTERVAL: Duration = Duration::from_secs(60);

/// Bearer-token checking: the key, what a token must satisfy, and the same without its validity
/// period (which tells an expired or not-yet-valid token meant for this server from a forgery or
/// a token meant for another issuer or audience: only the former's claims name an organisation
/// whose auditors should see the refused attempt).
#[derive(Clone)]
struct Jwt {
    key: DecodingKey,
    validation: Validation,
    out_of_time: Validation,
}

/// Values remembered by a 32-byte hash for `ttl`, in bounded memory. As `RecentTokens`: API
/// tokens that authenticated in the last few seconds, so that a busy client costs one database
/// lookup per interval instead of one per request (a revoked or expired token stops working
/// within the interval, `CUSTOS_AUTH_CACHE_SECONDS`; 0 turns this off). As `RecentRefusals`:
/// refused credentials recently recorded, by a hash of what their entry would say.
struct Recent<V> {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Instant, V)>>,
}

/// Remembered lookups carry the [`CredentialChanges`] generation they were made in.
type RecentTokens = Recent<(u64, Principal)>;
type RecentTokenRefusals = Recent<u64>;
type RecentRefusals = Recent<()>;

impl<V: Clone> Recent<V> {
    /// More distinct keys than this within one interval: forget them all rather than grow.
    const CAPACITY: usize = 10_000;

    fn new(ttl: Duration) -> Self {
        Recent { ttl, entries: Mutex::default() }
    }

    fn get(&self, hash: &[u8; 32]) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries.get(hash).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    /// Remembers `value`, replacing what was remembered (a lookup of an older generation).
    fn replace(&self, hash: [u8; 32], value: V) {
        self.forget(&hash);
        self.put_unless_present(hash, value);
    }

    /// Remembers `value` unless `hash` is remembered already; whether it was not.
    fn put_unless_present(&self, hash: [u8; 32], value: V) -> bool {
        if self.ttl.is_zero() {
            return true;
        }
        let Ok(mut entries) = self.entries.lock() else { return true };
        if entries.get(&hash).is_some_and(|(at, _)| at.elapsed() < self.ttl) {
            return false;
        }
        if entries.len() >= Self::CAPACITY {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
        }
        entries.insert(hash, (Instant::now(), value));
        true
    }

    fn forget(&self, hash: &[u8; 32]) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(hash);
        }
    }
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
                // A configured issuer or audience is required, not only compared when present:
                // the library skips the comparison for a token that omits the claim, and a token
                // the same provider signed for another application may well omit it.
                let mut required = vec!["sub"];
                if let Some(iss) = &cfg.issuer {
                    validation.set_issuer(&[iss]);
                    required.push("iss");
                }
                match &cfg.audience {
                    Some(aud) => {
                        validation.set_audience(&[aud]);
                        required.push("aud");
                    }
                    None => validation.validate_aud = false,
                }
                validation.validate_nbf = true;
                // Everything but the validity period: a token this server would take at another time.
                let mut out_of_time = validation.clone();
                out_of_time.set_required_spec_claims(&required);
                required.push("exp");
                validation.set_required_spec_claims(&required);
                (out_of_time.validate_exp, out_of_time.validate_nbf) = (false, false);
                Some(Jwt { key, validation, out_of_time })
            }
        };
        Ok(Authenticator {
            db,
            jwt,
            recent: Arc::new(RecentTokens::new(Duration::ZERO)),
            refused_tokens: Arc::new(RecentTokenRefusals::new(Duration::ZERO)),
            refusals: Arc::new(RecentRefusals::new(REFUSAL_RECORD_INTERVAL)),
            changes: CredentialChanges::default(),
        })
    }

    /// Forgets remembered token lookups whenever `changes` says a user or token changed (share
    /// the identity service's: [`crate::IdentityService::credential_changes`]).
    pub fn with_credential_changes(mut self, changes: CredentialChanges) -> Self {
        self.changes = changes;
        self
    }

    /// Remembers successful API-token lookups for `ttl` (see [`RecentTokens`]).
    pub fn with_token_cache(mut self, ttl: Duration) -> Self {
        self.recent = Arc::new(RecentTokens::new(ttl));
        self.refused_tokens = Arc::new(RecentTokenRefusals::new(ttl));
        self
    }

    /// Resolves an `Authorization` header value to a principal, or a 401 problem.
    pub async fn authenticate(&self, authorization: &str, attempt: &Attempt) -> Result<Principal, Problem> {
        let (scheme, credentials) = authorization
            .trim()
            .split_once(' ')
            .ok_or_else(|| unauthenticated("Use 'Authorization: Token <token>' or 'Authorization: Bearer <jwt>'"))?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("token") {
            self.api_token(credentials, attempt).await
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(credentials, attempt).await
        } else {
            Err(unauthenticated(format!("Unsupported authorization scheme {scheme:?}")))
        }
    }

    async fn api_token(&self, token: &str, attempt: &Attempt) -> Result<Principal, Problem> {
        let hash = hash_token(token);
        // Taken before the lookup: a change committed while it runs makes its answer stale.
        let generation = self.changes.generation();
        if let Some((_, principal)) = self.recent.get(&hash).filter(|(g, _)| *g == generation) {
            return Ok(principal);
        }
        if self.refused_tokens.get(&hash).is_some_and(|g| g == generation) {
            return Err(unauthenticated(REFUSED_TOKEN));
        }
        match self.look_up_token(token, attempt).await {
            Ok(principal) => {
                self.recent.replace(hash, (generation, principal.clone()));
                Ok(principal)
            }
            Err(refused) => {
                if refused.kind == ErrorKind::Unauthenticated {
                    self.refused_tokens.replace(hash, generation);
                }
                Err(refused)
            }
        }
    }

    async fn look_up_token(&self, token: &str, attempt: &Attempt) -> Result<Principal, Problem> {
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
        let row: Option<Row> = self
            .by_token_hash(
                "SELECT token_id, organization_id, organization_slug, user_id, email, role FROM custos_authenticate_token($1)",
                token,
            )
            .await?;
        let Some(row) = row else {
            self.record_failed_token(token, attempt).await;
            return Err(unauthenticated(REFUSED_TOKEN));
        };
        let role = row.role.parse::<Role>().map_err(|_| unauthenticated("The token's user has an unknown role"))?;
        Ok(Principal {
            organization_id: row.organization_id,
            organization_slug: row.organization_slug,
            role,
            actor: Actor::User { user_id: row.user_id, email: row.email, token_id: row.token_id },
        })
    }

    async fn bearer(&self, jwt: &str, attempt: &Attempt) -> Result<Principal, Problem> {
        let config =
            self.jwt.as_ref().ok_or_else(|| unauthenticated("Bearer tokens are not enabled on this server"))?;
        let claims = match jsonwebtoken::decode::<Claims>(jwt, &config.key, &config.validation) {
            Ok(data) => data.claims,
            Err(e) => {
                let refused = unauthenticated(format!("Invalid bearer token: {e}"));
                use jsonwebtoken::errors::ErrorKind;
                let reason = match e.kind() {
                    ErrorKind::ExpiredSignature => "bearer token expired",
                    ErrorKind::ImmatureSignature => "bearer token not yet valid",
                    // Forged, or for another issuer or audience: its claims name no one reliably.
                    _ => return Err(refused),
                };
                // Valid but for its time: its organisation's auditors see the attempt (each
                // address's attempts are bounded by the anonymous rate limit).
                let Ok(signed) = jsonwebtoken::decode::<Claims>(jwt, &config.key, &config.out_of_time) else {
                    return Err(refused);
                };
                let claims = signed.claims;
                if let Some((organization_id, _)) = self.db.organization_by_slug(&claims.org).await? {
                    let actor = Actor::Jwt { subject: claims.sub.clone(), email: claims.email.clone() };
                    self.record_failure(
                        organization_id,
                        &claims.org,
                        actor,
                        "bearer_token",
                        &claims.sub,
                        reason,
                        attempt,
                    )
                    .await;
                }
                return Err(refused);
            }
        };
        let (organization_id, _) = self
            .db
            .organization_by_slug(&claims.org)
            .await?
            .ok_or_else(|| unauthenticated(format!("Unknown organisation {:?}", claims.org)))?;
        let Ok(role) = claims.role.parse::<Role>() else {
            // Validly signed for a real organisation, but not acceptable: that organisation's
            // auditors should see it.
            let actor = Actor::Jwt { subject: claims.sub.clone(), email: claims.email.clone() };
            let reason = format!("unknown role {:?}", claims.role);
            self.record_failure(organization_id, &claims.org, actor, "bearer_token", &claims.sub, &reason, attempt)
                .await;
            return Err(unauthenticated(format!("Unknown role {:?}", claims.role)));
        };
        Ok(Principal {
            organization_id,
            organization_slug: claims.org,
            role,
            actor: Actor::Jwt { subject: claims.sub, email: claims.email },
        })
    }

    /// Runs one of the pre-tenant token lookups (a `SECURITY DEFINER` function taking the hash).
    async fn by_token_hash<T: QueryableByName<diesel::pg::Pg> + Send + 'static>(
        &self,
        sql: &'static str,
        token: &str,
    ) -> Result<Option<T>, DbError> {
        let mut tx = self.db.begin_untenanted().await?;
        let row = diesel::sql_query(sql)
            .bind::<Bytea, _>(hash_token(token).to_vec())
            .get_result(tx.conn())
            .await
            .map(Some)
            .or_else(|e| if e == diesel::result::Error::NotFound { Ok(None) } else { Err(DbError::from(e)) })?;
        tx.commit().await?;
        Ok(row)
    }

    /// A token that exists but no longer works: record the attempt in its organisation's trail.
    async fn record_failed_token(&self, token: &str, attempt: &Attempt) {
        #[derive(QueryableByName)]
        struct Owner {
            #[diesel(sql_type = SqlUuid)]
            token_id: Uuid,
            #[diesel(sql_type = SqlUuid)]
            organization_id: Uuid,
            #[diesel(sql_type = SqlUuid)]
            user_id: Uuid,
            #[diesel(sql_type = Text)]
            email: String,
            #[diesel(sql_type = Text)]
            problem: String,
        }
        let owner: Result<Option<Owner>, DbError> = self
            .by_token_hash(
                "SELECT token_id, organization_id, user_id, email, problem FROM custos_token_owner($1)",
                token,
            )
            .await;
        match owner {
            Ok(Some(o)) => {
                let actor = Actor::User { user_id: o.user_id, email: o.email, token_id: o.token_id };
                self.record_failure(
                    o.organization_id,
                    "",
                    actor,
                    "api_token",
                    &o.token_id.to_string(),
                    &o.problem,
                    attempt,
                )
                .await;
            }
            Ok(None) => tracing::warn!(client = ?attempt.client_addr, "authentication with an unknown token"),
            Err(e) => tracing::warn!(error = %e, "could not look up the owner of a failed token"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_failure(
        &self,
        organization_id: Uuid,
        slug: &str,
        actor: Actor,
        resource_type: &str,
        resource_id: &str,
        reason: &str,
        attempt: &Attempt,
    ) {
        // The same credential refused again and again (a script retrying an expired token) is
        // recorded once a minute, not once per request: entries are kept for years.
        let key = blake3::hash(format!("{organization_id}\0{resource_type}\0{resource_id}\0{reason}").as_bytes());
        if !self.refusals.put_unless_present(*key.as_bytes(), ()) {
            return;
        }
        let ctx = custos_core::RequestCtx {
            organization_id,
            organization_slug: slug.to_owned(),
            // The attempt was refused: it acted with no role at all.
            role: Role::Viewer,
            actor,
            request_id: attempt.request_id.clone(),
            client_addr: attempt.client_addr,
        };
        let written = async {
            let mut tx = self.db.begin(organization_id).await?;
            custos_audit_chain::record(
                &mut tx,
                &ctx,
                custos_audit_chain::Change {
                    action: "login_failed",
                    resource_type,
                    resource_id: resource_id.to_owned(),
                    before: serde_json::Value::Null,
                    after: serde_json::json!({ "reason": reason }),
                },
            )
            .await?;
            tx.commit().await
        };
        if let Err(e) = written.await {
            // Not recorded after all: the next refusal of this credential tries again.
            self.refusals.forget(key.as_bytes());
            tracing::warn!(error = %e, "could not record a failed authentication");
        }
    }
}
