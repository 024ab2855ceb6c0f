//! Automated secret rotation: the daily `secret-rotation` schedule (03:00 UTC) takes each
//! organisation's due secrets. A `postgres_role` secret (its value: the role's connection URL)
//! Custos rotates itself: a new random password, set by the role on itself (`ALTER ROLE
//! CURRENT_USER`) as a SCRAM-SHA-256 verifier — the password never reaches the server in the
//! clear —, proven by logging in with it, then stored as the next version. Any other due secret
//! is reported once per due period (an audit entry for its owner; notifications deliver it once
//! they exist).
//!
//! Crash safety, because the change happens outside our database: the new value is stored first
//! (as a version after the current one, not yet in use), then the role is changed, then the
//! version becomes current. A rerun finds the prepared value and uses it; if the role already
//! has it (the old password no longer logs in, the new one does), it only finishes the step.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use custos_audit_chain::record_change;
use custos_core::RequestCtx;
use custos_db::DbError;
use custos_db::schema::secrets;
use custos_jobs::{Job, JobError, Kind, Scope};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::secrets::{SecretType, SecretsService, field_of, find, record_of, store_version};

/// The kind of the rotation job.
pub const ROTATION_JOB: &str = "vault.secret_rotation";
/// SCRAM-SHA-256 iterations (PostgreSQL's default).
const SCRAM_ITERATIONS: u32 = 4096;
const PASSWORD_LEN: usize = 32;

/// What happened to one due secret.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Rotated,
    Reported,
    AlreadyReported,
    Failed(String),
    NotDue,
}

/// The rotation job's kind (one job per organisation).
pub fn rotation_job(service: SecretsService) -> Kind {
    Kind::new(
        ROTATION_JOB,
        Scope::Organization,
        "Rotates due PostgreSQL role secrets; reports the other due secrets",
        move |job: Job| {
            let service = service.clone();
            async move {
                let org = job.organization().ok_or_else(|| JobError::fatal("a rotation belongs to an organisation"))?;
                let ctx = job.ctx(org);
                let due: Vec<Uuid> = {
                    let mut tx = service.vault().db().begin(org).await?;
                    let ids = secrets::table
                        .filter(secrets::organization_id.eq(org))
                        .filter(secrets::rotation_enabled.eq(true))
                        .filter(secrets::next_rotation_at.le(custos_core::timefmt::now()))
                        .order(secrets::id)
                        .select(secrets::id)
                        .load(tx.conn())
                        .await
                        .map_err(DbError::from)?;
                    tx.commit().await?;
                    ids
                };
                let mut report = serde_json::Map::new();
                for (i, id) in due.iter().enumerate() {
                    job.check()?;
                    let outcome = rotate_due(&service, &job, &ctx, *id).await?;
                    let (counter, text) = match &outcome {
                        Outcome::Rotated => ("rotated", "rotated".to_owned()),
                        Outcome::Reported => ("reported", "due: reported to its owner".to_owned()),
                        Outcome::AlreadyReported => ("already_reported", "due: already reported".to_owned()),
                        Outcome::Failed(e) => ("failed", format!("failed: {e}")),
                        Outcome::NotDue => ("not_due", "no longer due".to_owned()),
                    };
                    job.count(counter, 1);
                    report.insert(id.to_string(), Value::String(text));
                    job.set_progress((i + 1) as f64 / due.len() as f64);
                }
                Ok(Value::Object(report))
            }
        },
    )
}

async fn rotate_due(service: &SecretsService, job: &Job, ctx: &RequestCtx, id: Uuid) -> Result<Outcome, JobError> {
    let vault = service.vault();
    let org = ctx.organization_id;
    let problem = |e: crate::store::VaultServiceError| JobError::from_problem(e.into());
    let mut tx = vault.db().begin(org).await?;
    let row = find(&mut tx, ctx, id, true).await.map_err(problem)?;
    let now = custos_core::timefmt::now();
    if !row.rotation_enabled || row.next_rotation_at.is_none_or(|t| t > now) {
        return Ok(Outcome::NotDue);
    }
    if row.secret_type != SecretType::PostgresRole {
        // Reported once per due period.
        if row.due_reported_at.is_some_and(|t| row.next_rotation_at.is_some_and(|due| t >= due)) {
            return Ok(Outcome::AlreadyReported);
        }
        diesel::update(secrets::table.filter(secrets::organization_id.eq(org)).filter(secrets::id.eq(id)))
            .set(secrets::due_reported_at.eq(now))
            .execute(tx.conn())
            .await
            .map_err(DbError::from)?;
        let after = json!({ "name": row.name, "owner": row.owner_id, "next_rotation_at": row.next_rotation_at.map(custos_core::timefmt::timestamp) });
        record_change(&mut tx, ctx, "rotation_due", "secret", id, Value::Null, after.clone()).await?;
        // The owner (and whoever subscribed) hears of it through the notification channels.
        let event = json!({ "secret": id, "name": row.name, "owner": row.owner_id, "secret_type": row.secret_type.to_string(),
                            "next_rotation_at": after["next_rotation_at"] });
        custos_db::outbox::emit(&mut tx, org, "secret.rotation_due", event).await?;
        tx.commit().await?;
        return Ok(Outcome::Reported);
    }

    // 1. The next value: the one a previous attempt prepared, or a new one, stored first.
    let next = row.version + 1;
    let current_url = text_version(service, &mut tx, ctx, &row, row.version)
        .await?
        .ok_or_else(|| JobError::fatal(format!("secret {id}: its current version is missing")))?;
    let next_url = match text_version(service, &mut tx, ctx, &row, next).await? {
        Some(prepared) => prepared,
        None => {
            let url = match with_new_password(&current_url) {
                Ok(url) => url,
                Err(e) => return fail(service, ctx, id, e).await,
            };
            let ciphertext = vault
                .encrypt(&mut tx, org, row.data_key_id, &record_of(id), &field_of(next), url.as_bytes())
                .await
                .map_err(problem)?;
            store_version(&mut tx, ctx, id, next, ciphertext).await.map_err(problem)?;
            url
        }
    };
    tx.commit().await?;

    // 2. The role changes its own password; 3. the new one logs in.
    if let Err(e) = set_password(&current_url, &next_url).await {
        return fail(service, ctx, id, e).await;
    }
    // 4. The prepared version becomes the current one, once.
    job.step(&format!("rotate:{id}:v{next}"), Some(org), async |tx| {
        let row = find(tx, ctx, id, true).await.map_err(problem)?;
        if row.version + 1 != next {
            return Ok(());
        }
        let now = custos_core::timefmt::now();
        let days = row.rotation_days.unwrap_or(crate::secrets::DEFAULT_ROTATION_DAYS);
        diesel::update(secrets::table.filter(secrets::organization_id.eq(org)).filter(secrets::id.eq(id)))
            .set((
                secrets::version.eq(next),
                secrets::last_rotated_at.eq(now),
                secrets::next_rotation_at.eq(now + time::Duration::days(days.into())),
                secrets::rotation_error.eq(None::<String>),
                secrets::updated_at.eq(now),
            ))
            .execute(tx.conn())
            .await
            .map_err(DbError::from)?;
        let after =
            json!({ "version": next, "automated": true, "last_rotated_at": custos_core::timefmt::timestamp(now) });
        record_change(tx, ctx, "rotate", "secret", id, json!({ "version": row.version }), after).await?;
        Ok(())
    })
    .await?;
    Ok(Outcome::Rotated)
}

/// `row`'s value at `version` as text (`None`: no such version).
async fn text_version(
    service: &SecretsService,
    tx: &mut custos_db::Tx,
    ctx: &RequestCtx,
    row: &crate::secrets::SecretRow,
    version: i32,
) -> Result<Option<Zeroizing<String>>, JobError> {
    let Some(plain) =
        service.open_version(tx, ctx, row, version).await.map_err(|e| JobError::from_problem(e.into()))?
    else {
        return Ok(None);
    };
    String::from_utf8(plain.to_vec())
        .map(|s| Some(Zeroizing::new(s)))
        .map_err(|_| JobError::fatal("a secret's value is not UTF-8"))
}

/// Records why the rotation of `id` failed (on the secret and in the audit trail); the secret
/// stays due, and the next run tries again.
async fn fail(service: &SecretsService, ctx: &RequestCtx, id: Uuid, error: String) -> Result<Outcome, JobError> {
    let org = ctx.organization_id;
    let mut tx = service.vault().db().begin(org).await?;
    diesel::update(secrets::table.filter(secrets::organization_id.eq(org)).filter(secrets::id.eq(id)))
        .set(secrets::rotation_error.eq(&error))
        .execute(tx.conn())
        .await
        .map_err(DbError::from)?;
    record_change(&mut tx, ctx, "rotation_failed", "secret", id, Value::Null, json!({ "error": error })).await?;
    tx.commit().await?;
    Ok(Outcome::Failed(error))
}

/// `url` (a `postgres://role:password@host/db` URL) with a new random password.
fn with_new_password(url: &str) -> Result<Zeroizing<String>, String> {
    let mut parsed = url::Url::parse(url).map_err(|_| "the secret's value is not a postgres:// URL".to_owned())?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") || parsed.username().is_empty() {
        return Err(
            "the secret's value must be a postgres:// URL naming the role (postgres://role:password@host/db)".into()
        );
    }
    let password: String =
        rand::rng().sample_iter(rand::distr::Alphanumeric).take(PASSWORD_LEN).map(char::from).collect();
    parsed.set_password(Some(&password)).map_err(|_| "the URL cannot carry a password".to_owned())?;
    Ok(Zeroizing::new(parsed.to_string()))
}

fn password_of(url: &str) -> Result<Zeroizing<String>, String> {
    let parsed = url::Url::parse(url).map_err(|_| "not a URL".to_owned())?;
    let decoded = percent_encoding::percent_decode_str(parsed.password().unwrap_or_default()).decode_utf8_lossy();
    Ok(Zeroizing::new(decoded.into_owned()))
}

/// Sets the role's password to the one in `next_url`, logged in with `current_url` (or finds it
/// already set), and proves it by logging in with `next_url`.
async fn set_password(current_url: &str, next_url: &str) -> Result<(), String> {
    let password = password_of(next_url)?;
    let verifier = scram_verifier(&password, &rand::random::<[u8; 16]>(), SCRAM_ITERATIONS);
    match custos_db::connect_once(current_url).await {
        Ok(mut conn) => {
            // The verifier is base64 and '$' ':' only: nothing to escape.
            diesel::sql_query(format!("ALTER ROLE CURRENT_USER PASSWORD '{verifier}'"))
                .execute(&mut conn)
                .await
                .map_err(|e| format!("ALTER ROLE refused: {e}"))?;
        }
        // Perhaps an earlier attempt changed it already: the new password will tell.
        Err(old) => {
            if custos_db::connect_once(next_url).await.is_err() {
                return Err(format!("cannot log in as the role with its current password: {old}"));
            }
        }
    }
    let mut conn =
        custos_db::connect_once(next_url).await.map_err(|e| format!("the new password does not log in: {e}"))?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map_err(|e| format!("the new password does not log in: {e}"))?;
    Ok(())
}

/// PostgreSQL's SCRAM-SHA-256 verifier of `password` (RFC 5802/7677):
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut *salted);
    let hmac = |key: &[u8], msg: &[u8]| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(msg);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(&*salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&*salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// Whether `verifier` (as `pg_authid.rolpassword` holds it) is `password`'s.
pub fn scram_matches(verifier: &str, password: &str) -> bool {
    let Some(rest) = verifier.strip_prefix("SCRAM-SHA-256$") else { return false };
    let Some((params, _)) = rest.split_once('$') else { return false };
    let Some((iterations, salt)) = params.split_once(':') else { return false };
    let (Ok(iterations), Ok(salt)) = (iterations.parse::<u32>(), STANDARD.decode(salt)) else { return false };
    scram_verifier(password, &salt, iterations) == verifier
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifiers_match_their_password_only() {
        let v = scram_verifier("pencil", b"0123456789abcdef", 4096);
        assert!(v.starts_with("SCRAM-SHA-256$4096:"));
        assert!(scram_matches(&v, "pencil"));
        assert!(!scram_matches(&v, "pen"));
        assert!(!scram_matches("md5abc", "pencil"));
    }

    #[test]
    fn a_new_password_replaces_only_the_password() {
        let url = with_new_password("postgres://app_role:old@db.internal:5432/app?sslmode=require").unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!((parsed.username(), parsed.host_str(), parsed.path()), ("app_role", Some("db.internal"), "/app"));
        assert_eq!(parsed.password().unwrap().len(), PASSWORD_LEN);
        assert_ne!(parsed.password(), Some("old"));
        assert_eq!(parsed.query(), Some("sslmode=require"));
        assert!(with_new_password("mysql://x:y@h/d").is_err());
        assert!(with_new_password("postgres://h/d").is_err());
    }
}
