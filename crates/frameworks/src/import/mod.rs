//! Bringing frameworks in and taking them out: Custos's own catalogue files, OSCAL catalogs
//! ([`oscal`]) and the framework and mapping libraries of the largest open-source GRC tool
//! ([`library`]) all read into one [`Document`] — catalogue frameworks and mapping sets — which
//! one writer ([`write`]) puts into an organisation, in one transaction: a file is imported
//! whole or not at all, and importing it again creates nothing new. [`export`] writes a
//! framework back out.

pub mod export;
pub mod library;
pub mod oscal;
pub mod write;

use std::fmt;
use std::sync::Arc;

use custos_core::ctx::Access;
use custos_core::new_id;
use custos_core::{ErrorKind, Problem, RequestCtx};
use custos_db::schema::framework_import_uploads;
use custos_db::{DbError, Tx};
use custos_jobs::queue::{self, NewJob};
use custos_jobs::{Job, JobError, Kind, Scope};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::catalog::{self, CatalogFramework, CatalogMapping};
use crate::service::{FrameworksError, FrameworksService};
pub use write::{FrameworkOutcome, MappingOutcome};

/// The kind of job a large import runs as.
pub const IMPORT_JOB: &str = "frameworks.import";

/// The largest document taken (REST upload, gRPC message).
pub const IMPORT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Documents with more requirements than this are imported by a job (with progress) unless the
/// caller says otherwise; smaller ones within the request.
pub const JOB_THRESHOLD: usize = 5_000;

/// The formats a framework document comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `custos-catalog/v1` or `custos-mapping/v1` YAML (`crates/frameworks/catalog/README.md`).
    Custos,
    /// An OSCAL catalog (JSON), resolved profiles included.
    Oscal,
    /// A framework or mapping library YAML file of the largest open-source GRC tool.
    Library,
}

impl Format {
    pub const ALLOWED: &str = "auto, custos, oscal, library";

    /// `None` for `auto` (or nothing): the document says what it is.
    pub fn parse(value: Option<&str>) -> Result<Option<Format>, Problem> {
        match value.map(str::trim).unwrap_or("auto") {
            "" | "auto" => Ok(None),
            "custos" => Ok(Some(Format::Custos)),
            "oscal" => Ok(Some(Format::Oscal)),
            "library" => Ok(Some(Format::Library)),
            other => Err(Problem::invalid_field("format", format!("{other:?} is not one of {}", Format::ALLOWED))),
        }
    }

    /// What the text is, by its first meaningful characters and top-level keys.
    pub fn detect(text: &str) -> Format {
        let body = text.trim_start_matches('\u{feff}').trim_start();
        if body.starts_with('{') {
            return Format::Oscal;
        }
        let top_level = |key: &str| body.lines().any(|l| l.starts_with(key));
        if top_level("format: custos-") { Format::Custos } else { Format::Library }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Custos => "custos",
            Format::Oscal => "oscal",
            Format::Library => "library",
        }
    }
}

/// What an OSCAL import does with withdrawn controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Withdrawn {
    /// Imported, titled "… (withdrawn)" and marked in their attributes.
    #[default]
    Mark,
    /// Left out.
    Skip,
}

impl Withdrawn {
    pub fn parse(value: Option<&str>) -> Result<Withdrawn, Problem> {
        match value.map(str::trim).unwrap_or("") {
            "" | "mark" => Ok(Withdrawn::Mark),
            "skip" => Ok(Withdrawn::Skip),
            other => Err(Problem::invalid_field("withdrawn", format!("{other:?} is not one of mark, skip"))),
        }
    }
}

/// How to read a document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadOptions {
    /// `None`: detect it.
    pub format: Option<Format>,
    /// The catalogue key to file an OSCAL catalog under (default: the one a Custos export
    /// recorded, else `oscal:` and the catalog's title in lower case).
    pub catalog_key: Option<String>,
    pub withdrawn: Withdrawn,
}

/// Which framework a mapping set's side is, and so what its pairs name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameworkRef {
    /// A catalogue key; pairs name `requirement_id`s.
    CatalogKey(String),
    /// A framework's external id (a library URN); pairs name requirements' external ids.
    ExternalId(String),
}

impl fmt::Display for FrameworkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameworkRef::CatalogKey(k) | FrameworkRef::ExternalId(k) => f.write_str(k),
        }
    }
}

/// Requirements of one framework related to another's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSet {
    pub key: String,
    pub name: String,
    pub source: FrameworkRef,
    pub target: FrameworkRef,
    pub pairs: Vec<MappingPair>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingPair {
    pub source: String,
    pub target: String,
    /// One of [`catalog::RELATIONSHIPS`].
    pub relationship: String,
    pub rationale: String,
}

impl From<&CatalogMapping> for MappingSet {
    fn from(m: &CatalogMapping) -> Self {
        MappingSet {
            key: m.key.clone(),
            name: m.name.clone(),
            source: FrameworkRef::CatalogKey(m.source.clone()),
            target: FrameworkRef::CatalogKey(m.target.clone()),
            pairs: m
                .mappings
                .iter()
                .map(|p| MappingPair {
                    source: p.source.clone(),
                    target: p.target.clone(),
                    relationship: p.relationship.clone(),
                    rationale: p.rationale.clone(),
                })
                .collect(),
        }
    }
}

/// A document read and checked, ready to write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    pub format: Format,
    pub frameworks: Vec<CatalogFramework>,
    pub mapping_sets: Vec<MappingSet>,
    /// What the reader did that the user should know (pairs it left out and why).
    pub warnings: Vec<String>,
}

impl Document {
    pub fn requirement_count(&self) -> usize {
        self.frameworks.iter().map(|f| f.requirements.len()).sum()
    }
}

/// One problem of a document, located: the shared kind (`custos_core::Issue`).
pub use custos_core::Issue;

/// The problem a document with `issues` is refused with: every issue, at once (422).
pub fn refused(file_name: &str, issues: Vec<Issue>) -> Problem {
    let count = issues.len();
    Problem::new(
        ErrorKind::Unprocessable,
        format!(
            "{file_name} cannot be imported: {count} problem{} found, nothing was imported",
            if count == 1 { "" } else { "s" }
        ),
        json!(issues),
    )
}

/// Reads `text` (named `file_name` in errors) into a checked [`Document`].
pub fn read(file_name: &str, text: &str, options: &ReadOptions) -> Result<Document, Problem> {
    let format = options.format.unwrap_or_else(|| Format::detect(text));
    let document = match format {
        Format::Custos => read_custos(text),
        Format::Oscal => oscal::read(text, options),
        Format::Library => library::read(text),
    }
    .map_err(|issues| refused(file_name, issues))?;
    // Whatever the reader, the frameworks it made obey the catalogue's rules.
    let issues: Vec<Issue> = document
        .frameworks
        .iter()
        .flat_map(|f| f.problems().into_iter().map(move |p| Issue::new(p).at(format!("framework {}", f.key))))
        .collect();
    if issues.is_empty() { Ok(document) } else { Err(refused(file_name, issues)) }
}

/// A Custos catalogue file or mapping file.
fn read_custos(text: &str) -> Result<Document, Vec<Issue>> {
    let yaml_issue = |e: serde_yaml_ng::Error| {
        let issue = Issue::new(e.to_string());
        match e.location() {
            Some(l) => vec![issue.position(l.line(), l.column())],
            None => vec![issue],
        }
    };
    let mapping = catalog::is_mapping_file(text);
    let mut document = Document { format: Format::Custos, frameworks: vec![], mapping_sets: vec![], warnings: vec![] };
    if mapping {
        let set: CatalogMapping = serde_yaml_ng::from_str(text).map_err(yaml_issue)?;
        let problems = catalog::mapping_problems(&set);
        if !problems.is_empty() {
            return Err(problems.into_iter().map(Issue::new).collect());
        }
        document.mapping_sets.push(MappingSet::from(&set));
    } else {
        document.frameworks.push(serde_yaml_ng::from_str(text).map_err(yaml_issue)?);
    }
    Ok(document)
}

/// What an import did, or in a dry run would do.
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub format: Format,
    pub dry_run: bool,
    pub frameworks: Vec<FrameworkOutcome>,
    pub mapping_sets: Vec<MappingOutcome>,
    pub warnings: Vec<String>,
}

impl FrameworksService {
    /// Lets requests that start a job wake this process's runner.
    pub fn with_job_waker(mut self, waker: Arc<Notify>) -> Self {
        self.job_waker = Some(waker);
        self
    }

    /// Writes `document` into the caller's organisation in one transaction; a dry run does all
    /// of it and rolls back, so what it reports is exactly what the import would do.
    pub async fn import_document(
        &self,
        ctx: &RequestCtx,
        document: &Document,
        dry_run: bool,
    ) -> Result<ImportOutcome, FrameworksError> {
        ctx.require(Access::Write)?;
        let mut tx = self.db().begin(ctx.organization_id).await?;
        let outcome = import_in(&mut tx, ctx, document, dry_run).await?;
        if !dry_run {
            tx.commit().await?;
        }
        Ok(outcome)
    }
}

/// [`FrameworksService::import_document`] in the caller's transaction (the import job's step).
pub async fn import_in(
    tx: &mut Tx,
    ctx: &RequestCtx,
    document: &Document,
    dry_run: bool,
) -> Result<ImportOutcome, FrameworksError> {
    let mut outcome = ImportOutcome {
        format: document.format,
        dry_run,
        frameworks: Vec::with_capacity(document.frameworks.len()),
        mapping_sets: Vec::with_capacity(document.mapping_sets.len()),
        warnings: document.warnings.clone(),
    };
    // Frameworks first: a document's mapping sets may name its own frameworks.
    for framework in &document.frameworks {
        outcome.frameworks.push(write::write_framework(tx, ctx, framework).await?);
    }
    for set in &document.mapping_sets {
        outcome.mapping_sets.push(write::write_mapping_set(tx, ctx, set).await?);
    }
    Ok(outcome)
}

/// The outcome as the API returns it.
pub fn outcome_value(outcome: &ImportOutcome) -> Value {
    serde_json::to_value(outcome).unwrap_or(Value::Null)
}

impl ImportOutcome {
    pub fn to_pb(&self) -> pb::ImportFrameworkResponse {
        pb::ImportFrameworkResponse {
            format: self.format.as_str().to_owned(),
            dry_run: self.dry_run,
            frameworks: self
                .frameworks
                .iter()
                .map(|f| pb::ImportedFramework {
                    key: f.key.clone(),
                    version: f.version.clone(),
                    framework: f.framework_id.to_string(),
                    framework_created: f.framework_created,
                    requirements_created: f.requirements_created as i64,
                    requirements_existing: f.requirements_existing as i64,
                    requirements_total: f.requirements_total as i64,
                })
                .collect(),
            mapping_sets: self
                .mapping_sets
                .iter()
                .map(|m| pb::ImportedMappingSet {
                    key: m.key.clone(),
                    created: m.created as i64,
                    existing: m.existing as i64,
                    unresolved: m.unresolved.clone(),
                })
                .collect(),
            warnings: self.warnings.clone(),
            job: None,
        }
    }
}

/// The import job's parameters: the upload to import and how to read it (the document itself
/// waits in `framework_import_uploads`, not here: job parameters are in every audit entry of
/// the job).
#[derive(Serialize, Deserialize)]
struct ImportJob {
    upload: Uuid,
    file_name: String,
    /// Hex SHA-256 of the document, so the job's audit entries say which one it imported.
    sha256: String,
    bytes: usize,
    options: ReadOptions,
}

impl FrameworksService {
    /// `POST /api/compliance/frameworks/import/`: reads the document (refusing it whole, with
    /// every problem, if anything is wrong) and imports it — within the request, or as a job
    /// for a large one.
    pub async fn import_framework(
        &self,
        ctx: &RequestCtx,
        req: pb::ImportFrameworkRequest,
    ) -> Result<pb::ImportFrameworkResponse, FrameworksError> {
        ctx.require(Access::Write)?;
        let options = ReadOptions {
            format: Format::parse(req.format.as_deref())?,
            catalog_key: req.catalog_key.filter(|k| !k.trim().is_empty()),
            withdrawn: Withdrawn::parse(req.withdrawn.as_deref())?,
        };
        if req.content.trim().is_empty() {
            return Err(Problem::invalid_field("content", "the document is empty").into());
        }
        let file_name = req.file_name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "The document".to_owned());
        // Parsing a large document takes a while: off the request threads.
        let content = req.content;
        let (document, content) = {
            let options = options.clone();
            let file_name = file_name.clone();
            tokio::task::spawn_blocking(move || read(&file_name, &content, &options).map(|d| (d, content)))
                .await
                .map_err(Problem::internal)??
        };
        let dry_run = req.dry_run.unwrap_or(false);
        let as_job = !dry_run && req.as_job.unwrap_or(document.requirement_count() > JOB_THRESHOLD);
        if !as_job {
            return Ok(self.import_document(ctx, &document, dry_run).await?.to_pb());
        }
        let mut tx = self.db().begin_as(ctx, Access::Write).await?;
        let upload = new_id();
        diesel::insert_into(framework_import_uploads::table)
            .values((
                framework_import_uploads::id.eq(upload),
                framework_import_uploads::organization_id.eq(ctx.organization_id),
                framework_import_uploads::file_name.eq(&file_name),
                framework_import_uploads::content.eq(&content),
            ))
            .execute(tx.conn())
            .await?;
        let parameters = serde_json::to_value(ImportJob {
            upload,
            file_name,
            sha256: const_hex::encode(Sha256::digest(content.as_bytes())),
            bytes: content.len(),
            options,
        })
        .map_err(Problem::internal)?;
        let job = queue::enqueue(
            &mut tx,
            Some(ctx),
            NewJob {
                organization_id: Some(ctx.organization_id),
                kind: IMPORT_JOB.to_owned(),
                parameters,
                max_attempts: IMPORT_ATTEMPTS,
                created_by: ctx.actor.label(),
                schedule: None,
            },
        )
        .await?
        .ok_or_else(|| Problem::internal("the import job was not queued"))?;
        tx.commit().await?;
        if let Some(waker) = &self.job_waker {
            waker.notify_one();
        }
        Ok(pb::ImportFrameworkResponse {
            format: document.format.as_str().to_owned(),
            dry_run: false,
            warnings: document.warnings,
            job: Some(job.to_pb()),
            ..Default::default()
        })
    }
}

const IMPORT_ATTEMPTS: i32 = 3;

/// The kind of job large imports run as: in one step (one transaction, so nothing is
/// half-imported) it reads the upload, imports it and deletes it; a rerun after a crash finds
/// the step done, or does it whole.
pub fn import_job() -> Kind {
    Kind::new(IMPORT_JOB, Scope::Organization, "Imports a large framework document", move |job: Job| async move {
        let org = job.organization().ok_or_else(|| JobError::fatal("an import belongs to an organisation"))?;
        let params: ImportJob = job.params()?;
        let ctx = job.ctx(org);
        job.set_progress(0.05);
        let done = job
            .step("import", Some(org), async |tx| {
                let upload = framework_import_uploads::table
                    .filter(framework_import_uploads::organization_id.eq(org))
                    .filter(framework_import_uploads::id.eq(params.upload))
                    .select(framework_import_uploads::content)
                    .first::<String>(tx.conn())
                    .await
                    .optional()
                    .map_err(|e| JobError::retry(DbError::from(e)))?
                    .ok_or_else(|| JobError::fatal("the uploaded document is gone"))?;
                let document = read(&params.file_name, &upload, &params.options).map_err(JobError::from_problem)?;
                let outcome = import_in(tx, &ctx, &document, false)
                    .await
                    .map_err(|e| JobError::from_problem(Problem::from(e)))?;
                diesel::delete(framework_import_uploads::table.filter(framework_import_uploads::id.eq(params.upload)))
                    .execute(tx.conn())
                    .await
                    .map_err(|e| JobError::retry(DbError::from(e)))?;
                Ok(outcome)
            })
            .await?;
        job.set_progress(1.0);
        match done {
            Some(outcome) => {
                let created: usize = outcome.frameworks.iter().map(|f| f.requirements_created).sum();
                job.count("requirements_created", created as i64);
                Ok(outcome_value(&outcome))
            }
            None => Ok(json!({ "note": "imported by an earlier attempt of this job" })),
        }
    })
    .attempts(IMPORT_ATTEMPTS)
}
