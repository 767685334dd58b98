//! `/api/v1/users`: the caller's profile and organisations, and the
//! deactivation of users by the administrators of their scope.

use accunode_core::domain::UserId;
use accunode_core::domain::organizations;
use accunode_core::domain::users::{self, ProfileChanges};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use super::shared::{Organization, UserProfile, clean_name};
use crate::auth::BearerAuth;
use crate::body::{JsonBody, Problems, Validate};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Default)]
pub struct UsersApi;

impl UsersApi {
    async fn set_active(
        state: &AppState,
        auth: &BearerAuth,
        user: Uuid,
        active: bool,
    ) -> Result<Json<UserProfile>, ApiError> {
        let (profile, ended) =
            users::set_active(&state.dependencies.pool, &auth.0, UserId(user), active).await?;
        state.sessions.mark_revoked(&ended).await;
        Ok(Json(profile.into()))
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

#[OpenApi(prefix_path = "/api/v1/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// The caller's profile.
    #[oai(path = "/profile", method = "get", operation_id = "get_profile")]
    async fn get_profile(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
    ) -> Result<Json<UserProfile>, ApiError> {
        let profile = users::profile(&state.dependencies.pool, &auth.0).await?;
        Ok(Json(profile.into()))
    }

    /// Changes the caller's names.
    #[oai(path = "/profile", method = "put", operation_id = "update_profile")]
    async fn update_profile(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<UpdateProfileRequest>,
    ) -> Result<Json<UserProfile>, ApiError> {
        let request = body.0;
        let changes = ProfileChanges {
            first_name: request.first_name.as_deref().map(clean_name),
            last_name: request.last_name.as_deref().map(clean_name),
        };
        let profile = users::update_profile(&state.dependencies.pool, &auth.0, &changes).await?;
        Ok(Json(profile.into()))
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
        let organizations = organizations::of_caller(&state.dependencies.pool, &auth.0).await?;
        Ok(Json(
            organizations.into_iter().map(Organization::from).collect(),
        ))
    }

    /// Deactivates a user: they cannot sign in (sign-in answers as for a
    /// wrong password) and every session of theirs ends at once. Super admins
    /// may deactivate anyone; the managers of an organisation its org members
    /// and org admins. Others' users answer 404; nobody deactivates themselves.
    #[oai(
        path = "/:user_id/deactivate",
        method = "post",
        operation_id = "deactivate_user"
    )]
    async fn deactivate(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        user_id: Path<Uuid>,
    ) -> Result<Json<UserProfile>, ApiError> {
        Self::set_active(&state, &auth, user_id.0, false).await
    }

    /// Lets a deactivated user sign in again (the same administrators as
    /// deactivation).
    #[oai(
        path = "/:user_id/reactivate",
        method = "post",
        operation_id = "reactivate_user"
    )]
    async fn reactivate(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        user_id: Path<Uuid>,
    ) -> Result<Json<UserProfile>, ApiError> {
        Self::set_active(&state, &auth, user_id.0, true).await
    }
}
