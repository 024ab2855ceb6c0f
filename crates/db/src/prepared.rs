//! Statements prepared once per connection, whatever diesel thinks of their shape.
//!
//! diesel prepares some statements anew on every use: raw `sql_query` text and single-row
//! `INSERT`s (their SQL may vary with which values are defaults). With diesel-async each such use
//! costs a `Parse` and a round trip more, on the paths every mutation takes. [`prepared`] caches
//! them keyed by their SQL text and bind types — never by type, so a statement whose text varies
//! is prepared once per variant, never confused with another. Use it only for statements with a
//! bounded number of variants (no `IN` lists, no multi-row inserts of varying length).

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// `query`, cached by its SQL text once prepared on a connection.
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the cache key is the SQL text, which is what makes overriding the safety check
/// above sound.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}
