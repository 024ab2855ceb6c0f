//! The notification outbox's one writer: any crate records an event in the transaction of the
//! change it is about (so the event exists exactly when the change does); `crates/notify`
//! delivers it to the channels subscribed to its type. In the kernel because the platform
//! crates that emit events (the vault, the audit chain) sit below notify.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

use crate::schema::notification_outbox;
use crate::{DbError, Tx};

/// Records `event_type` (e.g. `secret.rotation_due`) with its `payload` for `organization`, in `tx`.
pub async fn emit(tx: &mut Tx, organization: Uuid, event_type: &str, payload: Value) -> Result<Uuid, DbError> {
    let id = custos_core::new_id();
    diesel::insert_into(notification_outbox::table)
        .values((
            notification_outbox::id.eq(id),
            notification_outbox::organization_id.eq(organization),
            notification_outbox::event_type.eq(event_type),
            notification_outbox::payload.eq(payload),
        ))
        .execute(tx.conn())
        .await?;
    Ok(id)
}

/// As [`emit`], once per `key` (the moment the event is about, e.g.
/// `incident:<id>:response:<deadline>`): periodic checks that find the same passed deadline on
/// every run call this each time, and only the first writes an event. `None` when an event with
/// this type and key exists already.
pub async fn emit_once(
    tx: &mut Tx,
    organization: Uuid,
    event_type: &str,
    key: &str,
    payload: Value,
) -> Result<Option<Uuid>, DbError> {
    let id = custos_core::new_id();
    let written = diesel::insert_into(notification_outbox::table)
        .values((
            notification_outbox::id.eq(id),
            notification_outbox::organization_id.eq(organization),
            notification_outbox::event_type.eq(event_type),
            notification_outbox::payload.eq(payload),
            notification_outbox::once_key.eq(key),
        ))
        .on_conflict_do_nothing()
        .execute(tx.conn())
        .await?;
    Ok((written == 1).then_some(id))
}
