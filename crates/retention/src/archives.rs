//! Archive runs: a batch's records, with everything that goes with them (an evidence item's custody
//! chain, requirement links and file; a job's steps), written as one signed archive file
//! ([`crate::archive_file`]) into the blob store data residency allows, then removed from the hot
//! tables in the batch's transaction; and restore, which brings an archive's records back.
//!
//! The archive is written before the batch commits, under a key fixed by the run and the batch's
//! first record: a crash between the two leaves an archive that the re-run of the batch writes
//! again, identically keyed, before it commits — nothing is lost and nothing removed twice.
//! Evidence files stay in the store until the evidence object sweep finds them unreferenced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use custos_audit_chain::note::{NoteSigner, NoteVerifier};
use custos_audit_chain::{Change, record_many};
use custos_core::filter::Choice;
use custos_core::{Problem, RequestCtx, timefmt};
use custos_db::Tx;
use custos_residency::Write;
use diesel::sql_types::{Array, Jsonb, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::archive_file::{self, ArchivedRecord, Entry, FileEntry, Manifest};
use crate::model::{EntityType, PolicyRow};
use crate::{Result, RetentionService};

/// The main table of an entity, and the tables of what goes with each record: (table, the column
/// naming the record).
fn tables(entity: EntityType) -> (&'static str, &'static [(&'static str, &'static str)]) {
    match entity {
        EntityType::Incident => ("incidents", &[]),
        EntityType::Evidence => {
            ("evidence", &[("custody_records", "evidence_id"), ("evidence_requirements", "evidence_id")])
        }
        EntityType::Vulnerability => ("vulnerabilities", &[]),
        EntityType::Job => ("jobs", &[("job_steps", "job_id")]),
        EntityType::AuditLog => ("audit_entries", &[]),
    }
}

#[derive(diesel::QueryableByName)]
struct RowJson {
    #[diesel(sql_type = SqlUuid)]
    owner: Uuid,
    #[diesel(sql_type = Jsonb)]
    row: Value,
}

/// The rows of `ids` and of what goes with them, by record.
async fn capture(tx: &mut Tx, org: Uuid, entity: EntityType, ids: &[Uuid]) -> Result<Vec<ArchivedRecord>> {
    let (main, deps) = tables(entity);
    let mut records: BTreeMap<Uuid, ArchivedRecord> = ids
        .iter()
        .map(|id| (*id, ArchivedRecord { entity_type: entity.to_string(), id: *id, rows: BTreeMap::new() }))
        .collect();
    let mut read = |table: &'static str, rows: Vec<RowJson>| {
        for r in rows {
            if let Some(rec) = records.get_mut(&r.owner) {
                rec.rows.entry(table.to_owned()).or_default().push(r.row);
            }
        }
    };
    // Table names come from `tables` above, never from input.
    let rows: Vec<RowJson> = diesel::sql_query(format!(
        "SELECT t.id AS owner, to_jsonb(t) AS row FROM {main} t WHERE t.organization_id = $1 AND t.id = ANY($2)"
    ))
    .bind::<SqlUuid, _>(org)
    .bind::<Array<SqlUuid>, _>(ids)
    .load(tx.conn())
    .await?;
    read(main, rows);
    for (table, column) in deps {
        let rows: Vec<RowJson> = diesel::sql_query(format!(
            "SELECT t.{column} AS owner, to_jsonb(t) AS row FROM {table} t WHERE t.{column} = ANY($1) ORDER BY 1"
        ))
        .bind::<Array<SqlUuid>, _>(ids)
        .load(tx.conn())
        .await?;
        read(table, rows);
    }
    Ok(records.into_values().collect())
}

fn text(row: &Value, field: &str) -> Option<String> {
    row.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("custos-archive-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io(e: impl std::fmt::Display) -> Problem {
    Problem::internal(format!("archive: {e}"))
}

impl RetentionService {
    fn signer(&self) -> Result<&NoteSigner> {
        Ok(self.signer.as_ref().ok_or_else(|| {
            Problem::state_conflict(
                "Archives cannot be signed",
                "archive runs sign with the platform's key: set CUSTOS_SIGNING_KEY or CUSTOS_SIGNING_KEY_FILE",
            )
        })?)
    }

    /// Writes `ids` (the records of `policy` a batch of run `run` archives) as one archive into the
    /// store residency allows for them; answers where (`region:key`, region empty for the default
    /// store). Refused (409, recorded) where residency refuses.
    pub(crate) async fn archive_batch(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        policy: &PolicyRow,
        run: Uuid,
        ids: &[Uuid],
    ) -> Result<String> {
        let org = ctx.organization_id;
        let records = capture(tx, org, policy.entity_type, ids).await?;
        let main = tables(policy.entity_type).0;
        // Evidence files: (evidence, region, key, sha256).
        let files: Vec<(Uuid, Option<String>, String, String)> = records
            .iter()
            .filter_map(|r| {
                let row = <[Value]>::first(r.rows.get(main)?)?;
                Some((r.id, text(row, "storage_region"), text(row, "file_path")?, text(row, "file_hash")?))
            })
            .collect();
        let entity = policy.entity_type.to_string();
        let placed = self
            .residency
            .place(
                ctx,
                Write {
                    operation: "retention.archive",
                    entity_type: Some(&entity),
                    entity_id: None,
                    requested_region: None,
                    source_regions: files.iter().map(|f| f.1.clone()).collect(),
                },
            )
            .await?;
        let scratch = Scratch::new().map_err(io)?;
        let mut file_entries = Vec::new();
        for (evidence, region, key, sha) in &files {
            let path = format!("files/{sha}");
            if file_entries.iter().any(|f: &FileEntry| f.path == path) {
                file_entries.push(FileEntry { evidence: *evidence, path, sha256: sha.clone(), size: 0 });
                continue;
            }
            let store = self.residency.stores().get(region.as_deref()).ok_or_else(|| {
                Problem::state_conflict(
                    "Blob store not configured",
                    format!("evidence {evidence} is stored in region {region:?}, which has no blob store here"),
                )
            })?;
            let (size, digest) = copy_out(store, key, &scratch.0.join(sha)).await.map_err(|e| {
                Problem::state_conflict("Evidence file unavailable", format!("evidence {evidence}: {e}"))
            })?;
            if &digest != sha {
                return Err(Problem::state_conflict(
                    "Evidence file damaged",
                    format!("the file of evidence {evidence} no longer matches its SHA-256; run verify_evidence"),
                )
                .into());
            }
            file_entries.push(FileEntry { evidence: *evidence, path, sha256: sha.clone(), size });
        }
        // An identical file shared by several items is stored once; each item names it.
        let sizes: BTreeMap<String, u64> =
            file_entries.iter().filter(|f| f.size > 0).map(|f| (f.path.clone(), f.size)).collect();
        for f in &mut file_entries {
            f.size = sizes.get(&f.path).copied().unwrap_or(f.size);
        }
        let mut written = Vec::new();
        let mut entries = Vec::new();
        for r in &records {
            let bytes = serde_json::to_vec(r).map_err(io)?;
            let path = format!("records/{}.json", r.id);
            entries.push(Entry {
                id: r.id,
                path: path.clone(),
                sha256: archive_file::sha256_hex(&bytes),
                size: bytes.len() as u64,
            });
            written.push((path, bytes));
        }
        let manifest = Manifest {
            format: archive_file::FORMAT.to_owned(),
            organization: org,
            run,
            policy: policy.id,
            policy_name: policy.name.clone(),
            entity_type: policy.entity_type.to_string(),
            created_at: timefmt::timestamp(timefmt::now()),
            records: entries,
            // Each file once in the archive.
            files: {
                let mut seen = std::collections::HashSet::new();
                file_entries.into_iter().filter(|f| seen.insert(f.path.clone())).collect()
            },
        };
        let tar_path = scratch.0.join("archive.tar");
        {
            let signer = self.signer()?.clone();
            let (tar_path, dir, manifest) = (tar_path.clone(), scratch.0.clone(), manifest.clone());
            tokio::task::spawn_blocking(move || {
                let out = std::io::BufWriter::new(std::fs::File::create(&tar_path)?);
                archive_file::write(out, &signer, &manifest, &written, |path| {
                    let file = std::fs::File::open(dir.join(path.trim_start_matches("files/")))?;
                    Ok((file.metadata()?.len(), Box::new(std::io::BufReader::new(file))))
                })
                .map_err(std::io::Error::other)
            })
            .await
            .map_err(io)?
            .map_err(io)?;
        }
        let first = ids.iter().min().copied().unwrap_or_default();
        let key = match &placed.prefix {
            Some(prefix) => format!("{prefix}/archives/{org}/{run}/{first}.tar"),
            None => format!("archives/{org}/{run}/{first}.tar"),
        };
        placed.store.put_file(&key, &tar_path).await.map_err(io)?;
        Ok(format!("{}:{key}", placed.region.unwrap_or_default()))
    }

    /// Brings back the records of the archive at `path`, after checking it (the manifest's
    /// signature by one of `keys`, or by this server's key when none is given; every digest),
    /// for the organisation of `ctx`, which must be the archive's. Records present already are
    /// left as they are. Evidence files go back into the store residency allows. Answers how many
    /// records were restored and how many were present already.
    pub async fn restore_archive(
        &self,
        ctx: &RequestCtx,
        path: &Path,
        keys: Vec<NoteVerifier>,
    ) -> Result<(usize, usize)> {
        let keys = if keys.is_empty() { vec![self.signer()?.verifier()] } else { keys };
        let verified = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&path)?;
                archive_file::verify(std::io::BufReader::new(file), &keys).map_err(std::io::Error::other)
            })
            .await
            .map_err(io)?
            .map_err(|e| Problem::invalid("Archive refused", e.to_string()))?
        };
        let manifest = verified.manifest;
        let org = ctx.organization_id;
        if manifest.organization != org {
            return Err(Problem::invalid(
                "Archive of another organisation",
                format!("the archive holds records of organisation {}", manifest.organization),
            )
            .into());
        }
        let entity =
            EntityType::ALL.iter().copied().find(|e| e.as_str() == manifest.entity_type).ok_or_else(|| {
                Problem::invalid("Archive refused", format!("unknown entity {}", manifest.entity_type))
            })?;
        let scratch = Scratch::new().map_err(io)?;
        let records = {
            let (path, dir, manifest) = (path.to_owned(), scratch.0.clone(), manifest.clone());
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&path)?;
                archive_file::read_contents(std::io::BufReader::new(file), &manifest, |f, r| {
                    let mut out = std::fs::File::create(dir.join(&f.sha256))?;
                    std::io::copy(r, &mut out)?;
                    Ok(())
                })
                .map_err(std::io::Error::other)
            })
            .await
            .map_err(io)?
            .map_err(|e| Problem::invalid("Archive refused", e.to_string()))?
        };
        // Files back into the store first: a failure leaves nothing half restored in the tables.
        let mut stored: BTreeMap<String, (Option<String>, String)> = BTreeMap::new();
        if !manifest.files.is_empty() {
            let placed = self
                .residency
                .place(
                    ctx,
                    Write { operation: "retention.archive_restore", entity_type: Some("evidence"), ..Write::default() },
                )
                .await?;
            for f in &manifest.files {
                if stored.contains_key(&f.sha256) {
                    continue;
                }
                let file = tokio::fs::File::open(scratch.0.join(&f.sha256)).await.map_err(io)?;
                let body = tokio_util::io::ReaderStream::new(file);
                let blob = placed.store.ingest(org, placed.prefix.as_deref(), body, u64::MAX).await.map_err(io)?;
                if blob.digests.sha256 != f.sha256 {
                    return Err(Problem::internal("a restored file changed on its way into the store").into());
                }
                stored.insert(f.sha256.clone(), (placed.region.clone(), blob.key));
            }
        }
        let (main, deps) = tables(entity);
        let mut tx = self.db.begin(org).await?;
        let (mut restored, mut present) = (Vec::new(), 0);
        for record in records {
            let exists: i64 =
                diesel::sql_query(format!("SELECT count(*) AS n FROM {main} WHERE organization_id = $1 AND id = $2"))
                    .bind::<SqlUuid, _>(org)
                    .bind::<SqlUuid, _>(record.id)
                    .get_result::<Count>(tx.conn())
                    .await?
                    .n;
            if exists > 0 {
                present += 1;
                continue;
            }
            for mut row in record.rows.get(main).cloned().unwrap_or_default() {
                if let Some(obj) = row.as_object_mut() {
                    obj.insert("deleted_at".into(), Value::Null);
                    obj.insert("deleted_by_run".into(), Value::Null);
                    if let Some(sha) = obj.get("file_hash").and_then(Value::as_str).map(str::to_owned)
                        && let Some((region, key)) = stored.get(&sha)
                    {
                        obj.insert("file_path".into(), json!(key));
                        obj.insert("storage_region".into(), json!(region));
                    }
                }
                insert_row(&mut tx, main, &row, None).await?;
            }
            for (table, _) in deps {
                for row in record.rows.get(*table).cloned().unwrap_or_default() {
                    // A link to a requirement deleted since is not restored.
                    let guard = (*table == "evidence_requirements")
                        .then_some("EXISTS (SELECT 1 FROM requirements q WHERE q.id = r.requirement_id)");
                    insert_row(&mut tx, table, &row, guard).await?;
                }
            }
            restored.push(record.id);
        }
        if !restored.is_empty() {
            diesel::sql_query(
                "UPDATE retention_run_items SET restored_at = now()
                  WHERE organization_id = $1 AND run_id = $2 AND record_id = ANY($3) AND restored_at IS NULL",
            )
            .bind::<SqlUuid, _>(org)
            .bind::<SqlUuid, _>(manifest.run)
            .bind::<Array<SqlUuid>, _>(&restored)
            .execute(tx.conn())
            .await?;
            diesel::sql_query(
                "UPDATE retention_runs SET restored = restored + $3 WHERE organization_id = $1 AND id = $2",
            )
            .bind::<SqlUuid, _>(org)
            .bind::<SqlUuid, _>(manifest.run)
            .bind::<diesel::sql_types::BigInt, _>(restored.len() as i64)
            .execute(tx.conn())
            .await?;
            let resource = entity.to_string();
            record_many(
                &mut tx,
                ctx,
                restored
                    .iter()
                    .map(|id| Change {
                        action: "retention_restore",
                        resource_type: &resource,
                        resource_id: id.to_string(),
                        before: Value::Null,
                        after: json!({ "retention_run": manifest.run, "policy": manifest.policy, "from_archive": true }),
                    })
                    .collect(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok((restored.len(), present))
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Inserts `row` (as `to_jsonb` wrote it) into `table`; `guard` is a condition on it (`r`).
async fn insert_row(tx: &mut Tx, table: &str, row: &Value, guard: Option<&str>) -> Result<()> {
    let condition = guard.map(|g| format!(" WHERE {g}")).unwrap_or_default();
    diesel::sql_query(format!(
        "INSERT INTO {table} SELECT r.* FROM jsonb_populate_record(NULL::{table}, $1) r{condition}"
    ))
    .bind::<Jsonb, _>(row)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Copies an object into a local file; its size and SHA-256.
async fn copy_out(store: &custos_blobs::BlobStore, key: &str, to: &Path) -> std::io::Result<(u64, String)> {
    let Some((_, mut body)) = store.open(key).await.map_err(std::io::Error::other)? else {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{key} is gone from the store")));
    };
    let mut out = tokio::fs::File::create(to).await?;
    let mut hasher = Sha256::new();
    let mut size = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    Ok((size, custos_core::hex::encode(&hasher.finalize())))
}
