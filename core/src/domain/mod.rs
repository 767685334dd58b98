//! The business records both the API and the worker read and write: companies
//! and predictions, always through queries that take a [`Caller`] and enforce
//! tenancy in SQL (see [`tenancy`]).

pub mod companies;
pub mod predictions;
pub mod tenancy;

use serde::Serialize;

pub use self::tenancy::{AccessLevel, Caller, Role, WriteScope, scope_key};

/// Why a tenancy-aware operation did not happen. Rows the caller may not see
/// are `NotFound`, never `Forbidden`, so their existence does not leak.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the limit of {limit} predictions per user is reached")]
    QuotaExceeded { limit: i64 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One page of a list, with what a client needs to page on.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub limit: u32,
}

impl<T> Page<T> {
    pub fn pages(&self) -> u32 {
        u32::try_from((self.total.max(0) as u64).div_ceil(u64::from(self.limit.max(1))))
            .unwrap_or(u32::MAX)
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            page: self.page,
            limit: self.limit,
        }
    }
}

/// Page and page size as SQL `OFFSET` and `LIMIT`.
pub(crate) fn offset_limit(page: u32, limit: u32) -> (i64, i64) {
    let limit = i64::from(limit.max(1));
    (i64::from(page.max(1) - 1) * limit, limit)
}

/// Whether `error` is PostgreSQL's unique violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23505"))
}
