//! Authentication: passwords, tokens, sessions, and the bearer security scheme
//! that turns an `Authorization: Bearer` header into a typed [`Caller`].

pub mod password;
pub mod sessions;
pub mod tokens;

use std::sync::Arc;

use accunode_core::domain::Caller;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use self::sessions::Sessions;
use crate::error::ApiError;

/// A signed-in caller: an access token (JWT, HS256) from `POST /api/v1/auth/login`
/// or `/refresh-token`, of a session that has not ended.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "authenticate")]
pub struct BearerAuth(pub Caller);

async fn authenticate(request: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let sessions = request
        .data::<Arc<Sessions>>()
        .ok_or_else(|| ApiError::internal("the sessions are missing from the request"))?;
    Ok(sessions.caller(&bearer.token).await?)
}
