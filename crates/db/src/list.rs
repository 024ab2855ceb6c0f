//! Lists at scale: the counting, the keyset position and the plans every list uses. Each domain
//! still writes its own filters, order and columns; this is what they all need beside.
//!
//! A list method reads like this (`custos_core::page` has the request and the page):
//!
//! ```ignore
//! let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
//! let mut q = filters.apply(org).order((t::created_at.asc(), t::id.asc()))
//!     .offset(list.offset()).limit(list.fetch()).select(Row::as_select());
//! if let Some(key) = list.after(CURSOR)? { q = q.filter(list::after((t::created_at, t::id), key)); }
//! let rows: Vec<Row> = list::one_shot(q).load(tx.conn()).await?;
//! let page = list::page(&mut tx, &list, rows, |r| Some(cursor(CURSOR, &(r.created_at, r.id))),
//!     || filters.apply(org).select(list::row())).await?;
//! ```
//!
//! **Counting** (measured with 1,000,000 requirements in one organisation, see ARCHITECTURE.md):
//! `COUNT(*) OVER ()` in the page query materialises every match before the limit (~500 ms
//! unfiltered); a separate `count(*)` reads every match too (55–120 ms by an index-only scan,
//! 140 ms for a filter without one). So a list counts at most [`EXACT_COUNT_LIMIT`]` + 1` matches
//! (`SELECT count(*) FROM (… LIMIT 10001)`, ~1 ms by an index) and, past that, answers the
//! planner's estimate of the filtered query (`EXPLAIN (FORMAT JSON)`, its top "Plan Rows",
//! ~0.3 ms) with `count_is_estimate`. And when the page's rows end the list, they tell the count
//! themselves: no count is taken at all.
//!
//! **Plans.** List queries are planned for their values each time ([`one_shot`]): a prepared
//! statement's generic plan cannot know that a `search` pattern is rare or a filter value
//! selective, and would walk the whole order index where a bitmap of a few rows would do.

use custos_core::Problem;
use custos_core::page::{Count, EXACT_COUNT_LIMIT, ListRequest, Page};
use diesel::QueryResult;
use diesel::expression::{
    AppearsOnTable, AsExpression, Expression, MixedAggregates, TypedExpressionType, ValidGrouping,
};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Integer, Json, SqlType};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::{DbError, Tx};

/// What a count query selects: a constant, so an index that holds the filtered columns answers
/// it alone (an index-only scan).
pub fn row() -> diesel::expression::SqlLiteral<Integer> {
    diesel::dsl::sql::<Integer>("1")
}

/// The page of `rows` (fetched with [`ListRequest::offset`], [`ListRequest::fetch`] and, on a
/// cursor walk, [`after`]/[`before`]), counting the matches of `matching` (the list's filters
/// selecting [`row()`]) only when the rows do not tell. A page past the end is a 404.
pub async fn page<T, Q>(
    tx: &mut Tx,
    list: &ListRequest,
    rows: Vec<T>,
    cursor_of: impl Fn(&T) -> Option<String>,
    matching: impl Fn() -> Q,
) -> Result<Page<T>, Problem>
where
    Q: QueryFragment<Pg> + Send,
{
    let count = match list.count_from_rows(rows.len()) {
        Some(n) => Count::exact(n),
        None => count(tx.conn(), matching).await?,
    };
    list.page_of(rows, count, cursor_of)
}

/// How many rows `matching` selects: exact up to [`EXACT_COUNT_LIMIT`], else the planner's
/// estimate (never below the limit it is known to pass).
pub async fn count<Q>(conn: &mut AsyncPgConnection, matching: impl Fn() -> Q) -> Result<Count, DbError>
where
    Q: QueryFragment<Pg> + Send,
{
    let counted: i64 = CappedCount(matching()).get_result(conn).await?;
    if counted <= EXACT_COUNT_LIMIT {
        return Ok(Count::exact(counted));
    }
    let plan: serde_json::Value = Explain(matching()).get_result(conn).await?;
    let estimate = plan.pointer("/0/Plan/Plan Rows").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    Ok(Count { value: (estimate as i64).max(EXACT_COUNT_LIMIT + 1), estimate: true })
}

/// `query`, planned for its bind values every time it runs (an unnamed statement, never a
/// cached one that PostgreSQL may come to plan generically).
pub fn one_shot<Q>(query: Q) -> OneShot<Q> {
    OneShot(query)
}

#[derive(Debug, Clone, Copy)]
pub struct OneShot<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for OneShot<Q> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.unsafe_to_cache_prepared();
        self.0.walk_ast(pass)
    }
}

impl<Q> QueryId for OneShot<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for OneShot<Q> {
    type SqlType = Q::SqlType;
}

/// `SELECT count(*) FROM (<matching> LIMIT 10001)`: stops at the first match past the limit.
struct CappedCount<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for CappedCount<Q> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.unsafe_to_cache_prepared();
        pass.push_sql("SELECT count(*) FROM (");
        self.0.walk_ast(pass.reborrow())?;
        pass.push_sql(" LIMIT ");
        pass.push_sql(&(EXACT_COUNT_LIMIT + 1).to_string());
        pass.push_sql(") AS matching");
        Ok(())
    }
}

impl<Q> QueryId for CappedCount<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for CappedCount<Q> {
    type SqlType = BigInt;
}

/// `EXPLAIN (FORMAT JSON) <matching>`: the plan, whose top node estimates the matches.
struct Explain<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.unsafe_to_cache_prepared();
        pass.push_sql("EXPLAIN (FORMAT JSON) ");
        self.0.walk_ast(pass.reborrow())
    }
}

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for Explain<Q> {
    type SqlType = Json;
}

/// The rows after `key` in a list ordered by `columns` ascending: `(a, b) > (x, y)`, which a
/// b-tree index on `(organization_id, a, b)` answers as one range.
pub fn after<A, B, X, Y>(columns: (A, B), key: (X, Y)) -> RowCompare<(A, B), (X::Expression, Y::Expression)>
where
    A: Expression<SqlType: SqlType + TypedExpressionType>,
    B: Expression<SqlType: SqlType + TypedExpressionType>,
    X: AsExpression<A::SqlType>,
    Y: AsExpression<B::SqlType>,
{
    RowCompare { columns, key: (key.0.as_expression(), key.1.as_expression()), op: " > " }
}

/// The rows after `key` in a list ordered by `columns` descending: `(a, b) < (x, y)`.
pub fn before<A, B, X, Y>(columns: (A, B), key: (X, Y)) -> RowCompare<(A, B), (X::Expression, Y::Expression)>
where
    A: Expression<SqlType: SqlType + TypedExpressionType>,
    B: Expression<SqlType: SqlType + TypedExpressionType>,
    X: AsExpression<A::SqlType>,
    Y: AsExpression<B::SqlType>,
{
    RowCompare { columns, key: (key.0.as_expression(), key.1.as_expression()), op: " < " }
}

/// A row comparison, `(columns) op (key)`.
#[derive(Debug, Clone, Copy)]
pub struct RowCompare<L, R> {
    columns: L,
    key: R,
    op: &'static str,
}

impl<L, R, GB> ValidGrouping<GB> for RowCompare<L, R>
where
    L: ValidGrouping<GB>,
    R: ValidGrouping<GB>,
    L::IsAggregate: MixedAggregates<R::IsAggregate>,
{
    type IsAggregate = <L::IsAggregate as MixedAggregates<R::IsAggregate>>::Output;
}

impl<L, R> Expression for RowCompare<L, R> {
    type SqlType = Bool;
}

impl<L, R, QS> AppearsOnTable<QS> for RowCompare<L, R>
where
    L: AppearsOnTable<QS>,
    R: AppearsOnTable<QS>,
{
}

impl<L: QueryFragment<Pg>, R: QueryFragment<Pg>> QueryFragment<Pg> for RowCompare<L, R> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.push_sql("(");
        self.columns.walk_ast(pass.reborrow())?;
        pass.push_sql(")");
        pass.push_sql(self.op);
        pass.push_sql("(");
        self.key.walk_ast(pass.reborrow())?;
        pass.push_sql(")");
        Ok(())
    }
}

/// Distinct operators render distinct SQL: no static id.
impl<L, R> QueryId for RowCompare<L, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}
