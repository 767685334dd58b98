//! `/api/v1/organizations`: create, read, join with a join token, leave, the
//! join whitelist, the join token itself, global-data access, member roles
//! and member removal.
//!
//! An organisation is visible to its members, to the tenant admin who created
//! it and to super admins; to anyone else it does not exist (404). It is
//! managed by its org admins, its creating tenant admin and super admins.

use accunode_core::domain::organizations::{self, MemberRole, NewOrganization};
use accunode_core::domain::{DomainError, OrganizationId, UserId};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use super::shared::{NoContent, Organization, UserProfile, check_email, normalise_email};
use crate::auth::BearerAuth;
use crate::auth::tokens;
use crate::body::{JsonBody, Problems, Validate};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Default)]
pub struct OrganizationsApi;

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

impl From<organizations::WhitelistEntry> for WhitelistEntry {
    fn from(entry: organizations::WhitelistEntry) -> Self {
        Self {
            email: entry.email,
            added_by: entry.added_by.map(Uuid::from),
            created_at: entry.created_at,
        }
    }
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
        if self.role.parse::<MemberRole>().is_err() {
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
        let request = body.0;
        let new = NewOrganization {
            name: request.name.trim().to_owned(),
            description: request
                .description
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
        };
        let created = organizations::create(
            &state.dependencies.pool,
            &auth.0,
            &new,
            &tokens::random_token(),
        )
        .await?;
        state.sessions.forget_callers(&[auth.0.user_id]).await?;
        Ok(CreatedOrganization::Created(Json(created.into())))
    }

    /// An organisation the caller belongs to or manages.
    #[oai(path = "/:id", method = "get", operation_id = "get_organization")]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<Organization>, ApiError> {
        let organization =
            organizations::get(&state.dependencies.pool, &auth.0, OrganizationId(id.0)).await?;
        Ok(Json(organization.into()))
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
        let joined =
            organizations::join(&state.dependencies.pool, &auth.0, body.0.join_token.trim())
                .await
                .map_err(|error| match error {
                    DomainError::NotFound { .. } => {
                        ApiError::invalid_field("body.join_token", "is not a valid join token")
                    }
                    other => other.into(),
                })?;
        state.sessions.forget_callers(&[auth.0.user_id]).await?;
        Ok(Json(joined.into()))
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
        let entries =
            organizations::whitelist(&state.dependencies.pool, &auth.0, OrganizationId(id.0))
                .await?;
        Ok(Json(
            entries.into_iter().map(WhitelistEntry::from).collect(),
        ))
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
        let entry = organizations::add_to_whitelist(
            &state.dependencies.pool,
            &auth.0,
            OrganizationId(id.0),
            &normalise_email(&body.0.email),
        )
        .await?;
        Ok(CreatedWhitelistEntry::Created(Json(entry.into())))
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
        let removed = organizations::remove_from_whitelist(
            &state.dependencies.pool,
            &auth.0,
            OrganizationId(id.0),
            &normalise_email(&email.0),
        )
        .await?;
        if !removed {
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
        let organization = organizations::replace_join_token(
            &state.dependencies.pool,
            &auth.0,
            OrganizationId(id.0),
            &tokens::random_token(),
        )
        .await?;
        Ok(Json(organization.into()))
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
        let id = OrganizationId(id.0);
        let organization =
            organizations::set_global_access(&state.dependencies.pool, &auth.0, id, body.0.enabled)
                .await?;
        // Every member's cached caller must see the change.
        state.sessions.forget_organization(id).await?;
        Ok(Json(organization.into()))
    }

    /// The members (managers only).
    #[oai(path = "/:id/members", method = "get", operation_id = "list_members")]
    async fn members(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<UserProfile>>, ApiError> {
        let members =
            organizations::members(&state.dependencies.pool, &auth.0, OrganizationId(id.0)).await?;
        Ok(Json(members.into_iter().map(UserProfile::from).collect()))
    }

    /// Makes a member an org admin or back (managers only). The last admin of
    /// an organisation with other members stays one (409).
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
        let role =
            body.0.role.parse::<MemberRole>().map_err(|_| {
                ApiError::invalid_field("body.role", "must be org_member or org_admin")
            })?;
        let member = UserId(user_id.0);
        let profile = organizations::set_member_role(
            &state.dependencies.pool,
            &auth.0,
            OrganizationId(id.0),
            member,
            role,
        )
        .await?;
        state.sessions.forget_callers(&[member]).await?;
        Ok(Json(profile.into()))
    }

    /// Removes a member (managers; a tenant or super admin member only by a
    /// super admin). The member becomes a `user` again (tenant and super
    /// admins keep their role), leaves the whitelist, and every session of
    /// theirs ends at once. What they created in the organisation stays the
    /// organisation's. The last admin of an organisation with other members
    /// cannot be removed (409): make another member `org_admin` first.
    #[oai(
        path = "/:id/members/:user_id",
        method = "delete",
        operation_id = "remove_member"
    )]
    async fn remove_member(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
        user_id: Path<Uuid>,
    ) -> Result<NoContent, ApiError> {
        let departure = organizations::remove_member(
            &state.dependencies.pool,
            &auth.0,
            OrganizationId(id.0),
            UserId(user_id.0),
        )
        .await?;
        state.sessions.mark_revoked(&departure.ended_sessions).await;
        Ok(NoContent::Done)
    }

    /// Leaves the caller's organisation: they become a `user` again (tenant
    /// and super admins keep their role) and every session of theirs ends, this
    /// one included: sign in again. What they created in the organisation
    /// stays the organisation's. The last admin of an organisation with other
    /// members cannot leave (409): make another member `org_admin` first.
    #[oai(
        path = "/:id/leave",
        method = "post",
        operation_id = "leave_organization"
    )]
    async fn leave(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<NoContent, ApiError> {
        let departure =
            organizations::leave(&state.dependencies.pool, &auth.0, OrganizationId(id.0)).await?;
        state.sessions.mark_revoked(&departure.ended_sessions).await;
        Ok(NoContent::Done)
    }
}
