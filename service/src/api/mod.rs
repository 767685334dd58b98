//! The OpenAPI operations, one `#[OpenApi]` impl per resource, combined in [`service`].
//!
//! Handlers do HTTP only: parse, call `accunode_core::domain` (where every SQL
//! query lives), map errors. Resource modules never import each other; what
//! two of them need is in `shared`.

mod auth;
mod companies;
mod document;
mod health;
mod jobs;
mod models;
mod organizations;
mod predictions;
mod shared;
mod users;

use poem_openapi::{OpenApiService, Tags};

pub use auth::AuthApi;
pub use companies::CompaniesApi;
pub use health::{HealthApi, ops_health};
pub use jobs::JobsApi;
pub use models::ModelsApi;
pub use organizations::OrganizationsApi;
pub use predictions::{BulkUploadApi, PredictionsApi};
pub use users::UsersApi;

/// Tags group operations in the document and in generated clients.
#[derive(Tags)]
pub enum ApiTags {
    /// Registration, email verification, sign-in, tokens, sign-out, passwords.
    Auth,
    /// The caller's profile and organisations.
    Users,
    /// Organisations (tenants): membership, join tokens, whitelists, global data.
    Organizations,
    /// Companies, within the caller's scopes.
    Companies,
    /// Annual and quarterly default predictions, one at a time or by file.
    Predictions,
    /// Bulk scoring jobs: status, cancel, row errors, results.
    Jobs,
    /// Liveness and dependency state, for load balancers and operators.
    Health,
    /// The model bundles serving predictions.
    Models,
}

/// Every resource's operations, in the order the document lists their tags.
pub type Apis = (
    AuthApi,
    UsersApi,
    OrganizationsApi,
    CompaniesApi,
    PredictionsApi,
    BulkUploadApi,
    JobsApi,
    HealthApi,
    ModelsApi,
);

/// The document served at `/openapi.json` (see [`document`]).
pub fn served_document() -> String {
    document::with_request_string_patterns(&service().spec())
}

/// Every resource's operations, with the document's metadata.
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(Apis::default(), "AccuNode API", env!("CARGO_PKG_VERSION")).description(
        "Scores the probability that a company defaults, from its financial ratios, \
         for many organisations at once.\n\n\
         Sign in with `POST /api/v1/auth/login` and send the access token as \
         `Authorization: Bearer <token>`. Every error is a JSON body \
         `{error, message, details[]}`; validation failures (422) name each field. \
         Requests are rate limited per user (and per client address for `/auth`): \
         every answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and \
         `X-RateLimit-Reset`, and a 429 carries `Retry-After`. GET answers carry an \
         `ETag`; send it back as `If-None-Match` to get 304 when nothing changed.",
    )
}
