//! Paging of the lists that grow with a tenant (companies, predictions): a
//! page costs what its rows cost, however many rows come before it or match.
//!
//! - A page starts at a page number (within the first [`MAX_OFFSET_ROWS`]
//!   rows) or after a keyset [`Cursor`]: the sort key and id of the last row
//!   a client has, so rows inserted between two pages neither repeat nor skip
//!   a row the client has not seen.
//! - A list walks each visible scope's rows in sort order through an index
//!   that begins with `scope_key` ([`Walk`]), then merges the scopes' first
//!   rows: a caller sees at most three scopes, so a page reads at most three
//!   times its size, never a whole scope. Its statements are shaped so that
//!   PostgreSQL keeps a generic plan for them ([`push_scopes`]).
//! - The total is counted up to [`EXACT_TOTAL_UP_TO`] rows; above, it says
//!   "at least" ([`Total`]), and a list known to be that large is not counted
//!   again for a few seconds ([`SATURATED`]).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::DomainError;

/// How far page numbers reach; past this many rows a client pages by cursor.
pub const MAX_OFFSET_ROWS: u32 = 10_000;
/// Totals are exact up to this many rows.
pub const EXACT_TOTAL_UP_TO: i64 = 10_000;
/// The longest cursor taken: a 255-character name in 4-byte characters, encoded.
const MAX_CURSOR_CHARS: usize = 2_048;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum PageStart {
    /// Page `n` of `limit` rows, from 1.
    Number(u32),
    /// The rows after a cursor, as text from a client.
    After(String),
}

impl Default for PageStart {
    fn default() -> Self {
        Self::Number(1)
    }
}

/// One page of a list, with what a client needs to page on.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Every matching row, or [`EXACT_TOTAL_UP_TO`] when `total_exact` is false.
    pub total: i64,
    pub total_exact: bool,
    /// The page number asked for; `None` for a page asked by cursor.
    pub page: Option<u32>,
    pub limit: u32,
    /// The start of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Pages of `limit` rows the total fills (a lower bound when not exact).
    pub fn pages(&self) -> u32 {
        u32::try_from((self.total.max(0) as u64).div_ceil(u64::from(self.limit.max(1))))
            .unwrap_or(u32::MAX)
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            total_exact: self.total_exact,
            page: self.page,
            limit: self.limit,
            next_cursor: self.next_cursor,
        }
    }
}

/// The two statements of a list page: its rows (one more than the page, to
/// tell whether another follows) and their count up to
/// [`EXACT_TOTAL_UP_TO`] + 1.
pub struct ListStatements {
    pub page: QueryBuilder<'static, Postgres>,
    pub count: QueryBuilder<'static, Postgres>,
    /// What the count depends on: the table, the visible scopes, the filters.
    count_key: String,
}

/// Counts that reached the cap, by [`ListStatements::count_key`], and until
/// when that is taken as still true. Counting the same 10,001 index entries
/// again for every page of a large list would be most of what its pages cost
/// (and with the newest rows not yet vacuumed, 10,001 heap reads); "at least
/// 10,000" stays true as rows come and go, unless most of the list is deleted
/// within these seconds. Counts under the cap are never remembered: they stay
/// exact.
static SATURATED: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);
const SATURATED_FOR: Duration = Duration::from_secs(10);
/// Bounds the memory of [`SATURATED`]: past this many lists, expired ones go,
/// and if none has expired, all.
const SATURATED_LISTS: usize = 10_000;

fn known_saturated(key: &str) -> bool {
    let saturated = SATURATED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    saturated
        .get(key)
        .is_some_and(|until| *until > Instant::now())
}

fn remember_saturated(key: String) {
    let mut saturated = SATURATED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    if saturated.len() >= SATURATED_LISTS {
        saturated.retain(|_, until| *until > now);
        if saturated.len() >= SATURATED_LISTS {
            saturated.clear();
        }
    }
    saturated.insert(key, now + SATURATED_FOR);
}

/// A counted total: exact, or at least [`EXACT_TOTAL_UP_TO`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub count: i64,
    pub exact: bool,
}

impl Total {
    /// From a count taken with `LIMIT EXACT_TOTAL_UP_TO + 1`.
    fn from_capped(count: i64) -> Self {
        Self {
            count: count.min(EXACT_TOTAL_UP_TO),
            exact: count <= EXACT_TOTAL_UP_TO,
        }
    }
}

/// The position after one row in one sort of one list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    sort: String,
    order: String,
    key: serde_json::Value,
    id: Uuid,
}

/// A row's value of the sort key, as bound to SQL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SortKey {
    Time(DateTime<Utc>),
    Text(String),
    /// Missing values sort as ±infinity (see the market cap indexes).
    Number(f64),
}

impl SortKey {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Time(time) => {
                serde_json::Value::String(time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            }
            Self::Text(text) => serde_json::Value::String(text.clone()),
            Self::Number(number) => serde_json::Number::from_f64(*number)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
        }
    }

    fn push_bind(self, sql: &mut QueryBuilder<'_, Postgres>) {
        match self {
            Self::Time(time) => sql.push_bind(time),
            Self::Text(text) => sql.push_bind(text),
            Self::Number(number) => sql.push_bind(number),
        };
    }
}

/// What a sort key's SQL values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Time,
    Text,
    /// A number whose missing values the walk sorts last, as +infinity when
    /// ascending and -infinity when descending.
    NumberMissingLast,
}

/// One list's walk of a table in one sort: through an index on
/// `(scope_key, key, id)` in the sort's direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walk<'a> {
    pub table: &'a str,
    /// The table's alias in `key` and in filters.
    pub alias: &'a str,
    /// The sort's name and the key's SQL, e.g. `created_at` and `p.created_at`.
    pub sort: &'a str,
    pub key: &'a str,
    pub key_kind: KeyKind,
    pub descending: bool,
}

/// Adds a list's filters to the `WHERE` clause of one scope's walk, each as
/// `AND …`; `scope.key` is the walked scope (for a subquery on companies).
pub(crate) type Filters<'f> = dyn Fn(&mut QueryBuilder<'_, Postgres>) + Send + Sync + 'f;

/// Where a walk starts, decoded.
enum Start {
    Offset(i64),
    After(SortKey, Uuid),
}

impl Walk<'_> {
    fn order(&self) -> &'static str {
        if self.descending { "desc" } else { "asc" }
    }

    fn direction(&self) -> &'static str {
        if self.descending { "DESC" } else { "ASC" }
    }

    /// The start of a page, refusing page numbers past [`MAX_OFFSET_ROWS`]
    /// and cursors of other sorts, or not made by [`Walk::cursor_after`].
    fn start(&self, start: &PageStart, limit: u32) -> Result<Start, DomainError> {
        match start {
            PageStart::Number(page) => {
                let offset = u64::from(page.max(&1) - 1) * u64::from(limit);
                if offset + u64::from(limit) > u64::from(MAX_OFFSET_ROWS) {
                    return Err(DomainError::InvalidParameter {
                        parameter: "page",
                        problem: format!(
                            "page numbers reach the first {MAX_OFFSET_ROWS} rows; page on with \
                             `cursor` (each page's `next_cursor`)"
                        ),
                    });
                }
                Ok(Start::Offset(offset as i64))
            }
            PageStart::After(text) => {
                let (key, id) =
                    self.decode(text)
                        .map_err(|problem| DomainError::InvalidParameter {
                            parameter: "cursor",
                            problem,
                        })?;
                Ok(Start::After(key, id))
            }
        }
    }

    fn decode(&self, text: &str) -> Result<(SortKey, Uuid), String> {
        const NOT_OURS: &str =
            "is not a cursor this list handed out (use a page's `next_cursor` as it is)";
        if text.len() > MAX_CURSOR_CHARS {
            return Err(NOT_OURS.into());
        }
        let cursor: Cursor = URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(NOT_OURS)?;
        if cursor.sort != self.sort || cursor.order != self.order() {
            return Err(format!(
                "was made for sort={} order={}; ask with the same sort and order, or start again \
                 without a cursor",
                cursor.sort, cursor.order
            ));
        }
        let key = match (self.key_kind, cursor.key) {
            (KeyKind::Time, serde_json::Value::String(text)) => DateTime::parse_from_rfc3339(&text)
                .map(|time| SortKey::Time(time.with_timezone(&Utc)))
                .map_err(|_| NOT_OURS.to_owned())?,
            (KeyKind::Text, serde_json::Value::String(text)) => SortKey::Text(text),
            (KeyKind::NumberMissingLast, serde_json::Value::Null) => {
                SortKey::Number(self.missing_number())
            }
            (KeyKind::NumberMissingLast, serde_json::Value::Number(number)) => {
                SortKey::Number(number.as_f64().ok_or(NOT_OURS)?)
            }
            _ => return Err(NOT_OURS.into()),
        };
        Ok((key, cursor.id))
    }

    fn missing_number(&self) -> f64 {
        if self.descending {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }
    }

    /// The cursor of the position after the row with this key and id.
    fn cursor_after(&self, key: SortKey, id: Uuid) -> String {
        let cursor = Cursor {
            sort: self.sort.to_owned(),
            order: self.order().to_owned(),
            key: key.to_json(),
            id,
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap_or_default())
    }

    /// The sort key of a row read by a page query (its `sort_key` column).
    fn key_of(&self, row: &PgRow) -> Result<SortKey, sqlx::Error> {
        Ok(match self.key_kind {
            KeyKind::Time => SortKey::Time(row.try_get("sort_key")?),
            KeyKind::Text => SortKey::Text(row.try_get("sort_key")?),
            KeyKind::NumberMissingLast => SortKey::Number(row.try_get("sort_key")?),
        })
    }

    /// The statements of the page at `start` of `limit` rows: the page's
    /// rows wrapped in `around` (SQL before and after them, e.g. to join the
    /// page's rows to other tables; their columns are every column of the
    /// table and the sort key as `sort_key`, in sort order), and the count.
    /// `prefix` goes before both (`EXPLAIN …` to see their plans).
    /// `filter_key` tells the filters' values apart (their `Debug` text).
    pub(crate) fn statements(
        &self,
        prefix: &str,
        scopes: &[String],
        (filters, filter_key): (&Filters<'_>, String),
        (start, limit): (&PageStart, u32),
        around: (&str, &str),
    ) -> Result<ListStatements, DomainError> {
        let mut page = QueryBuilder::new(format!("{prefix}{}", around.0));
        self.push_page(&mut page, scopes, filters, start, limit)?;
        page.push(around.1);
        let mut count = QueryBuilder::new(prefix);
        self.push_count(&mut count, scopes, filters);
        let count_key = format!("{}\u{1f}{scopes:?}\u{1f}{filter_key}", self.table);
        Ok(ListStatements {
            page,
            count,
            count_key,
        })
    }

    /// Reads a page with its [`statements`](Self::statements): its rows, its
    /// next cursor and its total (counted only when the page does not tell it).
    pub(crate) async fn read_page<T>(
        &self,
        pool: &PgPool,
        mut statements: ListStatements,
        (start, limit): (&PageStart, u32),
        from_row: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
    ) -> Result<Page<T>, DomainError> {
        let mut rows = statements.page.build().fetch_all(pool).await?;
        let limit_rows = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut next_cursor = None;
        if rows.len() > limit_rows {
            rows.truncate(limit_rows);
            if let Some(last) = rows.last() {
                next_cursor = Some(self.cursor_after(self.key_of(last)?, last.try_get("id")?));
            }
        }
        let total = if *start == PageStart::Number(1) && next_cursor.is_none() {
            Total::from_capped(rows.len() as i64)
        } else if known_saturated(&statements.count_key) {
            Total::from_capped(EXACT_TOTAL_UP_TO + 1)
        } else {
            let total = Total::from_capped(
                statements
                    .count
                    .build_query_scalar()
                    .fetch_one(pool)
                    .await?,
            );
            if !total.exact {
                remember_saturated(statements.count_key);
            }
            total
        };
        Ok(Page {
            items: rows.iter().map(from_row).collect::<Result<_, _>>()?,
            total: total.count,
            total_exact: total.exact,
            page: match start {
                PageStart::Number(page) => Some(*page),
                PageStart::After(_) => None,
            },
            limit,
            next_cursor,
        })
    }

    /// Pushes a query of up to `limit + 1` rows of the page at `start` (one
    /// more than the page tells whether another follows). Each visible scope
    /// is walked on its own and the walks merged, so the planner never sorts
    /// a scope's rows.
    fn push_page(
        &self,
        sql: &mut QueryBuilder<'_, Postgres>,
        scopes: &[String],
        filters: &Filters<'_>,
        start: &PageStart,
        limit: u32,
    ) -> Result<(), DomainError> {
        let start = self.start(start, limit)?;
        let Walk {
            table, alias, key, ..
        } = *self;
        let direction = self.direction();
        let offset = match start {
            Start::Offset(offset) => offset,
            Start::After(..) => 0,
        };
        sql.push("SELECT walked.* FROM ");
        push_scopes(sql, scopes);
        sql.push(format!(
            " CROSS JOIN LATERAL (SELECT {alias}.*, {key} AS sort_key \
             FROM {table} {alias} WHERE {alias}.scope_key = scope.key"
        ));
        filters(sql);
        if let Start::After(after_key, after_id) = start {
            let comparison = if self.descending { "<" } else { ">" };
            sql.push(format!(" AND ({key}, {alias}.id) {comparison} ("));
            after_key.push_bind(sql);
            sql.push(", ").push_bind(after_id).push(")");
        }
        // Literal numbers (ours, never a client's text): a bound LIMIT is
        // planned as a tenth of the table, which makes the generic plan a
        // hash join over every company.
        sql.push(format!(
            " ORDER BY {key} {direction}, {alias}.id {direction} LIMIT {}) walked \
             ORDER BY walked.sort_key {direction}, walked.id {direction} OFFSET {offset} LIMIT {}",
            offset + i64::from(limit) + 1,
            i64::from(limit) + 1
        ));
        Ok(())
    }

    /// Pushes a count of the matching rows, up to [`EXACT_TOTAL_UP_TO`] + 1,
    /// walking each scope as a page does. The walk keeps the sort order, so
    /// it stays on the sort's index (read alone, without the table, once the
    /// table is vacuumed) even when one scope is most of the table and a
    /// sequential scan would look as cheap.
    fn push_count(
        &self,
        sql: &mut QueryBuilder<'_, Postgres>,
        scopes: &[String],
        filters: &Filters<'_>,
    ) {
        let Walk {
            table, alias, key, ..
        } = *self;
        let direction = self.direction();
        sql.push("SELECT count(*) FROM (SELECT 1 FROM ");
        push_scopes(sql, scopes);
        sql.push(format!(
            " CROSS JOIN LATERAL (SELECT 1 FROM {table} {alias} WHERE {alias}.scope_key = scope.key"
        ));
        filters(sql);
        let rows = EXACT_TOTAL_UP_TO + 1;
        sql.push(format!(
            " ORDER BY {key} {direction}, {alias}.id {direction} LIMIT {rows}) walked \
             LIMIT {rows}) counted"
        ));
    }
}

/// The most scopes a caller sees: their own, their organisation's, the system's.
const SCOPE_SLOTS: usize = 3;

/// Pushes the visible scopes as the relation `scope(key)`: always
/// [`SCOPE_SLOTS`] bound rows, unused ones NULL (which match no row). A
/// fixed row count is planned alike whatever the values, so PostgreSQL soon
/// keeps one generic plan per list statement instead of planning each
/// request anew (`unnest` of a bound array is planned as 10 rows, one scope
/// as 1: the generic plan never looked as cheap, and planning cost twice the
/// page's execution).
fn push_scopes(sql: &mut QueryBuilder<'_, Postgres>, scopes: &[String]) {
    sql.push("(VALUES ");
    for slot in 0..scopes.len().max(SCOPE_SLOTS) {
        if slot > 0 {
            sql.push(", ");
        }
        sql.push("(")
            .push_bind(scopes.get(slot).cloned())
            .push("::text)");
    }
    sql.push(") AS scope(key)");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(key_kind: KeyKind, descending: bool) -> Walk<'static> {
        Walk {
            table: "t",
            alias: "t",
            sort: "k",
            key: "t.k",
            key_kind,
            descending,
        }
    }

    #[test]
    fn cursors_round_trip_each_kind_of_key() {
        let id = Uuid::from_u128(7);
        let time = DateTime::parse_from_rfc3339("2026-11-27T22:35:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        for (walk, key) in [
            (walk(KeyKind::Time, true), SortKey::Time(time)),
            (
                walk(KeyKind::Text, false),
                SortKey::Text("Ünïcode | \"name\"".into()),
            ),
            (
                walk(KeyKind::NumberMissingLast, false),
                SortKey::Number(1.5e12),
            ),
            // Missing caps: +infinity ascending, -infinity descending.
            (
                walk(KeyKind::NumberMissingLast, false),
                SortKey::Number(f64::INFINITY),
            ),
            (
                walk(KeyKind::NumberMissingLast, true),
                SortKey::Number(f64::NEG_INFINITY),
            ),
        ] {
            let cursor = walk.cursor_after(key.clone(), id);
            assert!(
                cursor
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(walk.decode(&cursor), Ok((key, id)));
        }
    }

    #[test]
    fn cursors_of_another_sort_or_not_ours_are_refused() {
        let ascending = walk(KeyKind::Text, false);
        let cursor = ascending.cursor_after(SortKey::Text("a".into()), Uuid::nil());
        let problem = walk(KeyKind::Text, true).decode(&cursor).unwrap_err();
        assert!(problem.contains("sort=k order=asc"), "{problem}");
        let time_cursor =
            walk(KeyKind::Time, false).cursor_after(SortKey::Time(Utc::now()), Uuid::nil());
        for text in [
            "",
            "not base64!",
            "bm90IGpzb24",
            &time_cursor[..time_cursor.len() - 2],
            &"A".repeat(MAX_CURSOR_CHARS + 1),
        ] {
            assert!(ascending.decode(text).is_err(), "{text:?}");
        }
        // A time cursor whose key is not a time.
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sort":"k","order":"asc","key":"yesterday","id":"00000000-0000-0000-0000-000000000000"}"#);
        assert!(walk(KeyKind::Time, false).decode(&forged).is_err());
    }

    #[test]
    fn page_numbers_reach_the_first_rows_only() {
        let walk = walk(KeyKind::Time, true);
        assert!(matches!(
            walk.start(&PageStart::Number(100), 100),
            Ok(Start::Offset(9_900))
        ));
        assert!(matches!(
            walk.start(&PageStart::Number(101), 100),
            Err(DomainError::InvalidParameter {
                parameter: "page",
                ..
            })
        ));
        assert!(matches!(
            walk.start(&PageStart::Number(u32::MAX), 100),
            Err(DomainError::InvalidParameter {
                parameter: "page",
                ..
            })
        ));
    }

    #[test]
    fn totals_past_the_cap_say_at_least_and_are_remembered() {
        assert_eq!(
            Total::from_capped(10_000),
            Total {
                count: 10_000,
                exact: true
            }
        );
        assert_eq!(
            Total::from_capped(10_001),
            Total {
                count: 10_000,
                exact: false
            }
        );
        let key = format!("test {}", Uuid::new_v4());
        assert!(!known_saturated(&key));
        remember_saturated(key.clone());
        assert!(known_saturated(&key));
        assert!(!known_saturated(&format!("{key} other filters")));
    }
}
