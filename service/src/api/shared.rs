//! What more than one resource's handlers use: the empty answer, paging
//! parameters and answers, e-mail and name checks and normalisation, the company fields that
//! companies and predictions share, and the user and organisation wire objects
//! that several resources answer with. Imports no resource module, so resource
//! modules never import each other.

use accunode_core::domain::companies::{NewCompany, symbol_problem};
use accunode_core::domain::organizations;
use accunode_core::domain::users;
use accunode_core::domain::{Page, PageStart};
use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object};
use uuid::Uuid;

use crate::body::Problems;
use crate::error::ApiError;

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// Where a page sits in its list and how to ask for the next one; flattened
/// into every list's page.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Paging {
    /// The matching rows: exactly when `total_exact`, otherwise at least this
    /// many (counting stops at 10,000).
    pub total: i64,
    /// Whether `total` is the exact count.
    pub total_exact: bool,
    /// The page number asked for; absent on a page asked for by `cursor`.
    pub page: Option<u32>,
    pub limit: u32,
    /// Pages of `limit` rows the total fills (at least, when not exact).
    pub pages: u32,
    /// Pass as `cursor` to read the next page; absent on the last page.
    /// Rows created between two pages do not shift the next one.
    pub next_cursor: Option<String>,
}

impl<T> From<&Page<T>> for Paging {
    fn from(page: &Page<T>) -> Self {
        Self {
            total: page.total,
            total_exact: page.total_exact,
            page: page.page,
            limit: page.limit,
            pages: page.pages(),
            next_cursor: page.next_cursor.clone(),
        }
    }
}

/// A list's `page` and `cursor` parameters as where its page starts: page 1
/// when neither is given; both at once is a mistake.
pub fn page_start(page: Option<u32>, cursor: Option<String>) -> Result<PageStart, ApiError> {
    match (page, cursor) {
        (Some(_), Some(_)) => Err(ApiError::invalid_field(
            "query.cursor",
            "give either `page` or `cursor`, not both",
        )),
        (_, Some(cursor)) => Ok(PageStart::After(cursor)),
        (page, None) => Ok(PageStart::Number(page.unwrap_or(1))),
    }
}

pub fn default_page() -> u32 {
    1
}

pub fn default_limit() -> u32 {
    20
}

/// An optional text filter: a blank one is no filter.
pub fn non_blank(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.trim().is_empty())
}

/// A syntactically plausible address: `local@domain.tld`, no spaces, at most 254 characters.
fn email_problem(email: &str) -> Option<&'static str> {
    let email = email.trim();
    let Some((local, domain)) = email.split_once('@') else {
        return Some("must be an email address like name@example.com");
    };
    if email.chars().count() > 254
        || local.is_empty()
        || local.chars().count() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Some("must be an email address like name@example.com");
    }
    None
}

pub fn check_email(problems: &mut Problems, field: &str, email: &str) {
    if let Some(problem) = email_problem(email) {
        problems.add(field, problem);
    }
}

/// Stores the lower-cased, trimmed form of an email address.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A name as stored: trimmed, empty meaning none.
pub fn clean_name(name: &str) -> Option<String> {
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Checks shared by company creation and predictions (which name a company).
/// `(symbol_field, name_field)` name the two fields as the request calls them.
pub fn check_company(
    problems: &mut Problems,
    (symbol_field, name_field): (&str, &str),
    symbol: &str,
    name: &str,
    market_cap: Option<f64>,
    sector: Option<&str>,
) {
    if let Some(problem) = symbol_problem(symbol) {
        problems.add(symbol_field, problem);
    }
    problems.text(name_field, name, 1, 255);
    if let Some(cap) = market_cap
        && !(cap > 0.0 && cap.is_finite())
    {
        problems.add("market_cap", format!("must be greater than 0, got {cap}"));
    }
    if let Some(sector) = sector {
        problems.text("sector", sector, 0, 100);
    }
}

/// What a new company is, as the domain takes it.
pub fn new_company(
    symbol: &str,
    name: &str,
    market_cap: Option<f64>,
    sector: Option<&str>,
) -> NewCompany {
    NewCompany {
        symbol: symbol.trim().to_uppercase(),
        name: name.trim().to_owned(),
        market_cap,
        sector: sector
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    }
}

/// A user as they see themselves.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UserProfile {
    pub id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `user`, `org_member`, `org_admin`, `tenant_admin` or `super_admin`.
    pub role: String,
    pub organization_id: Option<Uuid>,
    pub email_verified: bool,
    /// A deactivated user cannot sign in.
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

impl From<users::UserProfile> for UserProfile {
    fn from(profile: users::UserProfile) -> Self {
        Self {
            id: profile.id.into(),
            email: profile.email,
            first_name: profile.first_name,
            last_name: profile.last_name,
            role: profile.role.as_str().to_owned(),
            organization_id: profile.organization_id.map(Uuid::from),
            email_verified: profile.email_verified,
            is_active: profile.is_active,
            created_at: profile.created_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Whether members see system (global) companies and predictions.
    pub allow_global_data_access: bool,
    pub join_enabled: bool,
    /// Shown to those who manage the organisation only.
    pub join_token: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<organizations::Organization> for Organization {
    fn from(organization: organizations::Organization) -> Self {
        Self {
            id: organization.id.into(),
            name: organization.name,
            description: organization.description,
            allow_global_data_access: organization.allow_global_data_access,
            join_enabled: organization.join_enabled,
            join_token: organization.join_token,
            created_by: organization.created_by.map(Uuid::from),
            created_at: organization.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked() {
        for good in ["a@b.co", "first.last+tag@example.com"] {
            assert_eq!(email_problem(good), None, "{good}");
        }
        for bad in [
            "", "a", "@b.co", "a@b", "a@.b", "a b@c.de", "a@b@c.de", "a@b.co.",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
    }
}
