//! Lists, one way for every resource: page numbers the seed's way — `page` (default 1) and
//! `page_size` (default 20, at most 100; larger values are capped, not refused) — and, beside
//! them, keyset cursors for walking deep.
//!
//! A list is asked for with a [`ListRequest`] and answers a [`Page`], which every generated list
//! response is made from ([`page_responses!`], the one mapping of its fields). What a page says:
//!
//! - `count`: how many rows match, exact up to [`EXACT_COUNT_LIMIT`]; beyond, it may be the
//!   database's estimate, and then `count_is_estimate` says so (no one pages through a million
//!   rows; summaries, which are compliance figures, are always exact). The counting itself is
//!   `custos_db::list`'s;
//! - `next_page`/`previous_page`: the neighbouring page numbers; a page past the last one is a
//!   404, as in Django REST framework, and page 1 of an empty result is an empty page;
//! - `next_cursor`, on lists that take one: where the next rows start, opaque. A request with
//!   `cursor` (empty to start) walks by cursor: the rows after that position, whatever was
//!   inserted or deleted before it, each row once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{ErrorKind, Problem};

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// Up to this many matches a list's `count` is exact; beyond, it may be an estimate.
pub const EXACT_COUNT_LIMIT: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub page_size: u32,
}

impl PageRequest {
    /// Validates the raw parameters: 0 is refused (400); sizes above the maximum are capped.
    pub fn new(page: Option<u32>, page_size: Option<u32>) -> Result<Self, Problem> {
        let page = page.unwrap_or(1);
        if page == 0 {
            return Err(Problem::invalid_field("page", "page numbers start at 1"));
        }
        let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 {
            return Err(Problem::invalid_field("page_size", "page_size must be at least 1"));
        }
        Ok(PageRequest { page, page_size: page_size.min(MAX_PAGE_SIZE) })
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.page_size)
    }

    pub fn limit(&self) -> i64 {
        i64::from(self.page_size)
    }

    /// The last page of a result of `count` rows (1 for an empty one).
    pub fn last(&self, count: i64) -> i64 {
        let size = i64::from(self.page_size);
        ((count + size - 1) / size).max(1)
    }

    /// Neighbouring pages for a result of `count` rows. A page past the last one is a 404, as in
    /// Django REST framework; page 1 of an empty result is an empty page.
    pub fn info(&self, count: i64) -> Result<PageInfo, Problem> {
        let last = self.last(count);
        if i64::from(self.page) > last {
            return Err(self.past_the_end(last));
        }
        Ok(PageInfo {
            count,
            next_page: (i64::from(self.page) < last).then_some(self.page + 1),
            previous_page: (self.page > 1).then(|| self.page - 1),
        })
    }

    fn past_the_end(&self, last: i64) -> Problem {
        Problem::new(ErrorKind::NotFound, "Invalid page", format!("Page {} is past the last page ({last})", self.page))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    pub count: i64,
    pub next_page: Option<u32>,
    pub previous_page: Option<u32>,
}

/// How many rows match a list's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub value: i64,
    /// The database's estimate (only ever above [`EXACT_COUNT_LIMIT`]).
    pub estimate: bool,
}

impl Count {
    pub fn exact(value: i64) -> Self {
        Count { value, estimate: false }
    }
}

/// One page of a list, however it was walked: what every list response is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub count: i64,
    pub count_is_estimate: bool,
    pub next_page: Option<u32>,
    pub previous_page: Option<u32>,
    pub next_cursor: Option<String>,
    pub results: Vec<T>,
}

impl<T> Page<T> {
    /// The same page with these rows instead (its rows as the API shows them, say, computed
    /// for all of them at once).
    pub fn with_results<U>(self, results: Vec<U>) -> Page<U> {
        Page {
            count: self.count,
            count_is_estimate: self.count_is_estimate,
            next_page: self.next_page,
            previous_page: self.previous_page,
            next_cursor: self.next_cursor,
            results,
        }
    }

    /// Every row as one page: a list bounded by what it lists (a requirement's mappings, an
    /// organisation's schedules), not paged.
    pub fn whole(results: Vec<T>) -> Page<T> {
        Page {
            count: results.len() as i64,
            count_is_estimate: false,
            next_page: None,
            previous_page: None,
            next_cursor: None,
            results,
        }
    }

    /// The same page with each row shown another way (a row as the API shows it, say).
    pub fn map<U>(mut self, f: impl FnMut(T) -> U) -> Page<U> {
        let results = std::mem::take(&mut self.results).into_iter().map(f).collect();
        self.with_results(results)
    }
}

/// A list request: page `page` of `page_size` rows, or — when a `cursor` is given — the
/// `page_size` rows after the cursor's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub page: PageRequest,
    /// `None`: by page number; `Some("")`: the start of a cursor walk; else the cursor.
    cursor: Option<String>,
}

impl ListRequest {
    /// `page` and `page_size` as [`PageRequest::new`] takes them; `cursor` for lists that take
    /// one (`None` elsewhere). A cursor walk has no page numbers: a cursor with a page other than
    /// 1 is a 400.
    pub fn new(page: Option<u32>, page_size: Option<u32>, cursor: Option<&str>) -> Result<Self, Problem> {
        let page = PageRequest::new(page, page_size)?;
        let cursor = cursor.map(|c| c.trim().to_owned());
        if cursor.is_some() && page.page > 1 {
            return Err(Problem::invalid_field(
                "cursor",
                "a cursor walk has no page numbers: give cursor or page, not both",
            ));
        }
        Ok(ListRequest { page, cursor })
    }

    /// A list walked by page number only.
    pub fn pages(page: Option<u32>, page_size: Option<u32>) -> Result<Self, Problem> {
        Self::new(page, page_size, None)
    }

    pub fn is_cursor_walk(&self) -> bool {
        self.cursor.is_some()
    }

    /// The position a cursor walk continues after (`None` on page-number walks and at the start
    /// of a cursor walk). A cursor this server did not issue for the list `kind` is a 400.
    pub fn after<K: CursorKey>(&self, kind: &str) -> Result<Option<K>, Problem> {
        match self.cursor.as_deref() {
            None | Some("") => Ok(None),
            Some(raw) => decode_cursor(kind, raw).map(Some),
        }
    }

    /// Rows to skip: none on a cursor walk, whose position is in its filter.
    pub fn offset(&self) -> i64 {
        if self.is_cursor_walk() { 0 } else { self.page.offset() }
    }

    /// Rows to fetch: one more than a page holds, which tells whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.page.limit() + 1
    }

    /// The count, when the fetched rows (at most [`ListRequest::fetch`]) tell it: they end the
    /// list, so the count is the rows before them and they. Otherwise it has to be counted.
    pub fn count_from_rows(&self, fetched: usize) -> Option<i64> {
        let fetched = fetched as i64;
        if fetched > self.page.limit() {
            return None;
        }
        match self.cursor.as_deref() {
            // An empty page past the first: the count says which page was the last.
            None if fetched == 0 && self.page.page > 1 => None,
            None => Some(self.page.offset() + fetched),
            Some("") => Some(fetched),
            // After a position: the rows before it are not known.
            Some(_) => None,
        }
    }

    /// The page of `rows` (as fetched: at most [`ListRequest::fetch`]), given the count and how
    /// a row's cursor is written (`None` on lists without cursors). An empty page past the first
    /// is a 404.
    pub fn page_of<T>(
        &self,
        mut rows: Vec<T>,
        count: Count,
        cursor_of: impl Fn(&T) -> Option<String>,
    ) -> Result<Page<T>, Problem> {
        let size = self.page.page_size as usize;
        let more = rows.len() > size;
        rows.truncate(size);
        let cursor_walk = self.is_cursor_walk();
        if !cursor_walk && rows.is_empty() && self.page.page > 1 {
            return Err(self.page.past_the_end(self.page.last(count.value)));
        }
        // An estimate is never below what was seen.
        let seen = self.offset() + rows.len() as i64 + i64::from(more);
        let value = if count.estimate { count.value.max(seen) } else { count.value };
        Ok(Page {
            count: value,
            count_is_estimate: count.estimate,
            next_page: (!cursor_walk && more).then_some(self.page.page + 1),
            previous_page: (!cursor_walk && self.page.page > 1).then(|| self.page.page - 1),
            next_cursor: if more { rows.last().and_then(cursor_of) } else { None },
            results: rows,
        })
    }
}

/// The order key of a list's rows, written into its cursors. Values are written in full
/// (timestamps to the microsecond PostgreSQL holds), so a walk resumes exactly after its row.
pub trait CursorKey: Sized {
    fn write(&self) -> String;
    fn read(raw: &str) -> Option<Self>;
}

/// `(timestamp, id)`: lists ordered by a time column, ties broken by id.
impl CursorKey for (OffsetDateTime, Uuid) {
    fn write(&self) -> String {
        format!("{}.{}", self.0.unix_timestamp_nanos() / 1000, self.1)
    }

    fn read(raw: &str) -> Option<Self> {
        let (micros, id) = raw.split_once('.')?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(micros.parse::<i128>().ok()?.checked_mul(1000)?).ok()?;
        // Only times PostgreSQL holds, as the cursors this server issues are.
        (1..=9999).contains(&at.year()).then_some(())?;
        Some((at, Uuid::parse_str(id).ok()?))
    }
}

/// `(text, id)`: lists ordered by a name, ties broken by id.
impl CursorKey for (String, Uuid) {
    fn write(&self) -> String {
        format!("{}.{}", self.1, self.0)
    }

    fn read(raw: &str) -> Option<Self> {
        let (id, text) = raw.split_once('.')?;
        Some((text.to_owned(), Uuid::parse_str(id).ok()?))
    }
}

/// `id`: lists ordered by an id alone (a run's items, by record).
impl CursorKey for Uuid {
    fn write(&self) -> String {
        self.to_string()
    }

    fn read(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw).ok()
    }
}

/// `number`: lists ordered by a sequence number (a policy document's versions).
impl CursorKey for i32 {
    fn write(&self) -> String {
        self.to_string()
    }

    fn read(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

/// The cursor of position `key` in the list `kind`: opaque to clients (URL-safe base64 of
/// `kind:key`), tied to its list.
pub fn cursor(kind: &str, key: &impl CursorKey) -> String {
    B64URL.encode(format!("{kind}:{}", key.write()))
}

fn decode_cursor<K: CursorKey>(kind: &str, raw: &str) -> Result<K, Problem> {
    B64URL
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| K::read(s.strip_prefix(kind)?.strip_prefix(':')?))
        .ok_or_else(|| Problem::invalid_field("cursor", format!("not a cursor this server issued for {kind}")))
}

/// Declares how a [`Page`] becomes each generated list response of a crate, written once per
/// response: `page_responses! { pb::ListThingsResponse { pb::Thing } + next_cursor; … }`
/// (`+ next_cursor` for a response that carries one). It defines a crate-local trait `FromPage`, so that
/// `pb::ListThingsResponse::from_page(page)` answers a list.
#[macro_export]
macro_rules! page_responses {
    ($($response:path { $item:ty } $(+ $next_cursor:ident)?;)+) => {
        /// A list response made from a [`custos_core::page::Page`] (see `custos_core::page_responses!`).
        pub(crate) trait FromPage<T>: Sized {
            fn from_page(page: $crate::page::Page<T>) -> Self;
        }
        $(
            impl FromPage<$item> for $response {
                fn from_page(page: $crate::page::Page<$item>) -> Self {
                    $response {
                        count: page.count,
                        count_is_estimate: page.count_is_estimate,
                        next_page: page.next_page,
                        previous_page: page.previous_page,
                        $($next_cursor: page.next_cursor,)?
                        results: page.results,
                    }
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_caps_and_refusals() {
        assert_eq!(PageRequest::new(None, None).unwrap(), PageRequest { page: 1, page_size: 20 });
        assert_eq!(PageRequest::new(Some(2), Some(500)).unwrap().page_size, 100);
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(None, Some(0)).is_err());
    }

    #[test]
    fn neighbours_and_edges() {
        let p = PageRequest::new(Some(2), Some(10)).unwrap();
        assert_eq!(p.offset(), 10);
        let info = p.info(25).unwrap();
        assert_eq!((info.previous_page, info.next_page), (Some(1), Some(3)));
        let last = PageRequest::new(Some(3), Some(10)).unwrap().info(30).unwrap();
        assert_eq!((last.previous_page, last.next_page), (Some(2), None));
        assert_eq!(PageRequest::new(Some(4), Some(10)).unwrap().info(30).unwrap_err().kind, ErrorKind::NotFound);
        let empty = PageRequest::new(None, None).unwrap().info(0).unwrap();
        assert_eq!((empty.previous_page, empty.next_page), (None, None));
    }

    fn rows(n: usize) -> Vec<u32> {
        (0..n as u32).collect()
    }

    #[test]
    fn pages_from_fetched_rows() {
        let no_cursor = |_: &u32| None;
        // Page 2 of 10, with more behind it: the count is not known from the rows.
        let list = ListRequest::pages(Some(2), Some(10)).unwrap();
        assert_eq!((list.offset(), list.fetch()), (10, 11));
        assert_eq!(list.count_from_rows(11), None);
        let page = list.page_of(rows(11), Count::exact(25), no_cursor).unwrap();
        assert_eq!((page.results.len(), page.previous_page, page.next_page), (10, Some(1), Some(3)));
        // The last, partial page tells the count itself.
        let last = ListRequest::pages(Some(3), Some(10)).unwrap();
        assert_eq!(last.count_from_rows(5), Some(25));
        let page = last.page_of(rows(5), Count::exact(25), no_cursor).unwrap();
        assert_eq!((page.count, page.next_page, page.previous_page), (25, None, Some(2)));
        // Past the end: a 404 naming the last page, which needs the count.
        let past = ListRequest::pages(Some(4), Some(10)).unwrap();
        assert_eq!(past.count_from_rows(0), None);
        let err = past.page_of(Vec::<u32>::new(), Count::exact(30), no_cursor).unwrap_err();
        assert_eq!((err.kind, err.details.as_str()), (ErrorKind::NotFound, Some("Page 4 is past the last page (3)")));
        // Page 1 of nothing is an empty page.
        let first = ListRequest::pages(None, None).unwrap();
        assert_eq!(first.count_from_rows(0), Some(0));
        let empty = first.page_of(Vec::<u32>::new(), Count::exact(0), no_cursor).unwrap();
        assert_eq!((empty.count, empty.next_page, empty.previous_page), (0, None, None));
        // An estimate is flagged, and never below what was seen.
        let estimated = ListRequest::pages(Some(2), Some(10))
            .unwrap()
            .page_of(rows(11), Count { value: 15, estimate: true }, no_cursor)
            .unwrap();
        assert_eq!((estimated.count, estimated.count_is_estimate), (21, true));
    }

    #[test]
    fn cursor_walks() {
        let key = |n: &u32| {
            Some(cursor(
                "things",
                &(OffsetDateTime::UNIX_EPOCH + time::Duration::microseconds(i64::from(*n)), Uuid::nil()),
            ))
        };
        let start = ListRequest::new(None, Some(10), Some("")).unwrap();
        assert!(start.is_cursor_walk());
        assert_eq!(start.after::<(OffsetDateTime, Uuid)>("things").unwrap(), None);
        assert_eq!(start.count_from_rows(4), Some(4));
        let page = start.page_of(rows(11), Count::exact(30), key).unwrap();
        assert_eq!((page.next_page, page.previous_page), (None, None));
        let next = page.next_cursor.expect("more rows follow");
        let after = ListRequest::new(Some(1), Some(10), Some(&next)).unwrap();
        assert_eq!(after.offset(), 0);
        assert_eq!(after.count_from_rows(3), None, "the rows before the position are not known");
        let (at, id) = after.after::<(OffsetDateTime, Uuid)>("things").unwrap().unwrap();
        assert_eq!(((at - OffsetDateTime::UNIX_EPOCH).whole_microseconds(), id), (9, Uuid::nil()));
        // The end of the walk: an empty page, not a 404.
        assert!(after.page_of(Vec::<u32>::new(), Count::exact(30), key).unwrap().next_cursor.is_none());
        // Refused: another list's cursor, garbage, a cursor with a page number.
        assert_eq!(after.after::<(OffsetDateTime, Uuid)>("others").unwrap_err().error, "Invalid value for 'cursor'");
        for bad in ["%%%", "bm9wZQ", &B64URL.encode("things:12.nope"), &B64URL.encode("things:99999999999999999999.0")]
        {
            let list = ListRequest::new(None, None, Some(bad)).unwrap();
            assert!(list.after::<(OffsetDateTime, Uuid)>("things").is_err(), "{bad}");
        }
        assert!(ListRequest::new(Some(2), None, Some("")).is_err());
    }

    #[test]
    fn name_keys_round_trip() {
        let key = ("Zürich. Anything, even dots.".to_owned(), Uuid::now_v7());
        let list = ListRequest::new(None, None, Some(&cursor("names", &key))).unwrap();
        assert_eq!(list.after::<(String, Uuid)>("names").unwrap(), Some(key));
    }

    mod pb {
        #[derive(Debug, PartialEq)]
        pub struct ListThingsResponse {
            pub count: i64,
            pub count_is_estimate: bool,
            pub next_page: Option<u32>,
            pub previous_page: Option<u32>,
            pub next_cursor: Option<String>,
            pub results: Vec<u8>,
        }
        #[derive(Debug, PartialEq)]
        pub struct ListOthersResponse {
            pub count: i64,
            pub count_is_estimate: bool,
            pub next_page: Option<u32>,
            pub previous_page: Option<u32>,
            pub results: Vec<u16>,
        }
    }

    crate::page_responses! {
        pb::ListThingsResponse { u8 } + next_cursor;
        pb::ListOthersResponse { u16 };
    }

    #[test]
    fn responses_from_pages() {
        let page = Page {
            count: 3,
            count_is_estimate: false,
            next_page: Some(2),
            previous_page: None,
            next_cursor: Some("c".into()),
            results: vec![1u8],
        };
        let things = pb::ListThingsResponse::from_page(page.clone());
        assert_eq!((things.count, things.next_cursor.as_deref(), things.results), (3, Some("c"), vec![1]));
        let others = pb::ListOthersResponse::from_page(page.map(u16::from));
        assert_eq!((others.next_page, others.results), (Some(2), vec![1]));
    }
}
