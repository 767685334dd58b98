//! `/api/v1/users`: the caller's profile and organisations.

use accunode_core::domain::Role;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::ApiTags;
use super::organizations::{Organization, organization_view};
use crate::auth::BearerAuth;
use crate::body::{JsonBody, Problems, Validate};
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Default)]
pub struct UsersApi;

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
    pub created_at: DateTime<Utc>,
}

pub const PROFILE_COLUMNS: &str = "id, email, first_name, last_name, role, organization_id, \
                                   email_verified_at IS NOT NULL AS email_verified, created_at";

impl UserProfile {
    pub fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            role: row.try_get("role")?,
            organization_id: row.try_get("organization_id")?,
            email_verified: row.try_get("email_verified")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Names to change; an absent field stays as it is, an empty one is cleared.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct UpdateProfileRequest {
    #[oai(validator(max_length = 100))]
    pub first_name: Option<String>,
    #[oai(validator(max_length = 100))]
    pub last_name: Option<String>,
}

impl Validate for UpdateProfileRequest {
    fn validate(&self, problems: &mut Problems) {
        for (field, value) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
        ] {
            if let Some(value) = value {
                problems.text(field, value, 0, 100);
            }
        }
    }
}

/// An optional name as stored: trimmed, empty meaning none.
pub fn clean_name(name: Option<&String>) -> Option<String> {
    name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty())
}

pub async fn load_profile(state: &AppState, user: Uuid) -> Result<UserProfile, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {PROFILE_COLUMNS} FROM users WHERE id = $1"
    ))
    .bind(user)
    .fetch_optional(&state.dependencies.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("No such user."))?;
    Ok(UserProfile::from_row(&row)?)
}

#[OpenApi(prefix_path = "/api/v1/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// The caller's profile.
    #[oai(path = "/profile", method = "get", operation_id = "get_profile")]
    async fn get_profile(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
    ) -> Result<Json<UserProfile>, ApiError> {
        Ok(Json(load_profile(&state, auth.0.user_id).await?))
    }

    /// Changes the caller's names.
    #[oai(path = "/profile", method = "put", operation_id = "update_profile")]
    async fn update_profile(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<UpdateProfileRequest>,
    ) -> Result<Json<UserProfile>, ApiError> {
        let changes = body.0;
        let row = sqlx::query(&format!(
            "UPDATE users SET \
               first_name = CASE WHEN $2 THEN $3 ELSE first_name END, \
               last_name = CASE WHEN $4 THEN $5 ELSE last_name END \
             WHERE id = $1 RETURNING {PROFILE_COLUMNS}"
        ))
        .bind(auth.0.user_id)
        .bind(changes.first_name.is_some())
        .bind(clean_name(changes.first_name.as_ref()))
        .bind(changes.last_name.is_some())
        .bind(clean_name(changes.last_name.as_ref()))
        .fetch_one(&state.dependencies.pool)
        .await?;
        Ok(Json(UserProfile::from_row(&row)?))
    }

    /// The organisations the caller belongs to or manages (tenant admins:
    /// the ones they created).
    #[oai(
        path = "/organizations",
        method = "get",
        operation_id = "list_my_organizations"
    )]
    async fn organizations(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
    ) -> Result<Json<Vec<Organization>>, ApiError> {
        let caller = &auth.0;
        let rows = sqlx::query(
            "SELECT * FROM organizations WHERE id = $1 OR created_by = $2 ORDER BY created_at, id",
        )
        .bind(caller.organization_id)
        .bind(caller.user_id)
        .fetch_all(&state.dependencies.pool)
        .await?;
        let organizations = rows
            .iter()
            .map(|row| organization_view(row, caller))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(organizations))
    }
}

/// Roles an organisation manager may give its members.
pub fn member_role(text: &str) -> Option<Role> {
    match text.parse::<Role>() {
        Ok(role @ (Role::OrgMember | Role::OrgAdmin)) => Some(role),
        _ => None,
    }
}
