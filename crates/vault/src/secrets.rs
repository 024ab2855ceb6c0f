//! The central secrets vault (seed 004): secrets kept encrypted under a data key of their own,
//! their value in no response but a reveal's; reveals and refused attempts audited (the entry
//! committed before the value is released); an optional two-person rule; versions kept (the last
//! [`VERSIONS_KEPT`]) and rotation.

// The value set's variants are named by their strings.
#![allow(missing_docs)]

use custos_audit_chain::{record_change, snapshot};
use custos_core::ctx::{Access, Role};
use custos_core::filter::{self, Choice, opt_choice, opt_uuid, parse_id, parse_uuid, search_pattern};
use custos_core::page::cursor;
use custos_core::{ErrorKind, ListRequest, Problem, RequestCtx, new_id, timefmt, update};
use custos_db::refs::{self, Kind, Lock};
use custos_db::schema::{secret_reveal_requests as requests, secret_versions, secrets};
use custos_db::{Tx, choice, list};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::store::{Vault, VaultServiceError};

type Result<T, E = VaultServiceError> = std::result::Result<T, E>;

/// Versions of a secret kept (the current one and the four before it).
pub const VERSIONS_KEPT: i32 = 5;
/// How long an approved reveal request may be used.
pub const APPROVAL_VALID: Duration = Duration::minutes(15);
/// Rotation period when rotation is enabled without one (the seed's example).
pub const DEFAULT_ROTATION_DAYS: i32 = 90;
/// The largest value kept.
const VALUE_MAX: usize = 64 * 1024;
/// What responses show instead of a value.
pub const REDACTED: &str = "********";
const SECRETS: &str = "secrets";

choice! {
    /// What a secret is; `postgres_role` secrets are rotated by Custos itself.
    pub enum SecretType {
        ApiKey = "api_key",
        Password = "password",
        Token = "token",
        Certificate = "certificate",
        SshKey = "ssh_key",
        OauthClientSecret = "oauth_client_secret",
        EncryptionKey = "encryption_key",
        DatabasePassword = "database_password",
        PostgresRole = "postgres_role",
        Other = "other",
    }
}

custos_core::page_responses! {
    pb::ListSecretsResponse { pb::Secret } + next_cursor;
}

/// A secret's row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = secrets)]
#[allow(missing_docs)]
pub struct SecretRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub secret_type: SecretType,
    pub owner_id: Option<Uuid>,
    pub rotation_enabled: bool,
    pub rotation_days: Option<i32>,
    pub two_person_rule: bool,
    pub version: i32,
    pub data_key_id: Uuid,
    pub last_rotated_at: Option<OffsetDateTime>,
    pub next_rotation_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub due_reported_at: Option<OffsetDateTime>,
    pub rotation_error: Option<String>,
}

impl SecretRow {
    fn to_pb(&self) -> pb::Secret {
        let now = timefmt::now();
        pb::Secret {
            id: self.id.to_string(),
            name: self.name.clone(),
            description: self.description.clone(),
            secret_type: self.secret_type.to_string(),
            secret_value: REDACTED.to_owned(),
            rotation_enabled: self.rotation_enabled,
            rotation_days: self.rotation_days,
            owner: self.owner_id.map(|o| o.to_string()),
            two_person_rule: self.two_person_rule,
            version: self.version,
            last_rotated_at: self.last_rotated_at.map(timefmt::timestamp),
            next_rotation_at: self.next_rotation_at.map(timefmt::timestamp),
            rotation_due: self.rotation_enabled && self.next_rotation_at.is_some_and(|t| t <= now),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
            rotation_error: self.rotation_error.clone(),
        }
    }

    fn to_input(&self) -> pb::SecretInput {
        pb::SecretInput {
            name: self.name.clone(),
            description: self.description.clone(),
            secret_type: self.secret_type.to_string(),
            secret_value: None,
            rotation_enabled: Some(self.rotation_enabled),
            rotation_days: self.rotation_days,
            owner: self.owner_id.map(|o| o.to_string()),
            two_person_rule: Some(self.two_person_rule),
        }
    }
}

/// The validated metadata of a secret.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = secrets, treat_none_as_null = true)]
struct SecretFields {
    name: String,
    description: String,
    secret_type: SecretType,
    owner_id: Option<Uuid>,
    rotation_enabled: bool,
    rotation_days: Option<i32>,
    two_person_rule: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = requests)]
struct RequestRow {
    id: Uuid,
    secret_id: Uuid,
    requested_by: Uuid,
    reason: String,
    status: String,
    approved_by: Option<Uuid>,
    approved_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    used_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

impl RequestRow {
    fn to_pb(&self) -> pb::RevealRequest {
        let expired = self.status == "approved" && self.expires_at.is_some_and(|e| e <= timefmt::now());
        pb::RevealRequest {
            id: self.id.to_string(),
            secret: self.secret_id.to_string(),
            requested_by: self.requested_by.to_string(),
            reason: self.reason.clone(),
            status: if expired { "expired".into() } else { self.status.clone() },
            approved_by: self.approved_by.map(|u| u.to_string()),
            approved_at: self.approved_at.map(timefmt::timestamp),
            expires_at: self.expires_at.map(timefmt::timestamp),
            used_at: self.used_at.map(timefmt::timestamp),
            created_at: timefmt::timestamp(self.created_at),
        }
    }
}

/// Where a version's ciphertext belongs: the secret and the version, so a ciphertext moved to
/// another secret or version does not open.
pub(crate) fn record_of(id: Uuid) -> String {
    format!("secret:{id}")
}

pub(crate) fn field_of(version: i32) -> String {
    format!("value:v{version}")
}

fn not_found(id: impl std::fmt::Display) -> VaultServiceError {
    Problem::not_found("Secret", id).into()
}

fn denied(details: impl Into<String>) -> Problem {
    Problem::new(ErrorKind::PermissionDenied, "You do not have permission to perform this action", details.into())
}

fn value_of(field: &str, raw: Option<&str>) -> Result<String> {
    let value = raw.unwrap_or_default();
    if value.is_empty() {
        return Err(Problem::invalid_field(field, "a value is required").into());
    }
    if value.len() > VALUE_MAX {
        return Err(Problem::invalid_field(field, format!("at most {VALUE_MAX} bytes")).into());
    }
    if value.contains('\0') {
        return Err(Problem::invalid_field(field, "holds a NUL character").into());
    }
    Ok(value.to_owned())
}

/// Whether `ctx` may reveal and rotate `row`: admins, and its owner.
fn may_use(ctx: &RequestCtx, row: &SecretRow) -> bool {
    ctx.role == Role::Admin || (row.owner_id.is_some() && ctx.actor.user_id() == row.owner_id)
}

/// The secrets vault's operations, written once: REST, gRPC and the CLI call them.
#[derive(Clone)]
pub struct SecretsService {
    vault: Vault,
}

impl SecretsService {
    /// The secrets vault over the platform's [`Vault`].
    pub fn new(vault: Vault) -> SecretsService {
        SecretsService { vault }
    }

    async fn begin(&self, ctx: &RequestCtx, access: Access) -> Result<Tx> {
        Ok(self.vault.db().begin_as(ctx, access).await?)
    }

    /// `GET /api/compliance/secrets/`.
    pub async fn list_secrets(&self, ctx: &RequestCtx, req: pb::ListSecretsRequest) -> Result<pb::ListSecretsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = Filters::parse(&req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(SECRETS)?;
        let org = ctx.organization_id;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((secrets::created_at.desc(), secrets::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(SecretRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((secrets::created_at, secrets::id), key));
        }
        let rows: Vec<SecretRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(SECRETS, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        tx.commit().await?;
        let results = page.results.iter().map(SecretRow::to_pb).collect();
        Ok(pb::ListSecretsResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/secrets/{id}/`: metadata, the value redacted.
    pub async fn get_secret(&self, ctx: &RequestCtx, req: pb::GetSecretRequest) -> Result<pb::Secret> {
        let id = parse_id("Secret", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx, id, false).await?;
        tx.commit().await?;
        Ok(row.to_pb())
    }

    /// `POST /api/compliance/secrets/`: stored encrypted under a data key of its own (editors,
    /// admins).
    pub async fn create_secret(&self, ctx: &RequestCtx, req: pb::CreateSecretRequest) -> Result<pb::Secret> {
        let input = req.secret.unwrap_or_default();
        let value = value_of("secret_value", input.secret_value.as_deref())?;
        let fields = validate(input)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        check_owner(&mut tx, ctx, fields.owner_id).await?;
        let id = new_id();
        let (data_key, key) = self.vault.create_data_key(&mut tx, ctx, "secret").await?;
        let now = timefmt::now();
        let next = fields
            .rotation_enabled
            .then(|| now + Duration::days(fields.rotation_days.unwrap_or(DEFAULT_ROTATION_DAYS).into()));
        let inserted = diesel::insert_into(secrets::table)
            .values((
                secrets::id.eq(id),
                secrets::organization_id.eq(ctx.organization_id),
                secrets::data_key_id.eq(data_key),
                secrets::next_rotation_at.eq(next),
                &fields,
            ))
            .execute(tx.conn())
            .await;
        unique_name(inserted, &fields.name)?;
        let ciphertext = crate::encrypt_field(
            &key,
            &crate::FieldContext {
                organization: ctx.organization_id,
                data_key,
                record: &record_of(id),
                field: &field_of(1),
            },
            value.as_bytes(),
        );
        store_version(&mut tx, ctx, id, 1, ciphertext).await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let created = row.to_pb();
        record_change(&mut tx, ctx, "create", "secret", id, Value::Null, snapshot(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// `PUT`/`PATCH /api/compliance/secrets/{id}/`: its metadata (the value changes by rotation).
    pub async fn update_secret(&self, ctx: &RequestCtx, req: pb::UpdateSecretRequest) -> Result<pb::Secret> {
        let id = parse_id("Secret", &req.id)?;
        let input = req.secret.unwrap_or_default();
        if input.secret_value.is_some() {
            return Err(Problem::invalid_field(
                "secret_value",
                "a secret's value changes by rotation (POST …/rotate/)",
            )
            .into());
        }
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) = update::apply::<_, pb::Secret>(current.to_input(), input, mask)? else {
            tx.commit().await?;
            return Ok(current.to_pb());
        };
        let fields = validate(input)?;
        // Who may reveal it is an admin's decision: otherwise an editor could make themselves
        // the owner (or lift the two-person rule) and reveal the value.
        if ctx.role != Role::Admin
            && (fields.owner_id != current.owner_id || fields.two_person_rule != current.two_person_rule)
        {
            return Err(denied("only admins change a secret's owner or its two-person rule").into());
        }
        check_owner(&mut tx, ctx, fields.owner_id).await?;
        // The next rotation follows the period from the last one (or the creation).
        let from = current.last_rotated_at.unwrap_or(current.created_at);
        let next = fields
            .rotation_enabled
            .then(|| from + Duration::days(fields.rotation_days.unwrap_or(DEFAULT_ROTATION_DAYS).into()));
        let updated = diesel::update(
            secrets::table.filter(secrets::organization_id.eq(ctx.organization_id)).filter(secrets::id.eq(id)),
        )
        .set((&fields, secrets::next_rotation_at.eq(next), secrets::updated_at.eq(timefmt::now())))
        .execute(tx.conn())
        .await;
        unique_name(updated, &fields.name)?;
        let after = find(&mut tx, ctx, id, false).await?.to_pb();
        record_change(&mut tx, ctx, "update", "secret", id, snapshot(&current.to_pb()), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// `DELETE /api/compliance/secrets/{id}/` (admins): the secret, its versions and requests.
    pub async fn delete_secret(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteSecretRequest,
    ) -> Result<pb::DeleteSecretResponse> {
        let id = parse_id("Secret", &req.id)?;
        let mut tx = self.begin(ctx, Access::Admin).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        diesel::delete(
            secrets::table.filter(secrets::organization_id.eq(ctx.organization_id)).filter(secrets::id.eq(id)),
        )
        .execute(tx.conn())
        .await?;
        record_change(&mut tx, ctx, "delete", "secret", id, snapshot(&current.to_pb()), Value::Null).await?;
        tx.commit().await?;
        Ok(pb::DeleteSecretResponse {})
    }

    /// `GET /api/compliance/secrets/{id}/reveal/?reason=…`: the value, to admins and the owner,
    /// with a reason. The reveal — or the refusal — is recorded and committed first; only then
    /// is the value released.
    pub async fn reveal_secret(&self, ctx: &RequestCtx, req: pb::RevealSecretRequest) -> Result<pb::RevealedSecret> {
        let id = parse_id("Secret", &req.id)?;
        let reason = filter::required_text("reason", req.reason.trim(), 1000)
            .map_err(|_| Problem::invalid_field("reason", "a reason is required to reveal a secret"))?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx, id, true).await?;
        let version = req.version.unwrap_or(row.version);
        let refusal = if !may_use(ctx, &row) {
            Some("only admins and the secret's owner may reveal it".to_owned())
        } else if version > row.version || version < 1 {
            Some(format!("version {version} is not in use (the current one is {})", row.version))
        } else if version != row.version && ctx.role != Role::Admin {
            Some("earlier versions are revealed to admins only".to_owned())
        } else {
            None
        };
        // Under the two-person rule, an approval of another admin, still valid, used once.
        let approval = match (&refusal, row.two_person_rule, ctx.actor.user_id()) {
            (None, true, Some(user)) => requests::table
                .filter(requests::organization_id.eq(ctx.organization_id))
                .filter(requests::secret_id.eq(id))
                .filter(requests::requested_by.eq(user))
                .filter(requests::status.eq("approved"))
                .filter(requests::expires_at.gt(timefmt::now()))
                .order(requests::approved_at.desc())
                .select(requests::id)
                .for_update()
                .first::<Uuid>(tx.conn())
                .await
                .optional()?,
            _ => None,
        };
        let refusal = refusal.or_else(|| {
            (row.two_person_rule && approval.is_none())
                .then(|| "the two-person rule applies: a reveal request approved by another admin is needed".to_owned())
        });
        if let Some(why) = refusal {
            let attempt = json!({ "reason": reason, "version": version, "refused": why });
            record_change(&mut tx, ctx, "reveal_refused", "secret", id, Value::Null, attempt).await?;
            tx.commit().await?;
            return Err(denied(why).into());
        }
        let value = self.open_version(&mut tx, ctx, &row, version).await?.ok_or_else(|| {
            Problem::not_found("Secret version", format!("{version} (the last {VERSIONS_KEPT} versions are kept)"))
        })?;
        if let Some(request) = approval {
            diesel::update(requests::table.filter(requests::id.eq(request)))
                .set((requests::status.eq("used"), requests::used_at.eq(timefmt::now())))
                .execute(tx.conn())
                .await?;
        }
        let revealed = json!({ "reason": reason, "version": version, "reveal_request": approval });
        record_change(&mut tx, ctx, "reveal", "secret", id, Value::Null, revealed).await?;
        tx.commit().await?;
        let secret_value =
            String::from_utf8(value.to_vec()).map_err(|_| Problem::internal("a secret's value is not UTF-8"))?;
        Ok(pb::RevealedSecret {
            id: id.to_string(),
            version,
            secret_value,
            revealed_at: timefmt::timestamp(timefmt::now()),
        })
    }

    /// `row`'s value at `version`, decrypted (`None`: no such version is kept).
    pub(crate) async fn open_version(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        row: &SecretRow,
        version: i32,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let ciphertext: Option<Vec<u8>> = secret_versions::table
            .filter(secret_versions::organization_id.eq(ctx.organization_id))
            .filter(secret_versions::secret_id.eq(row.id))
            .filter(secret_versions::version.eq(version))
            .select(secret_versions::ciphertext)
            .first(tx.conn())
            .await
            .optional()?;
        let Some(ciphertext) = ciphertext else { return Ok(None) };
        let value = self
            .vault
            .decrypt(tx, ctx.organization_id, row.data_key_id, &record_of(row.id), &field_of(version), &ciphertext)
            .await?;
        Ok(Some(value))
    }

    /// The platform's vault (data keys) this service encrypts through.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// `POST /api/compliance/secrets/{id}/rotate/` with `new_value` (admins and the owner): a new
    /// version; the oldest beyond [`VERSIONS_KEPT`] is destroyed.
    pub async fn rotate_secret(&self, ctx: &RequestCtx, req: pb::RotateSecretRequest) -> Result<pb::Secret> {
        let id = parse_id("Secret", &req.id)?;
        let value = value_of("new_value", Some(&req.new_value))?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx, id, true).await?;
        if !may_use(ctx, &row) {
            return Err(denied("only admins and the secret's owner may rotate it").into());
        }
        let after = self.rotate_in(&mut tx, ctx, &row, &value).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Stores `value` as `row`'s next version in `tx` (also the automated rotation's step).
    pub async fn rotate_in(&self, tx: &mut Tx, ctx: &RequestCtx, row: &SecretRow, value: &str) -> Result<pb::Secret> {
        let version = row.version + 1;
        // A value set by hand replaces one an automated rotation had prepared and not finished.
        diesel::delete(
            secret_versions::table
                .filter(secret_versions::organization_id.eq(ctx.organization_id))
                .filter(secret_versions::secret_id.eq(row.id))
                .filter(secret_versions::version.gt(row.version)),
        )
        .execute(tx.conn())
        .await?;
        let ciphertext = self
            .vault
            .encrypt(tx, ctx.organization_id, row.data_key_id, &record_of(row.id), &field_of(version), value.as_bytes())
            .await?;
        store_version(tx, ctx, row.id, version, ciphertext).await?;
        let now = timefmt::now();
        let next = row
            .rotation_enabled
            .then(|| now + Duration::days(row.rotation_days.unwrap_or(DEFAULT_ROTATION_DAYS).into()));
        diesel::update(
            secrets::table.filter(secrets::organization_id.eq(ctx.organization_id)).filter(secrets::id.eq(row.id)),
        )
        .set((
            secrets::version.eq(version),
            secrets::last_rotated_at.eq(now),
            secrets::next_rotation_at.eq(next),
            secrets::updated_at.eq(now),
        ))
        .execute(tx.conn())
        .await?;
        let after = find(tx, ctx, row.id, false).await?.to_pb();
        record_change(tx, ctx, "rotate", "secret", row.id, snapshot(&row.to_pb()), snapshot(&after)).await?;
        Ok(after)
    }

    /// `POST /api/compliance/secrets/{id}/reveal_requests/` (admins and the owner).
    pub async fn create_reveal_request(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateRevealRequestRequest,
    ) -> Result<pb::RevealRequest> {
        let id = parse_id("Secret", &req.id)?;
        let reason = filter::required_text("reason", req.reason.trim(), 1000)?;
        let user = ctx.actor.user_id().ok_or_else(|| denied("a reveal request is made by a user"))?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx, id, false).await?;
        if !may_use(ctx, &row) {
            return Err(denied("only admins and the secret's owner may ask to reveal it").into());
        }
        let request = new_id();
        diesel::insert_into(requests::table)
            .values((
                requests::id.eq(request),
                requests::organization_id.eq(ctx.organization_id),
                requests::secret_id.eq(id),
                requests::requested_by.eq(user),
                requests::reason.eq(&reason),
            ))
            .execute(tx.conn())
            .await?;
        let created = find_request(&mut tx, ctx, id, request).await?.to_pb();
        record_change(&mut tx, ctx, "create", "secret_reveal_request", request, Value::Null, snapshot(&created))
            .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// `POST /api/compliance/secrets/{id}/reveal_requests/{request_id}/approve/`: by an admin
    /// other than the requester; usable for [`APPROVAL_VALID`].
    pub async fn approve_reveal_request(
        &self,
        ctx: &RequestCtx,
        req: pb::ApproveRevealRequestRequest,
    ) -> Result<pb::RevealRequest> {
        let id = parse_id("Secret", &req.id)?;
        let request = parse_uuid("request_id", req.request_id.trim())?;
        let mut tx = self.begin(ctx, Access::Admin).await?;
        let current = find_request(&mut tx, ctx, id, request).await?;
        let approver = ctx.actor.user_id().ok_or_else(|| denied("an approval is given by a user"))?;
        if approver == current.requested_by {
            return Err(denied("a second admin must approve: not the requester").into());
        }
        if current.status != "pending" {
            return Err(Problem::state_conflict(
                "The request is not pending",
                format!("it is {}", current.to_pb().status),
            )
            .into());
        }
        let now = timefmt::now();
        diesel::update(requests::table.filter(requests::id.eq(request)))
            .set((
                requests::status.eq("approved"),
                requests::approved_by.eq(approver),
                requests::approved_at.eq(now),
                requests::expires_at.eq(now + APPROVAL_VALID),
            ))
            .execute(tx.conn())
            .await?;
        let after = find_request(&mut tx, ctx, id, request).await?.to_pb();
        record_change(
            &mut tx,
            ctx,
            "approve",
            "secret_reveal_request",
            request,
            snapshot(&current.to_pb()),
            snapshot(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// `GET /api/compliance/secrets/{id}/reveal_requests/` (admins and the owner), newest first.
    pub async fn list_reveal_requests(
        &self,
        ctx: &RequestCtx,
        req: pb::ListRevealRequestsRequest,
    ) -> Result<pb::ListRevealRequestsResponse> {
        let id = parse_id("Secret", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx, id, false).await?;
        if !may_use(ctx, &row) {
            return Err(denied("only admins and the secret's owner may see its reveal requests").into());
        }
        let rows: Vec<RequestRow> = requests::table
            .filter(requests::organization_id.eq(ctx.organization_id))
            .filter(requests::secret_id.eq(id))
            .order((requests::created_at.desc(), requests::id.desc()))
            .limit(500)
            .select(RequestRow::as_select())
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(pb::ListRevealRequestsResponse { results: rows.iter().map(RequestRow::to_pb).collect() })
    }
}

pub(crate) async fn find(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> Result<SecretRow> {
    let q = secrets::table
        .filter(secrets::organization_id.eq(ctx.organization_id))
        .filter(secrets::id.eq(id))
        .select(SecretRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    row.optional()?.ok_or_else(|| not_found(id))
}

async fn find_request(tx: &mut Tx, ctx: &RequestCtx, secret: Uuid, id: Uuid) -> Result<RequestRow> {
    requests::table
        .filter(requests::organization_id.eq(ctx.organization_id))
        .filter(requests::secret_id.eq(secret))
        .filter(requests::id.eq(id))
        .select(RequestRow::as_select())
        .first(tx.conn())
        .await
        .optional()?
        .ok_or_else(|| Problem::not_found("Reveal request", id).into())
}

/// Stores a version's ciphertext and destroys those beyond the last [`VERSIONS_KEPT`].
pub(crate) async fn store_version(
    tx: &mut Tx,
    ctx: &RequestCtx,
    id: Uuid,
    version: i32,
    ciphertext: Vec<u8>,
) -> Result<()> {
    diesel::insert_into(secret_versions::table)
        .values((
            secret_versions::organization_id.eq(ctx.organization_id),
            secret_versions::secret_id.eq(id),
            secret_versions::version.eq(version),
            secret_versions::ciphertext.eq(ciphertext),
            secret_versions::created_by.eq(ctx.actor.label()),
        ))
        .execute(tx.conn())
        .await?;
    diesel::delete(
        secret_versions::table
            .filter(secret_versions::organization_id.eq(ctx.organization_id))
            .filter(secret_versions::secret_id.eq(id))
            .filter(secret_versions::version.le(version - VERSIONS_KEPT)),
    )
    .execute(tx.conn())
    .await?;
    Ok(())
}

async fn check_owner(tx: &mut Tx, ctx: &RequestCtx, owner: Option<Uuid>) -> Result<()> {
    if let Some(owner) = owner
        && !refs::exists(tx, ctx.organization_id, Kind::User, owner, Lock::Share).await?
    {
        return Err(Problem::invalid_field("owner", format!("no user {owner} in this organisation")).into());
    }
    Ok(())
}

fn unique_name(result: diesel::QueryResult<usize>, name: &str) -> Result<()> {
    result.map(drop).map_err(|e| {
        custos_db::DbError::from(e)
            .unique_as_conflict("A secret with this name exists", format!("name {name:?} is taken"))
            .into()
    })
}

fn validate(input: pb::SecretInput) -> Result<SecretFields> {
    let rotation_enabled = input.rotation_enabled.unwrap_or(false);
    if let Some(days) = input.rotation_days
        && !(1..=3650).contains(&days)
    {
        return Err(Problem::invalid_field("rotation_days", "between 1 and 3650").into());
    }
    Ok(SecretFields {
        name: filter::required_text("name", input.name.trim(), 200)?,
        description: filter::bounded_text("description", &input.description, 5_000)?,
        secret_type: SecretType::parse_field("secret_type", input.secret_type.trim())?,
        owner_id: opt_uuid("owner", input.owner.as_deref())?,
        rotation_enabled,
        rotation_days: input.rotation_days.or(rotation_enabled.then_some(DEFAULT_ROTATION_DAYS)),
        two_person_rule: input.two_person_rule.unwrap_or(false),
    })
}

struct Filters {
    secret_type: Option<SecretType>,
    owner: Option<Uuid>,
    rotation_due: Option<bool>,
    search: Option<String>,
}

impl Filters {
    fn parse(req: &pb::ListSecretsRequest) -> Result<Self> {
        Ok(Filters {
            secret_type: opt_choice("secret_type", req.secret_type.as_deref())?,
            owner: opt_uuid("owner", req.owner.as_deref())?,
            rotation_due: req.rotation_due,
            search: search_pattern(req.search.as_deref()),
        })
    }

    fn apply(&self, org: Uuid) -> secrets::BoxedQuery<'static, Pg> {
        let mut q = secrets::table.filter(secrets::organization_id.eq(org)).into_boxed();
        if let Some(t) = self.secret_type {
            q = q.filter(secrets::secret_type.eq(t));
        }
        if let Some(owner) = self.owner {
            q = q.filter(secrets::owner_id.eq(owner));
        }
        let now = timefmt::now();
        match self.rotation_due {
            Some(true) => q = q.filter(secrets::rotation_enabled.eq(true)).filter(secrets::next_rotation_at.le(now)),
            Some(false) => {
                q = q.filter(
                    secrets::rotation_enabled
                        .eq(false)
                        .or(secrets::next_rotation_at.is_null())
                        .or(secrets::next_rotation_at.gt(now)),
                )
            }
            None => {}
        }
        if let Some(pattern) = &self.search {
            q = q.filter(secrets::name.ilike(pattern.clone()).or(secrets::description.ilike(pattern.clone())));
        }
        q
    }
}
