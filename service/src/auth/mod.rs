//! Authentication: passwords, tokens, sessions, and the bearer security scheme
//! that turns an `Authorization: Bearer` header into a typed [`Caller`].

pub mod password;
pub mod sessions;
pub mod tokens;

use accunode_core::domain::{Caller, Role};
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use crate::error::ApiError;
use crate::startup::AppState;

/// A signed-in caller: an access token (JWT, HS256) from `POST /api/v1/auth/login`
/// or `/refresh-token`, of a session that has not ended.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "authenticate")]
pub struct BearerAuth(pub Caller);

async fn authenticate(request: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = request
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("application state missing from the request"))?;
    Ok(state.sessions.caller(&bearer.token).await?)
}

impl BearerAuth {
    /// The caller, when their role is one of `roles`; 403 otherwise.
    pub fn require(&self, roles: &[Role]) -> Result<&Caller, ApiError> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "insufficient_role",
                format!(
                    "This operation needs the role {}; you are {}.",
                    roles
                        .iter()
                        .map(|role| role.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    self.0.role
                ),
            ))
        }
    }
}
