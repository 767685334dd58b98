//! `/api/v1/organizations`: create, read, join with a join token, the join
//! whitelist, the join token itself, global-data access and member roles.
//!
//! An organisation is visible to its members, to the tenant admin who created
//! it and to super admins; to anyone else it does not exist (404). It is
//! managed by its org admins, its creating tenant admin and super admins.

use accunode_core::domain::{Caller, Role};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::ApiTags;
use super::auth::{NoContent, check_email, normalise_email};
use super::users::{PROFILE_COLUMNS, UserProfile, member_role};
use crate::auth::BearerAuth;
use crate::auth::tokens;
use crate::body::{JsonBody, Problems, Validate};
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Default)]
pub struct OrganizationsApi;

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

/// Whether `caller` manages the organisation of `row`.
fn manages(caller: &Caller, organization: Uuid, created_by: Option<Uuid>) -> bool {
    match caller.role {
        Role::SuperAdmin => true,
        Role::TenantAdmin => {
            created_by == Some(caller.user_id) || caller.organization_id == Some(organization)
        }
        Role::OrgAdmin => caller.organization_id == Some(organization),
        Role::User | Role::OrgMember => false,
    }
}

/// An organisation row as `caller` may see it (the join token for managers only).
pub fn organization_view(row: &PgRow, caller: &Caller) -> Result<Organization, sqlx::Error> {
    let id: Uuid = row.try_get("id")?;
    let created_by: Option<Uuid> = row.try_get("created_by")?;
    Ok(Organization {
        id,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        allow_global_data_access: row.try_get("allow_global_data_access")?,
        join_enabled: row.try_get("join_enabled")?,
        join_token: if manages(caller, id, created_by) {
            Some(row.try_get("join_token")?)
        } else {
            None
        },
        created_by,
        created_at: row.try_get("created_at")?,
    })
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct CreateOrganizationRequest {
    #[oai(validator(min_length = 1, max_length = 255))]
    pub name: String,
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
}

impl Validate for CreateOrganizationRequest {
    fn validate(&self, problems: &mut Problems) {
        problems.text("name", &self.name, 1, 255);
        if let Some(description) = &self.description {
            problems.text("description", description, 0, 1000);
        }
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct JoinRequest {
    /// The organisation's join token, from one of its managers.
    pub join_token: String,
}

impl Validate for JoinRequest {
    fn validate(&self, problems: &mut Problems) {
        problems.text("join_token", &self.join_token, 1, 200);
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct WhitelistRequest {
    /// An address allowed to join with the join token.
    pub email: String,
}

impl Validate for WhitelistRequest {
    fn validate(&self, problems: &mut Problems) {
        check_email(problems, "email", &self.email);
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WhitelistEntry {
    pub email: String,
    pub added_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct GlobalAccessRequest {
    /// Whether members see system (global) companies and predictions.
    pub enabled: bool,
}

impl Validate for GlobalAccessRequest {
    fn validate(&self, _problems: &mut Problems) {}
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct MemberRoleRequest {
    /// `org_member` or `org_admin`.
    pub role: String,
}

impl Validate for MemberRoleRequest {
    fn validate(&self, problems: &mut Problems) {
        if member_role(&self.role).is_none() {
            problems.add("role", "must be org_member or org_admin");
        }
    }
}

#[derive(ApiResponse)]
pub enum CreatedOrganization {
    /// Created; the answer carries its join token.
    #[oai(status = 201)]
    Created(Json<Organization>),
}

#[derive(ApiResponse)]
pub enum CreatedWhitelistEntry {
    /// Added (or already there).
    #[oai(status = 201)]
    Created(Json<WhitelistEntry>),
}

impl OrganizationsApi {
    /// The organisation row when `caller` may see it; 404 otherwise.
    async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> Result<PgRow, ApiError> {
        let row = sqlx::query("SELECT * FROM organizations WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.dependencies.pool)
            .await?;
        match row {
            Some(row)
                if caller.role == Role::SuperAdmin
                    || caller.organization_id == Some(id)
                    || row.try_get::<Option<Uuid>, _>("created_by")? == Some(caller.user_id) =>
            {
                Ok(row)
            }
            _ => Err(ApiError::not_found("No such organization.")),
        }
    }

    /// The organisation row when `caller` manages it; 404 when they cannot see
    /// it, 403 when they can but do not manage it.
    async fn managed(state: &AppState, caller: &Caller, id: Uuid) -> Result<PgRow, ApiError> {
        let row = Self::visible(state, caller, id).await?;
        if manages(caller, id, row.try_get("created_by")?) {
            Ok(row)
        } else {
            Err(ApiError::forbidden(
                "insufficient_role",
                "Only the organization's admins may do this.",
            ))
        }
    }

    /// Every member's cached session must see a change of the organisation.
    async fn forget_members(state: &AppState, organization: Uuid) -> Result<(), ApiError> {
        let members: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM users WHERE organization_id = $1")
                .bind(organization)
                .fetch_all(&state.dependencies.pool)
                .await?;
        state.sessions.forget_callers(&members).await
    }
}

#[OpenApi(prefix_path = "/api/v1/organizations", tag = "ApiTags::Organizations")]
impl OrganizationsApi {
    /// Creates an organisation (tenant admins and super admins). A creator in
    /// no organisation yet becomes a member of this one.
    #[oai(path = "/", method = "post", operation_id = "create_organization")]
    async fn create(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<CreateOrganizationRequest>,
    ) -> Result<CreatedOrganization, ApiError> {
        let caller = auth.require(&[Role::TenantAdmin, Role::SuperAdmin])?;
        let request = body.0;
        let mut tx = state.dependencies.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO organizations (name, description, join_token, created_by) \
             VALUES ($1, $2, $3, $4) RETURNING *",
        )
        .bind(request.name.trim())
        .bind(
            request
                .description
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty()),
        )
        .bind(tokens::random_token())
        .bind(caller.user_id)
        .fetch_one(&mut *tx)
        .await?;
        let id: Uuid = row.try_get("id")?;
        sqlx::query(
            "UPDATE users SET organization_id = $2 WHERE id = $1 AND organization_id IS NULL",
        )
        .bind(caller.user_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        state.sessions.forget_callers(&[caller.user_id]).await?;
        Ok(CreatedOrganization::Created(Json(organization_view(
            &row, caller,
        )?)))
    }

    /// An organisation the caller belongs to or manages.
    #[oai(path = "/:id", method = "get", operation_id = "get_organization")]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<Organization>, ApiError> {
        let row = Self::visible(&state, &auth.0, id.0).await?;
        Ok(Json(organization_view(&row, &auth.0)?))
    }

    /// Joins the organisation of a join token. The caller must be in no
    /// organisation and their email must be on its whitelist.
    #[oai(path = "/join", method = "post", operation_id = "join_organization")]
    async fn join(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<JoinRequest>,
    ) -> Result<Json<Organization>, ApiError> {
        let caller = &auth.0;
        if caller.organization_id.is_some() {
            return Err(ApiError::conflict("You already belong to an organization."));
        }
        if caller.role != Role::User {
            return Err(ApiError::forbidden(
                "insufficient_role",
                "Only users outside any organization can join one.",
            ));
        }
        let row = sqlx::query("SELECT * FROM organizations WHERE join_token = $1 AND join_enabled")
            .bind(body.0.join_token.trim())
            .fetch_optional(&state.dependencies.pool)
            .await?
            .ok_or_else(|| {
                ApiError::invalid_field("body.join_token", "is not a valid join token")
            })?;
        let organization: Uuid = row.try_get("id")?;
        let whitelisted: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM organization_whitelist \
                            WHERE organization_id = $1 AND email = $2)",
        )
        .bind(organization)
        .bind(&caller.email)
        .fetch_one(&state.dependencies.pool)
        .await?;
        if !whitelisted {
            return Err(ApiError::forbidden(
                "not_whitelisted",
                "Your email address is not on this organization's whitelist.",
            ));
        }
        let joined = sqlx::query(
            "UPDATE users SET organization_id = $2, role = 'org_member' \
             WHERE id = $1 AND organization_id IS NULL",
        )
        .bind(caller.user_id)
        .bind(organization)
        .execute(&state.dependencies.pool)
        .await?;
        if joined.rows_affected() == 0 {
            return Err(ApiError::conflict("You already belong to an organization."));
        }
        state.sessions.forget_callers(&[caller.user_id]).await?;
        Ok(Json(organization_view(&row, caller)?))
    }

    /// The emails allowed to join (managers only).
    #[oai(
        path = "/:id/whitelist",
        method = "get",
        operation_id = "list_whitelist"
    )]
    async fn whitelist(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<WhitelistEntry>>, ApiError> {
        Self::managed(&state, &auth.0, id.0).await?;
        let rows = sqlx::query(
            "SELECT email, added_by, created_at FROM organization_whitelist \
             WHERE organization_id = $1 ORDER BY email",
        )
        .bind(id.0)
        .fetch_all(&state.dependencies.pool)
        .await?;
        let entries = rows
            .iter()
            .map(|row| {
                Ok(WhitelistEntry {
                    email: row.try_get("email")?,
                    added_by: row.try_get("added_by")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Json(entries))
    }

    /// Allows an email to join (managers only).
    #[oai(
        path = "/:id/whitelist",
        method = "post",
        operation_id = "add_to_whitelist"
    )]
    async fn add_to_whitelist(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
        body: JsonBody<WhitelistRequest>,
    ) -> Result<CreatedWhitelistEntry, ApiError> {
        Self::managed(&state, &auth.0, id.0).await?;
        let row = sqlx::query(
            "INSERT INTO organization_whitelist (organization_id, email, added_by) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (organization_id, email) DO UPDATE SET email = excluded.email \
             RETURNING email, added_by, created_at",
        )
        .bind(id.0)
        .bind(normalise_email(&body.0.email))
        .bind(auth.0.user_id)
        .fetch_one(&state.dependencies.pool)
        .await?;
        Ok(CreatedWhitelistEntry::Created(Json(WhitelistEntry {
            email: row.try_get("email")?,
            added_by: row.try_get("added_by")?,
            created_at: row.try_get("created_at")?,
        })))
    }

    /// Removes an email from the whitelist (managers only). Members who
    /// already joined stay members.
    #[oai(
        path = "/:id/whitelist/:email",
        method = "delete",
        operation_id = "remove_from_whitelist"
    )]
    async fn remove_from_whitelist(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
        email: Path<String>,
    ) -> Result<NoContent, ApiError> {
        Self::managed(&state, &auth.0, id.0).await?;
        let removed = sqlx::query(
            "DELETE FROM organization_whitelist WHERE organization_id = $1 AND email = $2",
        )
        .bind(id.0)
        .bind(normalise_email(&email.0))
        .execute(&state.dependencies.pool)
        .await?;
        if removed.rows_affected() == 0 {
            return Err(ApiError::not_found("That email is not on the whitelist."));
        }
        Ok(NoContent::Done)
    }

    /// Replaces the join token; the old one stops working (managers only).
    #[oai(
        path = "/:id/join-token",
        method = "post",
        operation_id = "regenerate_join_token"
    )]
    async fn regenerate_join_token(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<Organization>, ApiError> {
        Self::managed(&state, &auth.0, id.0).await?;
        let row = sqlx::query("UPDATE organizations SET join_token = $2 WHERE id = $1 RETURNING *")
            .bind(id.0)
            .bind(tokens::random_token())
            .fetch_one(&state.dependencies.pool)
            .await?;
        Ok(Json(organization_view(&row, &auth.0)?))
    }

    /// Lets members see system (global) data, or stops it (managers only).
    #[oai(
        path = "/:id/global-access",
        method = "put",
        operation_id = "set_global_access"
    )]
    async fn set_global_access(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
        body: JsonBody<GlobalAccessRequest>,
    ) -> Result<Json<Organization>, ApiError> {
        Self::managed(&state, &auth.0, id.0).await?;
        let row = sqlx::query(
            "UPDATE organizations SET allow_global_data_access = $2 WHERE id = $1 RETURNING *",
        )
        .bind(id.0)
        .bind(body.0.enabled)
        .fetch_one(&state.dependencies.pool)
        .await?;
        Self::forget_members(&state, id.0).await?;
        Ok(Json(organization_view(&row, &auth.0)?))
    }

    /// The members (managers only).
    #[oai(path = "/:id/members", method = "get", operation_id = "list_members")]
    async fn members(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<UserProfile>>, ApiError> {
        Self::managed(&state, &auth.0, id.0).await?;
        let rows = sqlx::query(&format!(
            "SELECT {PROFILE_COLUMNS} FROM users WHERE organization_id = $1 ORDER BY email"
        ))
        .bind(id.0)
        .fetch_all(&state.dependencies.pool)
        .await?;
        let members = rows
            .iter()
            .map(UserProfile::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(members))
    }

    /// Makes a member an org admin or back (managers only).
    #[oai(
        path = "/:id/members/:user_id/role",
        method = "put",
        operation_id = "set_member_role"
    )]
    async fn set_member_role(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
        user_id: Path<Uuid>,
        body: JsonBody<MemberRoleRequest>,
    ) -> Result<Json<UserProfile>, ApiError> {
        Self::managed(&state, &auth.0, id.0).await?;
        let role = member_role(&body.0.role).ok_or_else(|| {
            ApiError::invalid_field("body.role", "must be org_member or org_admin")
        })?;
        let row = sqlx::query(&format!(
            "UPDATE users SET role = $3 WHERE id = $2 AND organization_id = $1 \
             AND role IN ('org_member', 'org_admin') RETURNING {PROFILE_COLUMNS}"
        ))
        .bind(id.0)
        .bind(user_id.0)
        .bind(role.as_str())
        .fetch_optional(&state.dependencies.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("No such member of this organization."))?;
        state.sessions.forget_callers(&[user_id.0]).await?;
        Ok(Json(UserProfile::from_row(&row)?))
    }
}
