//! PostgreSQL access for every Custos crate.
//!
//! * [`Db`] owns the connection pool. The service reaches the database only through
//!   [`Db::begin`], which opens a transaction, drops to the restricted `custos_app` role and sets
//!   the tenant — so row-level security applies to every statement whatever user the pool
//!   connected as.
//! * [`migrate`] runs the embedded migrations from `migrations/` (no libpq needed).
//! * [`schema`] is the diesel schema, kept by hand (`diesel print-schema` would need libpq) and
//!   checked against the migrated database by a test.
//! * The resource kit every domain's service uses: [`choice!`] (value-set enums read and written
//!   as their types), [`list`] (counting, keyset cursors and plans of list queries) and [`refs`]
//!   (the one check of ids naming another resource of the tenant).

pub mod choice;
pub mod list;
pub mod outbox;
pub mod prepared;
pub mod refs;
pub mod schema;
pub mod values;

use std::time::Duration;

use custos_core::ctx::Access;
use custos_core::{ErrorKind, RequestCtx};
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AnsiTransactionManager, AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use uuid::Uuid;

pub use diesel_async::AsyncPgConnection as PgConn;

/// The legal-hold check every deleting path calls inside its transaction.
pub type Holds = std::sync::Arc<dyn custos_core::HoldCheck<AsyncPgConnection>>;

/// Declares a domain crate's error type: a rejection (`Problem`), a database failure, and any
/// further variants, each convertible with `?` and mapped into a `Problem` at the edge. Extra
/// variants' types must convert into `Problem`.
#[macro_export]
macro_rules! service_error {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($variant:ident($ty:ty)),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, thiserror::Error)]
        $vis enum $name {
            #[error(transparent)]
            Rejected(#[from] $crate::Problem),
            #[error(transparent)]
            Db(#[from] $crate::DbError),
            $(#[error(transparent)] $variant(#[from] $ty),)*
        }

        impl From<$crate::diesel::result::Error> for $name {
            fn from(e: $crate::diesel::result::Error) -> Self {
                $name::Db(e.into())
            }
        }

        impl From<$name> for $crate::Problem {
            fn from(err: $name) -> Self {
                match err {
                    $name::Rejected(p) => p,
                    $name::Db(e) => e.into(),
                    $($name::$variant(e) => e.into(),)*
                }
            }
        }
    };
}

#[doc(hidden)]
pub use custos_core as __core;
#[doc(hidden)]
pub use custos_core::Problem;
#[doc(hidden)]
pub use diesel;
pub use prepared::prepared;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// The role every request transaction runs as.
pub const APP_ROLE: &str = "custos_app";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl DbError {
    /// A unique violation as a 409 with these words (a name or key already taken); any other
    /// error as it maps.
    pub fn unique_as_conflict(self, error: &str, details: String) -> Problem {
        if self.is_unique_violation() { Problem::conflict(error, details) } else { self.into() }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
        )
    }

    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _
            ))
        )
    }
}

fn aborted() -> Problem {
    Problem::new(
        ErrorKind::Aborted,
        "Concurrent change",
        "The request collided with a concurrent change and was undone; nothing was written, send it again",
    )
}

impl From<DbError> for Problem {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(msg) => {
                tracing::warn!(%msg, "database unavailable");
                Problem::new(
                    ErrorKind::Unavailable,
                    "Service unavailable",
                    "The database cannot be reached; retry shortly",
                )
            }
            DbError::Query(diesel::result::Error::NotFound) => {
                Problem::new(ErrorKind::NotFound, "Not found", "No such resource")
            }
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                info,
            )) => Problem::conflict(
                "Conflict",
                format!("A resource with these values already exists ({})", info.message()),
            ),
            // What a request refers to was deleted between its check and its write (the check
            // saw it): the thing is gone, as a check a moment later would have said. Deleting
            // what is still referred to is a conflict.
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                info,
            )) => {
                if info.message().starts_with("update or delete on table") {
                    Problem::conflict("Still referenced", "Other records still refer to this resource")
                } else {
                    Problem::new(
                        ErrorKind::Unprocessable,
                        "Referenced resource gone",
                        "Something this request refers to was deleted meanwhile; check and retry",
                    )
                }
            }
            // Two transactions each waited on the other's locks (PostgreSQL broke the cycle by
            // aborting this one), or a serializable transaction could not be ordered: nothing was
            // written, and the same request sent again will most likely succeed.
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::SerializationFailure,
                _,
            )) => aborted(),
            DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, info))
                if info.message().starts_with("deadlock detected") =>
            {
                tracing::warn!(detail = info.details().unwrap_or_default(), "deadlock: the request was aborted");
                aborted()
            }
            // PostgreSQL holds no NUL character in text (22021) or `jsonb` (22P05); Rust strings
            // and JSON may carry one. Diesel gives no SQLSTATE for these, so they are told by the
            // server's message (English, as the server's `lc_messages` is by default).
            DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, info))
                if info.message().starts_with("invalid byte sequence for encoding")
                    || info.message().starts_with("unsupported Unicode escape sequence") =>
            {
                Problem::invalid("Invalid text", "Text may not contain the NUL character (U+0000)")
            }
            other => Problem::internal(other),
        }
    }
}

/// Pool configuration.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    pub max_connections: usize,
    pub acquire_timeout: Duration,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        DbConfig { url: url.into(), max_connections: 16, acquire_timeout: Duration::from_secs(5) }
    }
}

/// The shared connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncPgConnection>,
}

/// Pool usage, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

impl Db {
    /// Builds the pool; it connects lazily. Call [`Db::ping`] to fail fast on a bad URL.
    pub fn connect(config: &DbConfig) -> Result<Db, DbError> {
        // Connections are handed out without a test query: that would be one more round trip on
        // every transaction. A connection the server closed is still dropped at checkout (the
        // pool sees it closed); one that died unnoticed fails at `BEGIN`, which is retried on the
        // next connection until a fresh one is opened (see `begin_with`).
        let mut manager_config = ManagerConfig::default();
        manager_config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&config.url, manager_config);
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .wait_timeout(Some(config.acquire_timeout))
            .create_timeout(Some(config.acquire_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        Ok(Db { pool })
    }

    pub async fn conn(&self) -> Result<Object<AsyncPgConnection>, DbError> {
        self.pool.get().await.map_err(|e| DbError::Unavailable(e.to_string()))
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }

    pub fn status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus { max_size: s.max_size, size: s.size, available: s.available, waiting: s.waiting }
    }

    /// Opens a transaction for one tenant, running as the restricted role under RLS.
    pub async fn begin(&self, organization_id: Uuid) -> Result<Tx, DbError> {
        self.begin_with("BEGIN", Some(organization_id)).await
    }

    /// What every service operation starts with: refuses (403) a caller whose role lacks
    /// `access`, then opens the caller's tenant transaction.
    pub async fn begin_as(&self, ctx: &RequestCtx, access: Access) -> Result<Tx, Problem> {
        ctx.require(access)?;
        Ok(self.begin(ctx.organization_id).await?)
    }

    /// `BEGIN`, the role and the tenant in one round trip. The tenant is a `Uuid`, whose text form
    /// cannot carry SQL, so inlining it is safe.
    async fn begin_with(&self, begin: &str, organization_id: Option<Uuid>) -> Result<Tx, DbError> {
        let tenant = organization_id.map(|o| format!(", set_config('custos.org_id', '{o}', true)")).unwrap_or_default();
        let sql = format!("{begin}; SELECT set_config('role', '{APP_ROLE}', true){tenant}");
        // Nothing has happened yet, so a connection that fails here is discarded (not returned to
        // the pool) and the next one tried. After a database restart every idle connection is
        // dead, so up to the pool's size may fail before one is freshly opened.
        let mut attempts = self.pool.status().max_size + 1;
        loop {
            let mut conn = self.conn().await?;
            match AnsiTransactionManager::begin_transaction_sql(&mut *conn, &sql).await {
                Ok(()) => return Ok(Tx { conn: Some(conn) }),
                Err(e) => {
                    drop(Object::take(conn));
                    attempts -= 1;
                    if attempts == 0 {
                        return Err(e.into());
                    }
                }
            }
        }
    }

    /// A read-only transaction on one consistent snapshot (long reads such as verification).
    pub async fn begin_snapshot(&self, organization_id: Uuid) -> Result<Tx, DbError> {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", Some(organization_id)).await
    }

    /// A second read-only transaction on exactly `tx`'s snapshot (PostgreSQL's
    /// `pg_export_snapshot`), for the same tenant: a long read split over two connections, so
    /// that the database works on both halves at once, still sees one consistent state. `tx` must
    /// be a snapshot transaction ([`Db::begin_snapshot`]) and stay open until this one is opened.
    /// `None` when no connection is free or can be opened now: the caller already holds one, and
    /// waiting for a second could starve the requests it would be taken from.
    pub async fn begin_snapshot_beside(&self, tx: &mut Tx, organization_id: Uuid) -> Result<Option<Tx>, DbError> {
        let pool = self.pool.status();
        if pool.available == 0 && pool.size >= pool.max_size {
            return Ok(None);
        }
        let id: String = diesel::select(diesel::dsl::sql::<Text>("pg_export_snapshot()")).get_result(tx.conn()).await?;
        // Inlined below (SET TRANSACTION takes no parameters): only the server's own id form.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(DbError::Unavailable(format!("unexpected snapshot id {id:?}")));
        }
        self.begin_with(
            &format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"),
            Some(organization_id),
        )
        .await
        .map(Some)
    }

    /// Opens a transaction for work before a tenant is known (authentication): still under the
    /// restricted role, where RLS shows no tenant rows at all.
    pub async fn begin_untenanted(&self) -> Result<Tx, DbError> {
        self.begin_with("BEGIN", None).await
    }

    /// Opens a transaction in the *system scope*, still under the restricted role: it sees the
    /// jobs, their steps and schedules of every organisation, and which organisations exist, but
    /// no tenant's data (migration 000022). For the job runners and the scheduler only; work
    /// for one organisation switches to its tenant ([`Tx::set_tenant`]) or opens its own.
    pub async fn begin_system(&self) -> Result<Tx, DbError> {
        self.begin_with("BEGIN; SELECT set_config('custos.scope', 'system', true)", None).await
    }

    /// Resolves an organisation slug to its id, before any tenant is set.
    pub async fn organization_by_slug(&self, slug: &str) -> Result<Option<(Uuid, String)>, DbError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
            #[diesel(sql_type = Text)]
            name: String,
        }
        let mut tx = self.begin_untenanted().await?;
        let row: Option<Row> = diesel::sql_query("SELECT id, name FROM custos_organization_by_slug($1)")
            .bind::<Text, _>(slug)
            .get_result(tx.conn())
            .await
            .optional()?;
        tx.commit().await?;
        Ok(row.map(|r| (r.id, r.name)))
    }
}

/// An open transaction. Commit it explicitly; dropping it rolls back (the connection is then
/// discarded by the pool rather than reused mid-transaction).
pub struct Tx {
    conn: Option<Object<AsyncPgConnection>>,
}

impl Tx {
    /// Waits for, then holds until this transaction ends, the lock named `key`: serialises
    /// transactions over something no single row stands for.
    pub async fn lock_named(&mut self, key: &str) -> Result<(), DbError> {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<diesel::sql_types::Text, _>(key)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Makes the rest of this transaction act for `organization_id` (row-level security then
    /// shows that tenant's rows): how a system-scope transaction records a change in an
    /// organisation's audit trail beside its own bookkeeping.
    pub async fn set_tenant(&mut self, organization_id: Uuid) -> Result<(), DbError> {
        diesel::sql_query(format!("SELECT set_config('custos.org_id', '{organization_id}', true)"))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        self.conn.as_deref_mut().expect("transaction used after commit")
    }

    pub async fn commit(mut self) -> Result<(), DbError> {
        let mut conn = self.conn.take().expect("transaction committed twice");
        AnsiTransactionManager::commit_transaction(&mut *conn).await?;
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            // Roll back off the caller's path so the connection returns to the pool clean; if the
            // rollback fails the pool discards the connection as broken.
            handle.spawn(async move {
                let _ = AnsiTransactionManager::rollback_transaction(&mut *conn).await;
            });
        }
    }
}

/// Runs every pending embedded migration against `url` as the user the URL names.
pub async fn migrate(url: &str) -> Result<Vec<String>, DbError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
        let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        let applied: Vec<String> = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| DbError::Migration(e.to_string()))?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        if !applied.is_empty() {
            // A migration that moves rows (the audit contents into runs, say) leaves the planner's
            // statistics describing the old tables until autovacuum's next round, and plans built
            // on them can read a whole table per page. Tables this user does not own are skipped.
            diesel::RunQueryDsl::execute(diesel::sql_query("ANALYZE"), &mut conn)
                .map_err(|e| DbError::Migration(e.to_string()))?;
        }
        Ok(applied)
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?
}

/// Reverts the latest applied embedded migration against `url` (rolling a release back; the
/// migrations' own tests); returns its name.
pub async fn revert_last_migration(url: &str) -> Result<String, DbError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
        let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        let reverted = conn.revert_last_migration(MIGRATIONS).map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(reverted.to_string())
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?
}

/// A fingerprint of the embedded migrations' files, names and contents (tests key their template
/// database on it, so an added or edited migration gets a freshly migrated template).
pub fn migrations_fingerprint() -> &'static str {
    env!("CUSTOS_MIGRATIONS_FINGERPRINT")
}

/// Establishes one plain connection (tools and tests; the service uses the pool).
pub async fn connect_once(url: &str) -> Result<AsyncPgConnection, DbError> {
    AsyncPgConnection::establish(url).await.map_err(|e| DbError::Unavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error};

    use super::*;

    struct Said(&'static str);

    impl DatabaseErrorInformation for Said {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn problem(kind: DatabaseErrorKind, message: &'static str) -> Problem {
        DbError::Query(Error::DatabaseError(kind, Box::new(Said(message)))).into()
    }

    #[test]
    fn a_reference_deleted_meanwhile_is_a_422_and_deleting_what_is_referenced_a_409() {
        let gone = problem(
            DatabaseErrorKind::ForeignKeyViolation,
            "insert or update on table \"requirements\" violates foreign key constraint \"requirements_framework_fk\"",
        );
        assert_eq!((gone.kind, gone.error.as_str()), (ErrorKind::Unprocessable, "Referenced resource gone"));
        let referenced = problem(
            DatabaseErrorKind::ForeignKeyViolation,
            "update or delete on table \"incidents\" violates foreign key constraint on table \"vulnerabilities\"",
        );
        assert_eq!(referenced.kind, ErrorKind::Conflict);
        let nul = problem(DatabaseErrorKind::Unknown, "invalid byte sequence for encoding \"UTF8\": 0x00");
        assert_eq!((nul.kind, nul.error.as_str()), (ErrorKind::InvalidArgument, "Invalid text"));
        assert_eq!(problem(DatabaseErrorKind::Unknown, "something else").kind, ErrorKind::Internal);
    }

    #[test]
    fn a_deadlock_or_serialization_failure_is_an_aborted_request_to_send_again() {
        let deadlock = problem(DatabaseErrorKind::Unknown, "deadlock detected");
        assert_eq!((deadlock.kind, deadlock.error.as_str()), (ErrorKind::Aborted, "Concurrent change"));
        let serialization = problem(DatabaseErrorKind::SerializationFailure, "could not serialize access");
        assert_eq!(serialization.kind, ErrorKind::Aborted);
    }
}
