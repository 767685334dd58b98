//! Companies: listed, read, created, changed and deleted within the caller's scopes.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, QueryBuilder, Row};

use super::listing::{KeyKind, ListStatements, Walk};
use super::{
    AccessLevel, Caller, CompanyId, DomainError, OrganizationId, Page, PageStart, PredictionId,
    UserId, is_unique_violation, parse_column, scope_key,
};

const COLUMNS: &str = "id, symbol, name, market_cap, sector, access_level, organization_id, \
                       created_by, created_at, updated_at";

#[derive(Debug, Clone, PartialEq)]
pub struct Company {
    pub id: CompanyId,
    pub symbol: String,
    pub name: String,
    pub market_cap: Option<f64>,
    pub sector: Option<String>,
    pub access_level: AccessLevel,
    pub organization_id: Option<OrganizationId>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Company {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            symbol: row.try_get("symbol")?,
            name: row.try_get("name")?,
            market_cap: row.try_get("market_cap")?,
            sector: row.try_get("sector")?,
            access_level: parse_column(row, "access_level")?,
            organization_id: row.try_get("organization_id")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// What is wrong with a ticker as a client sent it, if anything: it must be
/// 1 to 20 printable ASCII characters (letters, digits and punctuation such
/// as `BRK.B`, `^GSPC`, `005930.KS`), no spaces; surrounding spaces are
/// trimmed. ASCII also keeps its length when upper-cased (`ß` would not).
pub fn symbol_problem(symbol: &str) -> Option<&'static str> {
    let symbol = symbol.trim();
    (symbol.is_empty() || symbol.len() > 20 || !symbol.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(
            "must be 1 to 20 printable ASCII characters (letters, digits, punctuation), \
             without spaces",
        )
}

/// A company as a client describes it; the symbol is stored upper-case.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCompany {
    pub symbol: String,
    pub name: String,
    pub market_cap: Option<f64>,
    pub sector: Option<String>,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompanyChanges {
    pub name: Option<String>,
    pub market_cap: Option<f64>,
    pub sector: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompanySort {
    Name,
    Symbol,
    MarketCap,
    #[default]
    CreatedAt,
}

impl CompanySort {
    /// The walk of this sort: its key is the leading column (after
    /// `scope_key`) of the index serving it (see the keyset migration).
    fn walk(self, descending: bool) -> Walk<'static> {
        let (sort, key, key_kind) = match self {
            Self::Name => ("name", "c.name", KeyKind::Text),
            Self::Symbol => ("symbol", "c.symbol", KeyKind::Text),
            Self::MarketCap if descending => (
                "market_cap",
                "coalesce(c.market_cap, '-Infinity'::float8)",
                KeyKind::NumberMissingLast,
            ),
            Self::MarketCap => (
                "market_cap",
                "coalesce(c.market_cap, 'Infinity'::float8)",
                KeyKind::NumberMissingLast,
            ),
            Self::CreatedAt => ("created_at", "c.created_at", KeyKind::Time),
        };
        Walk {
            table: "companies",
            alias: "c",
            sort,
            key,
            key_kind,
            descending,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CompanyQuery {
    pub start: PageStart,
    pub limit: u32,
    pub sector: Option<String>,
    /// Matches symbol or name, case-insensitively, anywhere.
    pub search: Option<String>,
    pub sort: CompanySort,
    pub descending: bool,
}

/// `text` as a `LIKE` pattern that matches it literally, anywhere.
pub(crate) fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The companies the caller can see, filtered, sorted and paged (see
/// [`listing`](super::listing)).
pub async fn list(
    pool: &PgPool,
    caller: &Caller,
    query: &CompanyQuery,
) -> Result<Page<Company>, DomainError> {
    let statements = list_statements("", caller, query)?;
    query
        .sort
        .walk(query.descending)
        .read_page(
            pool,
            statements,
            (&query.start, query.limit),
            Company::from_row,
        )
        .await
}

/// The statements [`list`] runs, after `prefix` (`EXPLAIN …` to see their plans).
pub fn list_statements(
    prefix: &str,
    caller: &Caller,
    query: &CompanyQuery,
) -> Result<ListStatements, DomainError> {
    let sector = query.sector.clone();
    let search = query.search.as_deref().map(contains_pattern);
    let filters = move |sql: &mut QueryBuilder<'_, Postgres>| {
        if let Some(sector) = &sector {
            sql.push(" AND lower(c.sector) = lower(")
                .push_bind(sector.clone())
                .push(")");
        }
        if let Some(search) = &search {
            sql.push(" AND (c.symbol ILIKE ")
                .push_bind(search.clone())
                .push(" OR c.name ILIKE ")
                .push_bind(search.clone())
                .push(")");
        }
    };
    let filter_key = format!("{:?} {:?}", query.sector, query.search);
    query.sort.walk(query.descending).statements(
        prefix,
        &caller.visible_scope_keys(),
        (&filters, filter_key),
        (&query.start, query.limit),
        ("", ""),
    )
}

/// One company, when the caller can see it.
pub async fn get(pool: &PgPool, caller: &Caller, id: CompanyId) -> Result<Company, DomainError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM companies WHERE id = $1 AND scope_key = ANY($2)"
    ))
    .bind(id)
    .bind(caller.visible_scope_keys())
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(Company::from_row(&row)?),
        None => Err(DomainError::NotFound { what: "company" }),
    }
}

/// Inserts `company` in the caller's write scope; `on_conflict` is the SQL
/// for a symbol the scope already has (empty: the unique violation stands).
/// `None` when the conflict's update left the existing row as it was.
async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    caller: &Caller,
    company: &NewCompany,
    on_conflict: &str,
) -> Result<Option<Company>, sqlx::Error> {
    let scope = caller.write_scope();
    let row = sqlx::query(&format!(
        "INSERT INTO companies (symbol, name, market_cap, sector, access_level, organization_id, created_by) \
         VALUES (upper($1), $2, $3, $4, $5, $6, $7) {on_conflict} RETURNING {COLUMNS}"
    ))
    .bind(&company.symbol)
    .bind(&company.name)
    .bind(company.market_cap)
    .bind(&company.sector)
    .bind(scope.access_level.as_str())
    .bind(scope.organization_id)
    .bind(caller.user_id)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(Company::from_row).transpose()
}

/// The `ON CONFLICT (scope_key, symbol)` clause with which a prediction
/// reuses an existing company of its scope: it fills the company's blank
/// market cap and sector, but only when something is blank and the writer
/// (the inserted row's `created_by`) may modify the company, that is, created
/// it or `administers` its scope. A company the writer may not change stays
/// as it is, `updated_at` included; the conflicting row is locked all the same.
pub(crate) fn fill_blanks_on_conflict(administers: bool) -> String {
    format!(
        "ON CONFLICT (scope_key, symbol) DO UPDATE SET \
             market_cap = coalesce(companies.market_cap, excluded.market_cap), \
             sector = coalesce(companies.sector, excluded.sector) \
         WHERE ((companies.market_cap IS NULL AND excluded.market_cap IS NOT NULL) \
             OR (companies.sector IS NULL AND excluded.sector IS NOT NULL)) \
           AND (companies.created_by = excluded.created_by OR {administers})"
    )
}

/// Creates a company in the caller's write scope; a symbol already used in
/// that scope is a conflict.
pub async fn create(
    pool: &PgPool,
    caller: &Caller,
    company: &NewCompany,
) -> Result<Company, DomainError> {
    match insert(pool, caller, company, "").await {
        Ok(created) => created.ok_or(DomainError::NotFound { what: "company" }),
        Err(error) if is_unique_violation(&error) => Err(DomainError::Conflict(format!(
            "a company with symbol {} already exists in this scope",
            company.symbol.to_uppercase()
        ))),
        Err(error) => Err(error.into()),
    }
}

/// The caller's company with this symbol, created when it does not exist yet,
/// and locked until `connection`'s transaction ends. An existing company keeps
/// its name; blanks it has are filled from `company` only when the caller may
/// modify it (see [`fill_blanks_on_conflict`]).
pub async fn find_or_create(
    connection: &mut PgConnection,
    caller: &Caller,
    company: &NewCompany,
) -> Result<Company, DomainError> {
    let scope = caller.write_scope();
    let on_conflict =
        fill_blanks_on_conflict(caller.administers(scope.access_level, scope.organization_id));
    if let Some(company) = insert(&mut *connection, caller, company, &on_conflict).await? {
        return Ok(company);
    }
    // The conflict left the company as it was: read it (the upsert holds its lock).
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM companies WHERE scope_key = $1 AND symbol = upper($2)"
    ))
    .bind(scope_key(
        scope.access_level,
        scope.organization_id,
        Some(caller.user_id),
    ))
    .bind(&company.symbol)
    .fetch_one(&mut *connection)
    .await?;
    Ok(Company::from_row(&row)?)
}

/// Changes a company the caller may modify (see [`Caller::may_modify`]).
/// Also the company's predictions: each shows the company, so cached copies
/// of them are out of date.
pub async fn update(
    pool: &PgPool,
    caller: &Caller,
    id: CompanyId,
    changes: &CompanyChanges,
) -> Result<(Company, CompanyPredictions), DomainError> {
    let existing = get(pool, caller, id).await?;
    ensure_may_modify(caller, &existing)?;
    let row = sqlx::query(&format!(
        "UPDATE companies SET name = coalesce($2, name), market_cap = coalesce($3, market_cap), \
         sector = coalesce($4, sector) WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&changes.name)
    .bind(changes.market_cap)
    .bind(&changes.sector)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Err(DomainError::NotFound { what: "company" });
    };
    let mut predictions = CompanyPredictions::default();
    for (table, ids) in [
        ("annual_predictions", &mut predictions.annual),
        ("quarterly_predictions", &mut predictions.quarterly),
    ] {
        *ids = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE company_id = $1"))
            .bind(id)
            .fetch_all(pool)
            .await?;
    }
    Ok((Company::from_row(&row)?, predictions))
}

/// The predictions of a company (that a change of it shows in, or that its
/// deletion took with it), for cache invalidation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompanyPredictions {
    pub annual: Vec<PredictionId>,
    pub quarterly: Vec<PredictionId>,
}

/// Deletes a company the caller may modify, with its predictions. A company
/// that holds predictions of other users needs an administrator of its scope
/// (its creator alone may not take others' predictions with it): `Forbidden`.
pub async fn delete(
    pool: &PgPool,
    caller: &Caller,
    id: CompanyId,
) -> Result<CompanyPredictions, DomainError> {
    let existing = get(pool, caller, id).await?;
    ensure_may_modify(caller, &existing)?;
    let mut tx = pool.begin().await?;
    // Locked first: a prediction being added reuses the company through an
    // upsert that takes the same lock, so none slips in after the check.
    let still_there: Option<CompanyId> =
        sqlx::query_scalar("SELECT id FROM companies WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if still_there.is_none() {
        return Err(DomainError::NotFound { what: "company" });
    }
    if !caller.administers(existing.access_level, existing.organization_id) {
        let others: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM annual_predictions \
                            WHERE company_id = $1 AND created_by IS DISTINCT FROM $2) \
                 OR EXISTS (SELECT 1 FROM quarterly_predictions \
                            WHERE company_id = $1 AND created_by IS DISTINCT FROM $2)",
        )
        .bind(id)
        .bind(caller.user_id)
        .fetch_one(&mut *tx)
        .await?;
        if others {
            return Err(DomainError::Forbidden(
                "the company holds predictions of other users; only an administrator of its \
                 scope may delete it"
                    .into(),
            ));
        }
    }
    let mut deleted = CompanyPredictions::default();
    for (table, ids) in [
        ("annual_predictions", &mut deleted.annual),
        ("quarterly_predictions", &mut deleted.quarterly),
    ] {
        *ids = sqlx::query_scalar(&format!(
            "DELETE FROM {table} WHERE company_id = $1 RETURNING id"
        ))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM companies WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(deleted)
}

fn ensure_may_modify(caller: &Caller, company: &Company) -> Result<(), DomainError> {
    if caller.may_modify(
        company.access_level,
        company.organization_id,
        company.created_by,
    ) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "only the company's creator or an administrator of its scope may change it".into(),
        ))
    }
}
