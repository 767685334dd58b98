//! The business records both the API and the worker read and write, and every
//! SQL query that reads or writes them: users, organisations, sessions, mail,
//! companies and predictions. Queries on a user's behalf take a [`Caller`] and
//! enforce tenancy and roles here, in one place (see [`tenancy`]).
//!
//! - [`users`]: accounts, profiles, passwords, e-mail verification.
//! - [`organizations`]: tenants, joining, whitelists, members and their roles.
//! - [`sessions`]: sign-in sessions and their rotating refresh tokens.
//! - [`email`]: one-time e-mail tokens and the outbox of mail to send.
//! - [`companies`], [`predictions`]: the scored data, within the caller's scopes.
//! - [`listing`]: paging of their lists by keyset cursor, with capped totals.

pub mod bulk;
pub mod companies;
pub mod email;
pub mod ids;
pub mod listing;
pub mod organizations;
pub mod predictions;
pub mod sessions;
pub mod tenancy;
pub mod users;

use std::str::FromStr;

use sqlx::Row;
use sqlx::postgres::PgRow;

pub use self::ids::{CompanyId, JobId, OrganizationId, PredictionId, SessionId, UserId};
pub use self::listing::{Page, PageStart};
pub use self::tenancy::{AccessLevel, Caller, Role, WriteScope, scope_key};

/// Why a domain operation did not happen. Rows the caller may not see are
/// `NotFound`, never `Forbidden`, so their existence does not leak.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller's role does not allow the operation; the message says which would.
    #[error("{0}")]
    InsufficientRole(String),
    /// Joining an organisation whose whitelist does not have the caller's address.
    #[error("the caller's email address is not on the organization's whitelist")]
    NotWhitelisted,
    /// Joining an organisation while already in one.
    #[error("the caller already belongs to an organization")]
    AlreadyMember,
    #[error("the limit of {limit} predictions per user is reached")]
    QuotaExceeded { limit: i64 },
    /// A ratio the serving model does not accept: not finite, or out of its range.
    #[error("{ratio} {problem}")]
    InvalidRatio { ratio: String, problem: String },
    /// The serving model cannot score the input: a fault of the model or of
    /// the code that chose it, not of the input's values.
    #[error("cannot score: {0}")]
    Unscorable(String),
    /// A query parameter the caller got wrong in a way only the domain can
    /// tell (a cursor of another sort, a page past the numbered ones).
    #[error("{parameter} {problem}")]
    InvalidParameter {
        parameter: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Page and page size as SQL `OFFSET` and `LIMIT`.
pub(crate) fn offset_limit(page: u32, limit: u32) -> (i64, i64) {
    let limit = i64::from(limit.max(1));
    (i64::from(page.max(1) - 1) * limit, limit)
}

/// A text column parsed into its typed value (a role, a level, a quarter).
pub(crate) fn parse_column<T>(row: &PgRow, column: &str) -> Result<T, sqlx::Error>
where
    T: FromStr<Err = String>,
{
    let text: String = row.try_get(column)?;
    text.parse().map_err(|error| column_error(column, error))
}

/// A nullable text column parsed into its typed value.
pub(crate) fn parse_optional_column<T>(row: &PgRow, column: &str) -> Result<Option<T>, sqlx::Error>
where
    T: FromStr<Err = String>,
{
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| text.parse())
        .transpose()
        .map_err(|error| column_error(column, error))
}

fn column_error(column: &str, problem: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: problem.into(),
    }
}

/// Whether `error` is PostgreSQL's unique violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23505"))
}
