//! The OpenAPI operations, one `#[OpenApi]` impl per resource, combined in [`service`].

mod health;
mod models;

use poem_openapi::{OpenApiService, Tags};

pub use health::HealthApi;
pub use models::ModelsApi;

/// Tags group operations in the document and in generated clients.
#[derive(Tags)]
pub enum ApiTags {
    /// Liveness and dependency state, for load balancers and operators.
    Health,
    /// The model bundles serving predictions.
    Models,
}

/// Every resource's operations, with the document's metadata.
pub fn service() -> OpenApiService<(HealthApi, ModelsApi), ()> {
    OpenApiService::new(
        (HealthApi, ModelsApi),
        "AccuNode API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Scores the probability that a company defaults, from its financial ratios, \
         for many organisations at once.",
    )
}
