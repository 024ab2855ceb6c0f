//! Notification channels and test sends, written once: REST, gRPC and the CLI call them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custos_audit_chain::{record_change, snapshot};
use custos_core::ctx::Access;
use custos_core::filter::{self, opt_text, parse_id};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, new_id, timefmt, update};
use custos_db::schema::{
    notification_channels as channels, notification_deliveries as deliveries, notification_outbox as outbox,
};
use custos_db::{Tx, list};
use custos_proto::v1 as pb;
use custos_vault::store::Vault;
use custos_vault::{FieldContext, decrypt_field, encrypt_field};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::signature;

custos_db::service_error! {
    pub enum NotifyError {}
}

type Result<T, E = NotifyError> = std::result::Result<T, E>;

/// The event types a channel can subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "secret.rotation_due",
    "access.stale_finding",
    "access_review.sign_off_due",
    "audit.verification_failed",
    "requirement.assessment_overdue",
    "vulnerability.sla_breached",
    "incident.sla_breached",
    "workflow.overdue",
];
const KINDS: &[&str] = &["email", "webhook"];
const CHANNELS: &str = "notification_channels";
const RECIPIENTS_MAX: usize = 100;
/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i32 = 8;
/// The first retry's delay; each later one doubles it (30 s, 1 min, 2 min, … about an hour).
const RETRY_BASE: time::Duration = time::Duration::seconds(30);
/// How long a webhook may take to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

custos_core::page_responses! {
    pb::ListNotificationChannelsResponse { pb::NotificationChannel } + next_cursor;
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = channels)]
struct ChannelRow {
    id: Uuid,
    name: String,
    kind: String,
    recipients: Vec<String>,
    url: Option<String>,
    event_types: Vec<String>,
    is_active: bool,
    data_key_id: Option<Uuid>,
    signing_secret: Option<Vec<u8>>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl ChannelRow {
    fn to_pb(&self) -> pb::NotificationChannel {
        pb::NotificationChannel {
            id: self.id.to_string(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            recipients: self.recipients.clone(),
            url: self.url.clone(),
            event_types: self.event_types.clone(),
            is_active: self.is_active,
            signing_secret: None,
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
        }
    }

    fn to_input(&self) -> pb::NotificationChannelInput {
        pb::NotificationChannelInput {
            name: self.name.clone(),
            kind: self.kind.clone(),
            recipients: self.recipients.clone(),
            url: self.url.clone(),
            event_types: self.event_types.clone(),
            is_active: Some(self.is_active),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
struct DeliveryRow {
    id: Uuid,
    channel_id: Uuid,
    event_type: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    delivered_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

impl DeliveryRow {
    fn to_pb(&self) -> pb::NotificationDelivery {
        pb::NotificationDelivery {
            id: self.id.to_string(),
            channel: self.channel_id.to_string(),
            event_type: self.event_type.clone(),
            status: self.status.clone(),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            delivered_at: self.delivered_at.map(timefmt::timestamp),
            created_at: timefmt::timestamp(self.created_at),
        }
    }
}

/// Validated fields of a channel.
struct Fields {
    name: String,
    kind: String,
    recipients: Vec<String>,
    url: Option<String>,
    event_types: Vec<String>,
    is_active: bool,
}

fn validate(input: pb::NotificationChannelInput) -> Result<Fields> {
    let kind = input.kind.trim().to_owned();
    if !KINDS.contains(&kind.as_str()) {
        return Err(Problem::invalid_field("kind", format!("{kind:?} is not one of {}", KINDS.join(", "))).into());
    }
    let mut event_types = Vec::new();
    for e in &input.event_types {
        let e = e.trim();
        if !EVENT_TYPES.contains(&e) {
            return Err(Problem::invalid_field(
                "event_types",
                format!("{e:?} is not one of {}", EVENT_TYPES.join(", ")),
            )
            .into());
        }
        if !event_types.iter().any(|x: &String| x == e) {
            event_types.push(e.to_owned());
        }
    }
    let url = opt_text(input.url.as_deref()).map(str::to_owned);
    let mut recipients = Vec::new();
    if kind == "email" {
        if url.is_some() {
            return Err(Problem::invalid_field("url", "an e-mail channel has recipients, not a URL").into());
        }
        if input.recipients.is_empty() || input.recipients.len() > RECIPIENTS_MAX {
            return Err(
                Problem::invalid_field("recipients", format!("between 1 and {RECIPIENTS_MAX} addresses")).into()
            );
        }
        for r in &input.recipients {
            let r = r.trim().to_lowercase();
            let valid = r.len() <= 320
                && r.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !r.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                return Err(Problem::invalid_field("recipients", format!("{r:?} is not an e-mail address")).into());
            }
            if !recipients.contains(&r) {
                recipients.push(r);
            }
        }
    } else {
        if !input.recipients.is_empty() {
            return Err(Problem::invalid_field("recipients", "a webhook channel has a URL, not recipients").into());
        }
        let Some(raw) = &url else {
            return Err(Problem::invalid_field("url", "a webhook channel needs its URL").into());
        };
        let parsed = reqwest::Url::parse(raw).map_err(|e| Problem::invalid_field("url", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() || raw.len() > 2000 {
            return Err(Problem::invalid_field("url", "an http(s) URL of at most 2000 characters").into());
        }
    }
    Ok(Fields {
        name: filter::required_text("name", input.name.trim(), 200)?,
        kind,
        recipients,
        url,
        event_types,
        is_active: input.is_active.unwrap_or(true),
    })
}

fn record_of(id: Uuid) -> String {
    format!("notification_channel:{id}")
}

const SECRET_FIELD: &str = "signing_secret";
/// Why an e-mail channel's delivery fails without an SMTP server.
const EMAIL_NOT_YET: &str = "no SMTP server is configured: set CUSTOS_SMTP_URL and CUSTOS_SMTP_FROM";

/// Where e-mail goes out: `CUSTOS_SMTP_URL` (`smtp://host:port`, `smtps://…`, or
/// `smtp://…?tls=starttls`) and `CUSTOS_SMTP_FROM`; the login either in the URL or, kept out of
/// it (and out of process listings), `CUSTOS_SMTP_USERNAME` with `CUSTOS_SMTP_PASSWORD` or
/// `CUSTOS_SMTP_PASSWORD_FILE`. Never `Debug`: it may hold a password.
#[derive(Clone, Default)]
pub struct SmtpConfig {
    pub url: Option<String>,
    pub from: Option<String>,
    /// The login, when not in the URL: user name and password.
    pub credentials: Option<(String, String)>,
}

/// Notification channels and their test sends.
#[derive(Clone)]
pub struct NotifyService {
    vault: Vault,
    http: reqwest::Client,
    smtp: SmtpConfig,
}

impl NotifyService {
    pub fn new(vault: Vault) -> NotifyService {
        let http = reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build().unwrap_or_default();
        NotifyService { vault, http, smtp: SmtpConfig::default() }
    }

    /// Sends e-mail through this SMTP server.
    pub fn with_smtp(mut self, smtp: SmtpConfig) -> NotifyService {
        self.smtp = smtp;
        self
    }

    /// Sends an event to e-mail recipients.
    async fn send_email(
        &self,
        recipients: &[String],
        event_type: &str,
        payload: &Value,
    ) -> std::result::Result<(), String> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let (Some(url), Some(from)) = (&self.smtp.url, &self.smtp.from) else {
            return Err(EMAIL_NOT_YET.to_owned());
        };
        // Custos's documented `tls=starttls` is lettre's `tls=required`.
        let url = url.replace("tls=starttls", "tls=required");
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|e| format!("CUSTOS_SMTP_URL: {e}"))?
            .timeout(Some(WEBHOOK_TIMEOUT));
        if let Some((user, password)) = &self.smtp.credentials {
            builder = builder
                .credentials(lettre::transport::smtp::authentication::Credentials::new(user.clone(), password.clone()));
        }
        let transport = builder.build();
        let mut message = Message::builder()
            .from(from.parse().map_err(|e| format!("CUSTOS_SMTP_FROM: {e}"))?)
            .subject(format!("[Custos] {event_type}"));
        for r in recipients {
            message = message.to(r.parse().map_err(|e| format!("recipient {r}: {e}"))?);
        }
        let body =
            format!("Custos event: {event_type}\n\n{}\n", serde_json::to_string_pretty(payload).unwrap_or_default());
        let message = message.body(body).map_err(|e| e.to_string())?;
        transport.send(message).await.map_err(|e| format!("the SMTP server refused: {e}"))?;
        Ok(())
    }

    async fn begin(&self, ctx: &RequestCtx, access: Access) -> Result<Tx> {
        Ok(self.vault.db().begin_as(ctx, access).await?)
    }

    /// `GET /api/compliance/notification-channels/` (admins, auditors).
    pub async fn list_notification_channels(
        &self,
        ctx: &RequestCtx,
        req: pb::ListNotificationChannelsRequest,
    ) -> Result<pb::ListNotificationChannelsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let kind = opt_text(req.kind.as_deref()).map(str::to_owned);
        if let Some(k) = &kind
            && !KINDS.contains(&k.as_str())
        {
            return Err(Problem::invalid_field("kind", format!("{k:?} is not one of {}", KINDS.join(", "))).into());
        }
        let event = opt_text(req.event_type.as_deref()).map(str::to_owned);
        let after = list.after::<(OffsetDateTime, Uuid)>(CHANNELS)?;
        let org = ctx.organization_id;
        let filtered = move || {
            let mut q = channels::table.filter(channels::organization_id.eq(org)).into_boxed::<Pg>();
            if let Some(k) = kind.clone() {
                q = q.filter(channels::kind.eq(k));
            }
            if let Some(e) = event.clone() {
                q = q.filter(channels::event_types.contains(vec![e]));
            }
            q
        };
        let mut tx = self.begin(ctx, Access::Audit).await?;
        let mut q = filtered()
            .order((channels::created_at.desc(), channels::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(ChannelRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((channels::created_at, channels::id), key));
        }
        let rows: Vec<ChannelRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(CHANNELS, &(r.created_at, r.id))),
            || filtered().select(list::row()),
        )
        .await?;
        tx.commit().await?;
        let results = page.results.iter().map(ChannelRow::to_pb).collect();
        Ok(pb::ListNotificationChannelsResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/notification-channels/{id}/` (admins, auditors).
    pub async fn get_notification_channel(
        &self,
        ctx: &RequestCtx,
        req: pb::GetNotificationChannelRequest,
    ) -> Result<pb::NotificationChannel> {
        let id = parse_id("Notification channel", &req.id)?;
        let mut tx = self.begin(ctx, Access::Audit).await?;
        let row = find(&mut tx, ctx, id).await?;
        tx.commit().await?;
        Ok(row.to_pb())
    }

    /// `POST /api/compliance/notification-channels/` (admins): a webhook's signing secret is
    /// generated here and answered this once.
    pub async fn create_notification_channel(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateNotificationChannelRequest,
    ) -> Result<pb::NotificationChannel> {
        let fields = validate(req.channel.unwrap_or_default())?;
        let mut tx = self.begin(ctx, Access::Admin).await?;
        let id = new_id();
        let mut secret = None;
        let (mut data_key_id, mut sealed) = (None, None);
        if fields.kind == "webhook" {
            let value = format!("whsec_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
            let (key_id, key) =
                self.vault.create_data_key(&mut tx, ctx, "webhook-signing").await.map_err(Problem::from)?;
            let context = FieldContext {
                organization: ctx.organization_id,
                data_key: key_id,
                record: &record_of(id),
                field: SECRET_FIELD,
            };
            sealed = Some(encrypt_field(&key, &context, value.as_bytes()));
            data_key_id = Some(key_id);
            secret = Some(value);
        }
        let inserted = diesel::insert_into(channels::table)
            .values((
                channels::id.eq(id),
                channels::organization_id.eq(ctx.organization_id),
                channels::name.eq(&fields.name),
                channels::kind.eq(&fields.kind),
                channels::recipients.eq(&fields.recipients),
                channels::url.eq(&fields.url),
                channels::event_types.eq(&fields.event_types),
                channels::is_active.eq(fields.is_active),
                channels::data_key_id.eq(data_key_id),
                channels::signing_secret.eq(sealed),
            ))
            .execute(tx.conn())
            .await;
        unique_name(inserted, &fields.name)?;
        let row = find(&mut tx, ctx, id).await?;
        record_change(&mut tx, ctx, "create", "notification_channel", id, Value::Null, snapshot(&row.to_pb())).await?;
        tx.commit().await?;
        let mut created = row.to_pb();
        created.signing_secret = secret;
        Ok(created)
    }

    /// `PUT`/`PATCH /api/compliance/notification-channels/{id}/` (admins); a channel's kind stays.
    pub async fn update_notification_channel(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateNotificationChannelRequest,
    ) -> Result<pb::NotificationChannel> {
        let id = parse_id("Notification channel", &req.id)?;
        let mut tx = self.begin(ctx, Access::Admin).await?;
        let current = find(&mut tx, ctx, id).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) =
            update::apply::<_, pb::NotificationChannel>(current.to_input(), req.channel.unwrap_or_default(), mask)?
        else {
            tx.commit().await?;
            return Ok(current.to_pb());
        };
        let fields = validate(input)?;
        if fields.kind != current.kind {
            return Err(Problem::invalid_field("kind", "a channel's kind cannot change: create another channel").into());
        }
        let updated = diesel::update(
            channels::table.filter(channels::organization_id.eq(ctx.organization_id)).filter(channels::id.eq(id)),
        )
        .set((
            channels::name.eq(&fields.name),
            channels::recipients.eq(&fields.recipients),
            channels::url.eq(&fields.url),
            channels::event_types.eq(&fields.event_types),
            channels::is_active.eq(fields.is_active),
            channels::updated_at.eq(timefmt::now()),
        ))
        .execute(tx.conn())
        .await;
        unique_name(updated, &fields.name)?;
        let after = find(&mut tx, ctx, id).await?.to_pb();
        record_change(&mut tx, ctx, "update", "notification_channel", id, snapshot(&current.to_pb()), snapshot(&after))
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// `DELETE /api/compliance/notification-channels/{id}/` (admins), with its deliveries.
    pub async fn delete_notification_channel(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteNotificationChannelRequest,
    ) -> Result<pb::DeleteNotificationChannelResponse> {
        let id = parse_id("Notification channel", &req.id)?;
        let mut tx = self.begin(ctx, Access::Admin).await?;
        let current = find(&mut tx, ctx, id).await?;
        diesel::delete(
            channels::table.filter(channels::organization_id.eq(ctx.organization_id)).filter(channels::id.eq(id)),
        )
        .execute(tx.conn())
        .await?;
        record_change(&mut tx, ctx, "delete", "notification_channel", id, snapshot(&current.to_pb()), Value::Null)
            .await?;
        tx.commit().await?;
        Ok(pb::DeleteNotificationChannelResponse {})
    }

    /// `POST /api/compliance/notification-channels/{id}/test/` (admins): a test notification
    /// through the channel, now; the delivery as recorded (delivered, or failed and why).
    pub async fn test_notification_channel(
        &self,
        ctx: &RequestCtx,
        req: pb::TestNotificationChannelRequest,
    ) -> Result<pb::NotificationDelivery> {
        let id = parse_id("Notification channel", &req.id)?;
        let mut tx = self.begin(ctx, Access::Admin).await?;
        let row = find(&mut tx, ctx, id).await?;
        let secret = self.signing_secret(&mut tx, ctx, &row).await?;
        tx.commit().await?;
        let delivery = new_id();
        let payload = json!({ "message": "A test notification from Custos", "channel": row.name });
        let outcome = match (row.kind.as_str(), &row.url, &secret) {
            ("webhook", Some(url), Some(secret)) => {
                self.post_webhook(ctx, url, secret, delivery, "test", &payload).await
            }
            _ => self.send_email(&row.recipients, "test", &payload).await,
        };
        let now = timefmt::now();
        let (status, error, delivered_at) = match &outcome {
            Ok(()) => ("delivered", None, Some(now)),
            Err(e) => ("failed", Some(e.clone()), None),
        };
        let mut tx = self.begin(ctx, Access::Admin).await?;
        diesel::insert_into(deliveries::table)
            .values((
                deliveries::id.eq(delivery),
                deliveries::organization_id.eq(ctx.organization_id),
                deliveries::channel_id.eq(id),
                deliveries::event_type.eq("test"),
                deliveries::payload.eq(&payload),
                deliveries::status.eq(status),
                deliveries::attempts.eq(1),
                deliveries::last_error.eq(&error),
                deliveries::delivered_at.eq(delivered_at),
            ))
            .execute(tx.conn())
            .await?;
        let recorded: DeliveryRow = deliveries::table
            .filter(deliveries::id.eq(delivery))
            .select(DeliveryRow::as_select())
            .first(tx.conn())
            .await?;
        record_change(&mut tx, ctx, "test", "notification_channel", id, Value::Null, snapshot(&recorded.to_pb()))
            .await?;
        tx.commit().await?;
        Ok(recorded.to_pb())
    }

    /// `GET /api/compliance/notification-channels/{id}/deliveries/` (admins, auditors).
    pub async fn list_notification_deliveries(
        &self,
        ctx: &RequestCtx,
        req: pb::ListNotificationDeliveriesRequest,
    ) -> Result<pb::ListNotificationDeliveriesResponse> {
        let id = parse_id("Notification channel", &req.id)?;
        let mut tx = self.begin(ctx, Access::Audit).await?;
        find(&mut tx, ctx, id).await?;
        let rows: Vec<DeliveryRow> = deliveries::table
            .filter(deliveries::organization_id.eq(ctx.organization_id))
            .filter(deliveries::channel_id.eq(id))
            .order((deliveries::created_at.desc(), deliveries::id.desc()))
            .limit(500)
            .select(DeliveryRow::as_select())
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(pb::ListNotificationDeliveriesResponse { results: rows.iter().map(DeliveryRow::to_pb).collect() })
    }

    /// The `notify.deliver` job's work for one organisation: each new outbox event becomes a
    /// delivery per active channel subscribed to its type (once: a unique key per event and
    /// channel), then every due delivery is sent; a failure is retried with backoff up to
    /// [`MAX_ATTEMPTS`], each attempt recorded. Returns (delivered, failed attempts).
    pub async fn deliver_pending(&self, ctx: &RequestCtx) -> Result<(usize, usize)> {
        let org = ctx.organization_id;
        // 1. Dispatch: events to deliveries.
        let mut tx = self.vault.db().begin(org).await?;
        let events: Vec<(Uuid, String, Value)> = outbox::table
            .filter(outbox::organization_id.eq(org))
            .filter(outbox::dispatched_at.is_null())
            .order(outbox::created_at)
            .limit(500)
            .for_update()
            .skip_locked()
            .select((outbox::id, outbox::event_type, outbox::payload))
            .load(tx.conn())
            .await?;
        let now = timefmt::now();
        for (event, event_type, payload) in &events {
            let subscribed: Vec<Uuid> = channels::table
                .filter(channels::organization_id.eq(org))
                .filter(channels::is_active.eq(true))
                .filter(channels::event_types.contains(vec![event_type.clone()]))
                .select(channels::id)
                .load(tx.conn())
                .await?;
            for channel in subscribed {
                diesel::insert_into(deliveries::table)
                    .values((
                        deliveries::id.eq(new_id()),
                        deliveries::organization_id.eq(org),
                        deliveries::channel_id.eq(channel),
                        deliveries::event_id.eq(event),
                        deliveries::event_type.eq(event_type),
                        deliveries::payload.eq(payload),
                        deliveries::status.eq("pending"),
                        deliveries::next_attempt_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(tx.conn())
                    .await?;
            }
            diesel::update(outbox::table.filter(outbox::id.eq(event)))
                .set(outbox::dispatched_at.eq(now))
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        // 2. Send what is due, each outside any transaction, its outcome recorded after.
        let mut tx = self.vault.db().begin(org).await?;
        let due: Vec<(Uuid, Uuid, String, Value, i32)> = deliveries::table
            .filter(deliveries::organization_id.eq(org))
            .filter(deliveries::status.eq("pending"))
            .filter(deliveries::next_attempt_at.le(now))
            .order(deliveries::next_attempt_at)
            .limit(200)
            .select((
                deliveries::id,
                deliveries::channel_id,
                deliveries::event_type,
                deliveries::payload,
                deliveries::attempts,
            ))
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        let (mut delivered, mut failed) = (0, 0);
        for (delivery, channel, event_type, payload, attempts) in due {
            let mut tx = self.vault.db().begin(org).await?;
            let row = find(&mut tx, ctx, channel).await?;
            let secret = self.signing_secret(&mut tx, ctx, &row).await?;
            tx.commit().await?;
            let outcome = match (row.kind.as_str(), &row.url, &secret) {
                ("webhook", Some(url), Some(secret)) => {
                    self.post_webhook(ctx, url, secret, delivery, &event_type, &payload).await
                }
                _ => self.send_email(&row.recipients, &event_type, &payload).await,
            };
            let attempts = attempts + 1;
            let now = timefmt::now();
            let mut tx = self.vault.db().begin(org).await?;
            let q = deliveries::table.filter(deliveries::organization_id.eq(org)).filter(deliveries::id.eq(delivery));
            match outcome {
                Ok(()) => {
                    delivered += 1;
                    diesel::update(q)
                        .set((
                            deliveries::status.eq("delivered"),
                            deliveries::attempts.eq(attempts),
                            deliveries::delivered_at.eq(now),
                            deliveries::last_error.eq(None::<String>),
                            deliveries::next_attempt_at.eq(None::<OffsetDateTime>),
                        ))
                        .execute(tx.conn())
                        .await?;
                }
                Err(error) => {
                    failed += 1;
                    // Without an SMTP server configured, retrying would not help.
                    let give_up = attempts >= MAX_ATTEMPTS || (row.kind == "email" && self.smtp.url.is_none());
                    let next = (!give_up).then(|| now + RETRY_BASE * 2i32.pow((attempts - 1) as u32));
                    diesel::update(q)
                        .set((
                            deliveries::status.eq(if give_up { "failed" } else { "pending" }),
                            deliveries::attempts.eq(attempts),
                            deliveries::last_error.eq(&error),
                            deliveries::next_attempt_at.eq(next),
                        ))
                        .execute(tx.conn())
                        .await?;
                }
            }
            let after =
                json!({ "delivery": delivery, "channel": channel, "event_type": event_type, "attempts": attempts });
            record_change(&mut tx, ctx, "deliver", "notification_delivery", delivery, Value::Null, after).await?;
            tx.commit().await?;
        }
        Ok((delivered, failed))
    }

    /// A webhook channel's signing secret, decrypted.
    async fn signing_secret(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        row: &ChannelRow,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        let (Some(key_id), Some(sealed)) = (&row.data_key_id, &row.signing_secret) else { return Ok(None) };
        let key = self.vault.data_key(tx, ctx.organization_id, *key_id).await.map_err(Problem::from)?;
        let context = FieldContext {
            organization: ctx.organization_id,
            data_key: *key_id,
            record: &record_of(row.id),
            field: SECRET_FIELD,
        };
        Ok(Some(decrypt_field(&key, &context, sealed).map_err(Problem::from)?))
    }

    /// POSTs an event to a webhook, signed (see [`signature`]).
    async fn post_webhook(
        &self,
        ctx: &RequestCtx,
        url: &str,
        secret: &[u8],
        delivery: Uuid,
        event_type: &str,
        payload: &Value,
    ) -> std::result::Result<(), String> {
        let now = timefmt::now();
        let body = serde_json::to_vec(&json!({
            "id": delivery, "event_type": event_type, "organization": ctx.organization_id,
            "created_at": timefmt::timestamp(now), "payload": payload,
        }))
        .map_err(|e| e.to_string())?;
        let header = signature::sign(secret, now.unix_timestamp(), &body);
        let response = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .header(signature::HEADER, header)
            .header(signature::IDEMPOTENCY_HEADER, delivery.to_string())
            .header(signature::EVENT_HEADER, event_type)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("the webhook did not answer: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered HTTP {}", response.status().as_u16()))
        }
    }
}

async fn find(tx: &mut Tx, ctx: &RequestCtx, id: Uuid) -> Result<ChannelRow> {
    channels::table
        .filter(channels::organization_id.eq(ctx.organization_id))
        .filter(channels::id.eq(id))
        .select(ChannelRow::as_select())
        .first(tx.conn())
        .await
        .optional()?
        .ok_or_else(|| Problem::not_found("Notification channel", id).into())
}

fn unique_name(result: diesel::QueryResult<usize>, name: &str) -> Result<()> {
    result.map(drop).map_err(|e| {
        custos_db::DbError::from(e)
            .unique_as_conflict("A channel with this name exists", format!("name {name:?} is taken"))
            .into()
    })
}

/// The kind of the delivery job.
pub const DELIVERY_JOB: &str = "notify.deliver";

/// The delivery job's kind (one job per organisation).
pub fn delivery_job(service: NotifyService) -> custos_jobs::Kind {
    custos_jobs::Kind::new(
        DELIVERY_JOB,
        custos_jobs::Scope::Organization,
        "Delivers the organisation's new events to their channels and retries failed deliveries",
        move |job: custos_jobs::Job| {
            let service = service.clone();
            async move {
                let org = job.organization().ok_or_else(|| custos_jobs::JobError::fatal("an organisation's job"))?;
                let (delivered, failed) = service
                    .deliver_pending(&job.ctx(org))
                    .await
                    .map_err(|e| custos_jobs::JobError::from_problem(e.into()))?;
                job.count("delivered", delivered as i64);
                job.count("failed_attempts", failed as i64);
                Ok(json!({ "delivered": delivered, "failed_attempts": failed }))
            }
        },
    )
}
