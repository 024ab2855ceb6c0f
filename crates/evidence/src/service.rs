//! Every evidence operation, written once: REST (JSON and multipart), gRPC and the CLI call it.

use std::collections::HashMap;
use std::fmt::Display;

use bytes::Bytes;
use custos_audit_chain::record_change;
use custos_core::ctx::Access;
use custos_core::filter::{
    self, Choice, DayEdge, opt_choice, opt_text, opt_uuid, parse_id, parse_opt_date, parse_opt_time_bound,
    parse_opt_timestamp, parse_uuid, search_pattern,
};
use custos_core::hold::ensure_not_held;
use custos_core::page::cursor;
use custos_core::{Held, ListRequest, Problem, RequestCtx, hex, new_id, timefmt, update};
use custos_db::refs::{self, Kind};
use custos_db::schema::{evidence, evidence_requirements};
use custos_db::{Db, Holds, Tx, list};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::Stream;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::custody::{self, actor_name};
use crate::model::*;
use custos_blobs::{BlobError, BlobStore, Digests, StoredBlob};
use custos_residency::{ResidencyService, Write};

const TITLE_MAX: usize = 200;
const TEXT_MAX: usize = 20_000;
const SHORT_MAX: usize = 500;
/// Requirements one evidence item may be linked to: bounds the work a single request can ask for.
const REQUIREMENT_LINKS_MAX: usize = 1000;
/// A century: longer retention is a typo, not a policy.
const RETENTION_MAX_DAYS: i32 = 36_500;

custos_db::service_error! {
    pub enum EvidenceError {
        Blob(BlobError),
        Residency(custos_residency::ResidencyError),
    }
}

type Result<T, E = EvidenceError> = std::result::Result<T, E>;

/// A file on its way back to the caller.
pub struct Download {
    pub evidence: pb::Evidence,
    pub size: u64,
    pub body: BoxStream<'static, Result<Bytes, BlobError>>,
}

#[derive(Clone)]
pub struct EvidenceService {
    db: Db,
    /// Where files may be written (data residency), and the stores they are read from.
    residency: ResidencyService,
    holds: Holds,
    max_upload_bytes: u64,
}

/// The list's cursor kind.
const EVIDENCE: &str = "evidence";

custos_core::page_responses! {
    pb::ListEvidenceResponse { pb::Evidence } + next_cursor;
}

fn not_found(id: impl Display) -> EvidenceError {
    Problem::not_found("Evidence", id).into()
}

impl EvidenceService {
    pub fn new(db: Db, residency: ResidencyService, holds: Holds, max_upload_bytes: u64) -> Self {
        let store_max = residency.stores().max_object_bytes();
        if max_upload_bytes > store_max {
            // A larger upload would stream in whole and then fail at its last step.
            tracing::warn!(
                configured = max_upload_bytes,
                allowed = store_max,
                store = residency.stores().default_store().location(),
                "CUSTOS_MAX_UPLOAD_BYTES is above what this blob store takes in one object; uploads are limited to the store's maximum"
            );
        }
        let max_upload_bytes = max_upload_bytes.min(store_max);
        EvidenceService { db, residency, holds, max_upload_bytes }
    }

    /// The store of `region` (`None`: the default store). A region an item was stored in whose
    /// store is no longer configured is a configuration error, said as such.
    fn store(&self, region: Option<&str>) -> Result<&BlobStore> {
        self.residency.stores().get(region).ok_or_else(|| {
            Problem::state_conflict(
                "Blob store not configured",
                format!(
                    "The file is stored in region {}, which this server has no blob store for (CUSTOS_BLOB_STORES)",
                    region.unwrap_or_default()
                ),
            )
            .into()
        })
    }

    /// Removes what abandoned uploads left in every store's staging area; how many went.
    pub async fn sweep_staging(&self, max_age: std::time::Duration) -> Result<usize> {
        let mut removed = 0;
        for (_, store) in self.residency.stores().all() {
            removed += store.sweep_staging(max_age).await?;
        }
        Ok(removed)
    }

    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    async fn begin(&self, ctx: &RequestCtx, access: Access) -> Result<Tx> {
        Ok(self.db.begin_as(ctx, access).await?)
    }

    pub async fn list_evidence(
        &self,
        ctx: &RequestCtx,
        req: pb::ListEvidenceRequest,
    ) -> Result<pb::ListEvidenceResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = EvidenceFilters::parse(&req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(EVIDENCE)?;
        let org = ctx.organization_id;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((evidence::collected_at.desc(), evidence::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(EvidenceRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((evidence::collected_at, evidence::id), key));
        }
        let rows: Vec<EvidenceRow> = list::one_shot(q).load(tx.conn()).await?;
        let mut page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(EVIDENCE, &(r.collected_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let results = to_pb(&mut tx, ctx, &self.holds, std::mem::take(&mut page.results)).await?;
        tx.commit().await?;
        Ok(pb::ListEvidenceResponse::from_page(page.with_results(results)))
    }

    pub async fn get_evidence(&self, ctx: &RequestCtx, req: pb::GetEvidenceRequest) -> Result<pb::Evidence> {
        let id = parse_id("Evidence", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let evidence = one_pb(&mut tx, ctx, &self.holds, row).await?;
        tx.commit().await?;
        Ok(evidence)
    }

    /// Evidence without a file (a reference, an interview note); attach files with an upload.
    pub async fn create_evidence(&self, ctx: &RequestCtx, req: pb::CreateEvidenceRequest) -> Result<pb::Evidence> {
        let input = parse_input(req.evidence.unwrap_or_default())?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let created = insert(&mut tx, ctx, &self.holds, input, None).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Streams a file into the blob store, hashing it on the way, then records the evidence
    /// with a COLLECTED custody record carrying both digests.
    pub async fn upload_evidence<S, E>(
        &self,
        ctx: &RequestCtx,
        header: pb::EvidenceUploadHeader,
        body: S,
    ) -> Result<pb::Evidence>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Display,
    {
        ctx.require(Access::Write)?;
        // Everything that can be checked without the database is checked before any byte is stored.
        let mut evidence = header.evidence.unwrap_or_default();
        let requested_region = evidence.storage_region.take();
        let input = parse_input(evidence)?;
        let file = FileMeta::parse(&header.file_name, &header.content_type)?;
        // Where the file may go (data residency): refused here, before a byte is stored.
        let placed = self
            .residency
            .place(
                ctx,
                Write {
                    operation: "evidence.upload",
                    entity_type: Some("evidence"),
                    requested_region: requested_region.as_deref(),
                    ..Write::default()
                },
            )
            .await?;
        let store = &placed.store;
        let region = placed.region.clone();
        let blob = store.ingest(ctx.organization_id, placed.prefix.as_deref(), body, self.max_upload_bytes).await?;
        let key = blob.key.clone();
        let recorded: Result<pb::Evidence> = async {
            let mut tx = self.begin(ctx, Access::Write).await?;
            lock_blob(&mut tx, region.as_deref(), &blob.key).await?;
            // A concurrent disposal may have removed an identical object we deduplicated onto.
            if !store.exists(&blob.key).await? {
                return Err(Problem::state_conflict(
                    "Upload raced with a disposal",
                    "An identical file was disposed of while this upload finished; upload it again",
                )
                .into());
            }
            let created = insert(&mut tx, ctx, &self.holds, input, Some((blob, file, region.clone()))).await?;
            tx.commit().await?;
            Ok(created)
        }
        .await;
        if recorded.is_err() {
            // Rejected (unknown incident, say): do not keep a file nothing refers to.
            self.collect_blob(ctx, region.as_deref(), &key).await;
        }
        recorded
    }

    pub async fn update_evidence(&self, ctx: &RequestCtx, req: pb::UpdateEvidenceRequest) -> Result<pb::Evidence> {
        let id = parse_id("Evidence", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        let before = one_pb(&mut tx, ctx, &self.holds, current.clone()).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) = update::apply::<_, pb::Evidence>(to_input(&before), req.evidence.unwrap_or_default(), mask)?
        else {
            // Nothing to change (a PATCH of {}): the item as it stands, nothing recorded, even
            // when it is sealed.
            tx.commit().await?;
            return Ok(before);
        };
        ensure_editable(&current, "changed")?;
        let input = parse_input(input)?;
        // A hold on its incident preserves the item: moving it out would free it for deletion.
        if input.fields.incident_id != current.incident_id {
            self.ensure_not_held(&mut tx, ctx, &current, "move to another incident").await?;
        }
        check_references(&mut tx, ctx, &input).await?;
        diesel::update(
            evidence::table.filter(evidence::organization_id.eq(ctx.organization_id)).filter(evidence::id.eq(id)),
        )
        .set((&input.fields, evidence::updated_at.eq(timefmt::now())))
        .execute(tx.conn())
        .await?;
        replace_links(&mut tx, ctx, id, &input.requirements).await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let after = one_pb(&mut tx, ctx, &self.holds, row).await?;
        record_change(&mut tx, ctx, "update", "evidence", id, audit_view(&before), audit_view(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes an item, its links and its custody chain; refused while a legal hold covers it.
    pub async fn delete_evidence(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteEvidenceRequest,
    ) -> Result<pb::DeleteEvidenceResponse> {
        let id = parse_id("Evidence", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        self.ensure_not_held(&mut tx, ctx, &current, "delete").await?;
        if current.status == EvidenceStatus::Sealed {
            return Err(Problem::state_conflict(
                "Evidence is sealed",
                format!("Evidence {id} is sealed; record RELEASED before deleting it"),
            )
            .into());
        }
        let before = one_pb(&mut tx, ctx, &self.holds, current.clone()).await?;
        diesel::delete(
            evidence::table.filter(evidence::organization_id.eq(ctx.organization_id)).filter(evidence::id.eq(id)),
        )
        .execute(tx.conn())
        .await?;
        record_change(&mut tx, ctx, "delete", "evidence", id, audit_view(&before), Value::Null).await?;
        tx.commit().await?;
        if let Some(key) = current.file_path {
            self.collect_blob(ctx, current.storage_region.as_deref(), &key).await;
        }
        Ok(pb::DeleteEvidenceResponse {})
    }

    pub async fn add_custody_record(&self, ctx: &RequestCtx, req: pb::AddCustodyRecordRequest) -> Result<pb::Evidence> {
        let id = parse_id("Evidence", &req.id)?;
        let action = CustodyAction::parse_field("action", req.action.trim())?;
        if action.is_system_only() {
            return Err(Problem::invalid_field(
                "action",
                format!("{action} is recorded by Custos itself (on upload, or by verify_evidence)"),
            )
            .into());
        }
        let notes = filter::bounded_text("notes", &req.notes, TEXT_MAX)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        if current.status == EvidenceStatus::Disposed {
            return Err(disposed(id));
        }
        if !action.allowed_on(current.status) {
            let status = current.status.as_str();
            return Err(Problem::state_conflict(
                format!("Evidence is {}", status.to_lowercase()),
                match current.status {
                    EvidenceStatus::Sealed => format!(
                        "{status} evidence takes only TRANSFERRED, ACCESSED or RELEASED; record RELEASED before {action}"
                    ),
                    _ => format!(
                        "{status} evidence takes only TRANSFERRED, ACCESSED or DISPOSED until verify_evidence finds it intact"
                    ),
                },
            )
            .into());
        }
        if action == CustodyAction::Disposed {
            self.ensure_not_held(&mut tx, ctx, &current, "dispose of").await?;
        }
        let before = one_pb(&mut tx, ctx, &self.holds, current.clone()).await?;
        custody::append(&mut tx, ctx, id, action, &notes, json!({})).await?;
        let now = timefmt::now();
        if let Some(status) = action.resulting_status() {
            let disposed_at = (action == CustodyAction::Disposed).then_some(now).or(current.disposed_at);
            diesel::update(
                evidence::table.filter(evidence::organization_id.eq(ctx.organization_id)).filter(evidence::id.eq(id)),
            )
            .set((evidence::status.eq(status), evidence::disposed_at.eq(disposed_at), evidence::updated_at.eq(now)))
            .execute(tx.conn())
            .await?;
        }
        let row = find(&mut tx, ctx, id, false).await?;
        let after = one_pb(&mut tx, ctx, &self.holds, row).await?;
        record_change(&mut tx, ctx, "add_custody_record", "evidence", id, audit_view(&before), audit_view(&after))
            .await?;
        tx.commit().await?;
        if action == CustodyAction::Disposed
            && let Some(key) = current.file_path
        {
            self.collect_blob(ctx, current.storage_region.as_deref(), &key).await;
        }
        Ok(after)
    }

    /// Re-reads the stored file, recomputes both digests and checks the custody chain; records
    /// VERIFIED, or VERIFICATION_FAILED and marks the item COMPROMISED.
    pub async fn verify_evidence(
        &self,
        ctx: &RequestCtx,
        req: pb::VerifyEvidenceRequest,
    ) -> Result<pb::EvidenceVerification> {
        let id = parse_id("Evidence", &req.id)?;
        let notes = filter::bounded_text("verification_notes", &req.verification_notes, TEXT_MAX)?;
        // Editors verify their evidence; auditors verify anyone's — it is an audit act.
        if ctx.require(Access::Write).is_err() {
            ctx.require(Access::Audit)?;
        }
        let row = {
            let mut tx = self.db.begin(ctx.organization_id).await?;
            let row = find(&mut tx, ctx, id, false).await?;
            tx.commit().await?;
            row
        };
        let expected = stored_digests(&row)?;
        if row.status == EvidenceStatus::Disposed {
            return Err(disposed(id));
        }
        let key = row.file_path.clone().unwrap_or_default();
        // Hash outside any transaction: a multi-gigabyte file must not hold a row lock.
        let actual = self.store(row.storage_region.as_deref())?.digest(&key).await?;

        let mut tx = self.db.begin(ctx.organization_id).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        if current.file_path.as_deref() != Some(key.as_str()) || current.status == EvidenceStatus::Disposed {
            return Err(
                Problem::state_conflict("Evidence changed during verification", "Run verify_evidence again").into()
            );
        }
        let before = one_pb(&mut tx, ctx, &self.holds, current.clone()).await?;
        let chain = custody::load_chain(&mut tx, ctx.organization_id, &[id]).await?;
        let chain_result = custody::verify_chain(&chain)
            .and_then(|()| custody::verify_collected(&chain, &expected.sha256, &expected.blake3, expected.size));
        let result = match &actual {
            None => "MISSING",
            Some(a) if *a == expected => "MATCH",
            Some(_) => "MISMATCH",
        };
        let intact = result == "MATCH" && chain_result.is_ok();
        let action = if intact { CustodyAction::Verified } else { CustodyAction::VerificationFailed };
        let actual_or_empty =
            actual.clone().unwrap_or(Digests { size: 0, sha256: String::new(), blake3: String::new() });
        let details = json!({
            "result": result,
            "custody_chain_valid": chain_result.is_ok(),
            "custody_chain_error": chain_result.as_ref().err(),
            "expected": { "sha256": expected.sha256, "blake3": expected.blake3, "size": expected.size },
            "actual": actual.as_ref().map(|a| json!({ "sha256": a.sha256, "blake3": a.blake3, "size": a.size })),
        });
        custody::append(&mut tx, ctx, id, action, &notes, details).await?;
        let now = timefmt::now();
        // Passing verification neither unseals an item nor takes back its release.
        let status = match (action, current.status) {
            (CustodyAction::Verified, kept @ (EvidenceStatus::Sealed | EvidenceStatus::Released)) => kept,
            _ => action.resulting_status().unwrap_or(EvidenceStatus::Verified),
        };
        diesel::update(
            evidence::table.filter(evidence::organization_id.eq(ctx.organization_id)).filter(evidence::id.eq(id)),
        )
        .set((evidence::status.eq(status), evidence::last_verified_at.eq(now), evidence::updated_at.eq(now)))
        .execute(tx.conn())
        .await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let after = one_pb(&mut tx, ctx, &self.holds, row).await?;
        record_change(&mut tx, ctx, "verify_evidence", "evidence", id, audit_view(&before), audit_view(&after)).await?;
        tx.commit().await?;
        if !intact {
            tracing::warn!(evidence = %id, result, chain = ?chain_result, "evidence failed verification");
        }
        Ok(pb::EvidenceVerification {
            result: result.to_owned(),
            custody_chain_valid: chain_result.is_ok(),
            expected_sha256: expected.sha256,
            actual_sha256: actual_or_empty.sha256,
            expected_blake3: expected.blake3,
            actual_blake3: actual_or_empty.blake3,
            expected_size: expected.size as i64,
            actual_size: actual_or_empty.size as i64,
            verified_at: timefmt::timestamp(now),
            evidence: Some(after),
        })
    }

    /// Opens the file for streaming and records who accessed it (custody ACCESSED + audit)
    /// before the first byte leaves.
    pub async fn download_evidence(&self, ctx: &RequestCtx, req: pb::DownloadEvidenceRequest) -> Result<Download> {
        let id = parse_id("Evidence", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        if current.status == EvidenceStatus::Disposed {
            return Err(disposed(id));
        }
        let Some(key) = current.file_path.clone() else {
            return Err(Problem::new(
                custos_core::ErrorKind::NotFound,
                "Evidence has no file",
                format!("Evidence {id} was recorded without a file"),
            )
            .into());
        };
        let Some((size, body)) = self.store(current.storage_region.as_deref())?.open(&key).await? else {
            return Err(Problem::state_conflict(
                "Stored file is missing",
                format!("The object of evidence {id} is gone from the blob store; run verify_evidence to record it"),
            )
            .into());
        };
        custody::append(&mut tx, ctx, id, CustodyAction::Accessed, "Downloaded", json!({ "size": size })).await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let evidence = one_pb(&mut tx, ctx, &self.holds, row).await?;
        record_change(
            &mut tx,
            ctx,
            "download",
            "evidence",
            id,
            Value::Null,
            json!({ "file_hash": current.file_hash, "size": size }),
        )
        .await?;
        tx.commit().await?;
        Ok(Download { evidence, size, body })
    }

    async fn ensure_not_held(&self, tx: &mut Tx, ctx: &RequestCtx, row: &EvidenceRow, action: &str) -> Result<()> {
        // The check locks the item's incident too, so a hold placed on it waits for this transaction.
        ensure_not_held(&*self.holds, tx.conn(), ctx.organization_id, &Held::Evidence(row.id), action).await?;
        Ok(())
    }

    /// Deletes an object no live evidence item refers to any more. Failure only leaves an
    /// orphan object behind (logged, and removed by the next [`EvidenceService::sweep_unreferenced`]),
    /// never a dangling reference.
    async fn collect_blob(&self, ctx: &RequestCtx, region: Option<&str>, key: &str) {
        if let Err(e) = self.remove_if_unreferenced(ctx.organization_id, region, key).await {
            tracing::warn!(key, error = %Problem::from(e), "could not remove an unreferenced evidence object");
        }
    }

    /// Removes `key` unless a live item of `organization_id` refers to it; whether it did. Under
    /// the object's lock, so an upload deduplicating onto it either commits first (and keeps it)
    /// or finds it gone and says so.
    async fn remove_if_unreferenced(&self, organization_id: Uuid, region: Option<&str>, key: &str) -> Result<bool> {
        let store = self.store(region)?;
        let mut tx = self.db.begin(organization_id).await?;
        lock_blob(&mut tx, region, key).await?;
        let live: i64 = evidence::table
            .filter(evidence::organization_id.eq(organization_id))
            .filter(evidence::file_path.eq(key))
            .filter(evidence::storage_region.is_not_distinct_from(region))
            .filter(evidence::disposed_at.is_null())
            .count()
            .get_result(tx.conn())
            .await?;
        if live == 0 {
            store.delete(key).await?;
        }
        tx.commit().await?;
        Ok(live == 0)
    }

    /// Removes stored objects no live evidence item refers to and last written more than
    /// `grace` ago: what a crash between storing an upload and recording its item left, or a
    /// removal after a deletion or disposal that failed. (`grace` keeps uploads in flight, whose
    /// items are not yet committed, out of reach.) Returns how many went.
    pub async fn sweep_unreferenced(&self, grace: std::time::Duration) -> Result<usize> {
        let mut removed = 0;
        for (region, store) in self.residency.stores().all() {
            removed += self.sweep_unreferenced_in(region, store, grace).await?;
        }
        Ok(removed)
    }

    async fn sweep_unreferenced_in(
        &self,
        region: Option<&str>,
        store: &BlobStore,
        grace: std::time::Duration,
    ) -> Result<usize> {
        let mut by_org: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (org, key) in store.content_older_than(grace).await? {
            by_org.entry(org).or_default().push(key);
        }
        let mut removed = 0;
        for (org, keys) in by_org {
            // Most objects are in use: those are told apart in one query per organisation, and
            // only the rest are re-checked (under their locks) one by one.
            let live: std::collections::HashSet<String> = {
                let mut tx = self.db.begin(org).await?;
                let live: Vec<Option<String>> = evidence::table
                    .filter(evidence::organization_id.eq(org))
                    .filter(evidence::file_path.eq_any(&keys))
                    .filter(evidence::storage_region.is_not_distinct_from(region))
                    .filter(evidence::disposed_at.is_null())
                    .select(evidence::file_path)
                    .distinct()
                    .load(tx.conn())
                    .await?;
                tx.commit().await?;
                live.into_iter().flatten().collect()
            };
            for key in keys.iter().filter(|key| !live.contains(*key)) {
                if self.remove_if_unreferenced(org, region, key).await? {
                    tracing::info!(%org, ?region, key, "removed an evidence object no item refers to");
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Serialises the upload and the removal of one content-addressed object (of one region's store).
async fn lock_blob(tx: &mut Tx, region: Option<&str>, key: &str) -> Result<()> {
    Ok(tx.lock_named(&format!("{}/{key}", region.unwrap_or_default())).await?)
}

fn disposed(id: Uuid) -> EvidenceError {
    Problem::state_conflict(
        "Evidence has been disposed of",
        format!("Evidence {id} was disposed of; only its record remains"),
    )
    .into()
}

fn ensure_editable(row: &EvidenceRow, what: &str) -> Result<()> {
    match row.status {
        EvidenceStatus::Sealed => Err(Problem::state_conflict(
            "Evidence is sealed",
            format!("Sealed evidence cannot be {what}; record RELEASED to unseal it"),
        )
        .into()),
        EvidenceStatus::Disposed => Err(disposed(row.id)),
        _ => Ok(()),
    }
}

fn stored_digests(row: &EvidenceRow) -> Result<Digests> {
    match (&row.file_hash, &row.file_blake3, row.file_size) {
        (Some(sha256), Some(blake3), Some(size)) => {
            Ok(Digests { size: size as u64, sha256: sha256.clone(), blake3: blake3.clone() })
        }
        _ => Err(Problem::state_conflict(
            "Evidence has no file",
            format!("Evidence {} was recorded without a file; there is nothing to verify", row.id),
        )
        .into()),
    }
}

/// The file's name and media type as given by the uploader, checked.
struct FileMeta {
    name: String,
    content_type: String,
}

impl FileMeta {
    fn parse(name: &str, content_type: &str) -> Result<Self> {
        // Only the last path component: names are labels, never paths on our side.
        let name = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
        let name = if name.is_empty() { "evidence.bin" } else { name };
        let name = filter::bounded_text("file_name", name, 255)?;
        if name.chars().any(char::is_control) {
            return Err(Problem::invalid_field("file_name", "must not contain control characters").into());
        }
        let content_type = content_type.trim();
        let content_type = if content_type.is_empty() { "application/octet-stream" } else { content_type };
        if content_type.len() > 255 || !content_type.contains('/') || content_type.chars().any(char::is_control) {
            return Err(Problem::invalid_field("content_type", format!("{content_type:?} is not a media type")).into());
        }
        Ok(FileMeta { name, content_type: content_type.to_owned() })
    }
}

/// A validated [`pb::EvidenceInput`], before its references are checked in the database.
struct ParsedInput {
    fields: EvidenceFields,
    requirements: Vec<Uuid>,
}

fn parse_input(input: pb::EvidenceInput) -> Result<ParsedInput> {
    if input.storage_region.is_some() {
        return Err(Problem::invalid_field(
            "storage_region",
            "only an upload places a file: give it with the upload, not when creating or changing an item",
        )
        .into());
    }
    let now = timefmt::now();
    let collected_at = parse_opt_timestamp("collected_at", input.collected_at.as_deref())?.unwrap_or(now);
    if collected_at > now + Duration::minutes(5) {
        return Err(Problem::invalid_field("collected_at", "must not be in the future").into());
    }
    let retention_period = match input.retention_period {
        None => None,
        Some(days) if (1..=RETENTION_MAX_DAYS).contains(&days) => Some(days),
        Some(days) => {
            return Err(Problem::invalid_field(
                "retention_period",
                format!("{days} is not a number of days between 1 and {RETENTION_MAX_DAYS}"),
            )
            .into());
        }
    };
    if input.compliance_requirements.len() > REQUIREMENT_LINKS_MAX {
        return Err(Problem::invalid_field(
            "compliance_requirements",
            format!("at most {REQUIREMENT_LINKS_MAX} requirements per item"),
        )
        .into());
    }
    let (mut requirements, mut seen) = (Vec::new(), std::collections::HashSet::new());
    for raw in &input.compliance_requirements {
        let id = parse_uuid("compliance_requirements", raw)?;
        if seen.insert(id) {
            requirements.push(id);
        }
    }
    Ok(ParsedInput {
        fields: EvidenceFields {
            incident_id: opt_uuid("incident", input.incident.as_deref())?,
            title: filter::required_text("title", &input.title, TITLE_MAX)?,
            description: filter::bounded_text("description", &input.description, TEXT_MAX)?,
            notes: filter::bounded_text("notes", &input.notes, TEXT_MAX)?,
            evidence_type: EvidenceType::parse_field("evidence_type", input.evidence_type.trim())?,
            source: filter::bounded_text("source", &input.source, SHORT_MAX)?,
            collected_at: to_micros(collected_at),
            valid_until: parse_opt_date("valid_until", input.valid_until.as_deref())?,
            retention_period,
        },
        requirements,
    })
}

/// The incident and requirements must exist in the caller's organisation (locked against
/// deletion until this transaction commits).
async fn check_references(tx: &mut Tx, ctx: &RequestCtx, input: &ParsedInput) -> Result<()> {
    let incident: Vec<Uuid> = input.fields.incident_id.into_iter().collect();
    refs::all(tx, ctx, Kind::Incident, "incident", &incident).await?;
    refs::all(tx, ctx, Kind::Requirement, "compliance_requirements", &input.requirements).await?;
    Ok(())
}

async fn insert(
    tx: &mut Tx,
    ctx: &RequestCtx,
    holds: &Holds,
    input: ParsedInput,
    file: Option<(StoredBlob, FileMeta, Option<String>)>,
) -> Result<pb::Evidence> {
    check_references(tx, ctx, &input).await?;
    let id = new_id();
    let collector = actor_name(ctx);
    let (path, name, content_type, size, sha256, blake3) = match &file {
        Some((blob, meta, _)) => (
            Some(blob.key.clone()),
            Some(meta.name.clone()),
            Some(meta.content_type.clone()),
            Some(blob.digests.size as i64),
            Some(blob.digests.sha256.clone()),
            Some(blob.digests.blake3.clone()),
        ),
        None => (None, None, None, None, None, None),
    };
    custos_db::prepared(diesel::insert_into(evidence::table).values((
        evidence::id.eq(id),
        evidence::organization_id.eq(ctx.organization_id),
        &input.fields,
        evidence::status.eq(EvidenceStatus::Collected),
        evidence::collected_by.eq(&collector),
        evidence::file_path.eq(path),
        evidence::file_name.eq(name),
        evidence::content_type.eq(content_type),
        evidence::file_size.eq(size),
        evidence::file_hash.eq(sha256),
        evidence::file_blake3.eq(blake3),
        evidence::storage_region.eq(file.as_ref().and_then(|(_, _, region)| region.clone())),
    )))
    .execute(tx.conn())
    .await?;
    replace_links(tx, ctx, id, &input.requirements).await?;
    let details = match &file {
        Some((blob, meta, region)) => json!({
            "storage_region": region,
            "file_name": meta.name,
            "sha256": blob.digests.sha256,
            "blake3": blob.digests.blake3,
            "size": blob.digests.size,
        }),
        None => json!({}),
    };
    custody::append(tx, ctx, id, CustodyAction::Collected, "", details).await?;
    let row = find(tx, ctx, id, false).await?;
    let created = one_pb(tx, ctx, holds, row).await?;
    record_change(tx, ctx, "create", "evidence", id, Value::Null, audit_view(&created)).await?;
    Ok(created)
}

async fn replace_links(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, requirement_ids: &[Uuid]) -> Result<()> {
    diesel::delete(
        evidence_requirements::table
            .filter(evidence_requirements::organization_id.eq(ctx.organization_id))
            .filter(evidence_requirements::evidence_id.eq(id)),
    )
    .execute(tx.conn())
    .await?;
    let rows: Vec<_> = requirement_ids
        .iter()
        .map(|r| {
            (
                evidence_requirements::organization_id.eq(ctx.organization_id),
                evidence_requirements::evidence_id.eq(id),
                evidence_requirements::requirement_id.eq(*r),
            )
        })
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(evidence_requirements::table).values(rows).execute(tx.conn()).await?;
    }
    Ok(())
}

async fn find(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> Result<EvidenceRow> {
    let query = evidence::table
        .filter(evidence::organization_id.eq(ctx.organization_id))
        .filter(evidence::id.eq(id))
        .select(EvidenceRow::as_select());
    let found = if lock {
        query.for_update().first(tx.conn()).await.optional()?
    } else {
        query.first(tx.conn()).await.optional()?
    };
    found.ok_or_else(|| not_found(id))
}

async fn one_pb(tx: &mut Tx, ctx: &RequestCtx, holds: &Holds, row: EvidenceRow) -> Result<pb::Evidence> {
    let id = row.id;
    to_pb(tx, ctx, holds, vec![row]).await?.pop().ok_or_else(|| not_found(id))
}

/// Rows with their links, custody chains and covering holds, in three queries for any count.
async fn to_pb(tx: &mut Tx, ctx: &RequestCtx, holds: &Holds, rows: Vec<EvidenceRow>) -> Result<Vec<pb::Evidence>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let links: Vec<(Uuid, Uuid)> = evidence_requirements::table
        .filter(evidence_requirements::organization_id.eq(ctx.organization_id))
        .filter(evidence_requirements::evidence_id.eq_any(&ids))
        .order((evidence_requirements::evidence_id, evidence_requirements::requirement_id))
        .select((evidence_requirements::evidence_id, evidence_requirements::requirement_id))
        .load(tx.conn())
        .await?;
    let mut links_by: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (e, r) in links {
        links_by.entry(e).or_default().push(r.to_string());
    }
    let mut chains: HashMap<Uuid, Vec<pb::CustodyRecord>> = HashMap::new();
    for c in custody::load_chain(tx, ctx.organization_id, &ids).await? {
        chains.entry(c.evidence_id).or_default().push(custody_pb(c));
    }
    let mut holds = holds.holds_on_evidence(tx.conn(), ctx.organization_id, &ids).await?;
    let today = timefmt::today();
    Ok(rows
        .into_iter()
        .map(|r| {
            let legal_holds = holds
                .remove(&r.id)
                .unwrap_or_default()
                .into_iter()
                .map(|h| pb::HoldReference { id: h.id.to_string(), case_name: h.case_name, case_number: h.case_number })
                .collect();
            pb::Evidence {
                id: r.id.to_string(),
                incident: r.incident_id.map(|i| i.to_string()),
                is_expired: r.is_expired(today),
                retention_until: r.retention_until().map(timefmt::date),
                compliance_requirements: links_by.remove(&r.id).unwrap_or_default(),
                custody_chain: chains.remove(&r.id).unwrap_or_default(),
                legal_holds,
                title: r.title,
                description: r.description,
                notes: r.notes,
                evidence_type: r.evidence_type.to_string(),
                status: r.status.to_string(),
                source: r.source,
                file_path: r.file_path,
                file_name: r.file_name,
                content_type: r.content_type,
                file_size: r.file_size,
                file_hash: r.file_hash,
                file_blake3: r.file_blake3,
                collected_by: r.collected_by,
                collected_at: ts(r.collected_at),
                valid_until: r.valid_until.map(timefmt::date),
                retention_period: r.retention_period,
                last_verified_at: r.last_verified_at.map(ts),
                disposed_at: r.disposed_at.map(ts),
                created_at: ts(r.created_at),
                updated_at: ts(r.updated_at),
                storage_region: r.storage_region,
            }
        })
        .collect())
}

fn custody_pb(c: CustodyRow) -> pb::CustodyRecord {
    pb::CustodyRecord {
        sequence: c.seq,
        action: c.action,
        actor: c.actor,
        actor_role: c.actor_role,
        notes: c.notes,
        details: c.details.to_string(),
        recorded_at: ts(c.recorded_at),
        request_id: c.request_id,
        previous_hash: hex::encode(&c.previous_hash),
        record_hash: hex::encode(&c.record_hash),
    }
}

fn to_input(e: &pb::Evidence) -> pb::EvidenceInput {
    pb::EvidenceInput {
        incident: e.incident.clone(),
        title: e.title.clone(),
        description: e.description.clone(),
        notes: e.notes.clone(),
        evidence_type: e.evidence_type.clone(),
        source: e.source.clone(),
        collected_at: Some(e.collected_at.clone()),
        valid_until: e.valid_until.clone(),
        retention_period: e.retention_period,
        compliance_requirements: e.compliance_requirements.clone(),
        storage_region: None,
    }
}

/// What the audit trail keeps of an item: its own fields, not the derived chain and holds
/// (each custody record is its own audited change).
fn audit_view(e: &pb::Evidence) -> Value {
    let mut e = e.clone();
    e.custody_chain.clear();
    e.legal_holds.clear();
    serde_json::to_value(e).unwrap_or(Value::Null)
}

struct EvidenceFilters {
    incident: Option<Uuid>,
    evidence_type: Option<EvidenceType>,
    status: Option<EvidenceStatus>,
    collected_by: Option<String>,
    requirement: Option<Uuid>,
    search: Option<String>,
    expiring_within: Option<(Date, Date)>,
    expired: Option<bool>,
    today: Date,
    collected_after: Option<OffsetDateTime>,
    collected_before: Option<OffsetDateTime>,
}

impl EvidenceFilters {
    fn parse(req: &pb::ListEvidenceRequest) -> Result<Self> {
        let today = timefmt::today();
        Ok(EvidenceFilters {
            incident: opt_uuid("incident", req.incident.as_deref())?,
            evidence_type: opt_choice("evidence_type", req.evidence_type.as_deref())?,
            status: opt_choice("status", req.status.as_deref())?,
            collected_by: opt_text(req.collected_by.as_deref()).map(str::to_owned),
            requirement: opt_uuid("compliance_requirement", req.compliance_requirement.as_deref())?,
            search: search_pattern(req.search.as_deref()),
            expiring_within: match req.expiring_within {
                None => None,
                Some(days) if days <= 36_500 => Some((today, today + Duration::days(i64::from(days)))),
                Some(days) => {
                    return Err(
                        Problem::invalid_field("expiring_within", format!("{days} is more than 36500 days")).into()
                    );
                }
            },
            expired: req.expired,
            today,
            collected_after: parse_opt_time_bound("collected_after", req.collected_after.as_deref(), DayEdge::Start)?,
            collected_before: parse_opt_time_bound("collected_before", req.collected_before.as_deref(), DayEdge::End)?,
        })
    }

    fn apply(&self, org: Uuid) -> evidence::BoxedQuery<'static, Pg> {
        let mut q = evidence::table.filter(evidence::organization_id.eq(org)).into_boxed();
        if let Some(incident) = self.incident {
            q = q.filter(evidence::incident_id.eq(incident));
        }
        if let Some(t) = self.evidence_type {
            q = q.filter(evidence::evidence_type.eq(t));
        }
        if let Some(s) = self.status {
            q = q.filter(evidence::status.eq(s));
        }
        if let Some(who) = &self.collected_by {
            q = q.filter(evidence::collected_by.eq(who.clone()));
        }
        if let Some(requirement) = self.requirement {
            q = q.filter(
                evidence::id.eq_any(
                    evidence_requirements::table
                        .filter(evidence_requirements::organization_id.eq(org))
                        .filter(evidence_requirements::requirement_id.eq(requirement))
                        .select(evidence_requirements::evidence_id),
                ),
            );
        }
        if let Some(pattern) = &self.search {
            // Through `custos_evidence_search`, so that the trigram indexes serve the ILIKE under RLS
            // (migration 000021 says why): it applies the tenant itself and answers ids only.
            q = q.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>("evidence.id IN (SELECT custos_evidence_search(")
                    .bind::<diesel::sql_types::Text, _>(pattern.clone())
                    .sql("))"),
            );
        }
        if let Some((from, to)) = self.expiring_within {
            q = q.filter(evidence::valid_until.ge(from)).filter(evidence::valid_until.le(to));
        }
        match self.expired {
            Some(true) => q = q.filter(evidence::valid_until.lt(self.today)),
            Some(false) => q = q.filter(evidence::valid_until.is_null().or(evidence::valid_until.ge(self.today))),
            None => {}
        }
        if let Some(after) = self.collected_after {
            q = q.filter(evidence::collected_at.ge(after));
        }
        if let Some(before) = self.collected_before {
            q = q.filter(evidence::collected_at.le(before));
        }
        q
    }
}
