//! Typed ids: a user's id cannot be passed where an organisation's is meant.
//!
//! Each is a UUID underneath, stored as `uuid` and serialised as its string, so
//! rows, cached callers and JSON look exactly as they would with bare UUIDs.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A user (`users.id`).
    UserId
);
uuid_id!(
    /// An organisation, a tenant (`organizations.id`).
    OrganizationId
);
uuid_id!(
    /// A company (`companies.id`).
    CompanyId
);
uuid_id!(
    /// An annual or a quarterly prediction (`annual_predictions.id`, `quarterly_predictions.id`).
    PredictionId
);
uuid_id!(
    /// A sign-in session, one refresh-token family (`sessions.id`).
    SessionId
);
uuid_id!(
    /// A bulk scoring job (`bulk_jobs.id`).
    JobId
);
