//! The Redis cache of read predictions (the original design's "frequently accessed
//! predictions, 1 hour TTL").
//!
//! An entry is the response body plus the row's `scope_key`, so a cached read
//! still answers only callers who may see the row. Deleting a prediction, or
//! the company it belongs to, drops its entry; predictions are never changed
//! in place. Redis being down only costs the cache: reads go to PostgreSQL.

use std::time::Duration;

use accunode_core::domain::PredictionId;
use accunode_core::scoring::ModelKind;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct PredictionCache {
    redis: ConnectionManager,
    ttl: Duration,
}

#[derive(Serialize, Deserialize)]
pub struct CachedPrediction {
    pub scope_key: String,
    pub body: serde_json::Value,
}

fn key(kind: ModelKind, id: PredictionId) -> String {
    let kind = match kind {
        ModelKind::Annual => "annual",
        ModelKind::Quarterly => "quarterly",
    };
    format!("accunode:prediction:{kind}:{id}")
}

impl PredictionCache {
    pub fn new(redis: ConnectionManager, ttl: Duration) -> Self {
        Self { redis, ttl }
    }

    pub async fn get(&self, kind: ModelKind, id: PredictionId) -> Option<CachedPrediction> {
        let mut redis = self.redis.clone();
        match redis.get::<_, Option<String>>(key(kind, id)).await {
            Ok(Some(text)) => serde_json::from_str(&text).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "prediction cache unavailable");
                None
            }
        }
    }

    pub async fn put(&self, kind: ModelKind, id: PredictionId, entry: &CachedPrediction) {
        let Ok(text) = serde_json::to_string(entry) else {
            return;
        };
        let mut redis = self.redis.clone();
        if let Err(error) = redis
            .set_ex::<_, _, ()>(key(kind, id), text, self.ttl.as_secs())
            .await
        {
            tracing::warn!(%error, "could not cache a prediction");
        }
    }

    pub async fn forget(&self, kind: ModelKind, ids: &[PredictionId]) {
        if ids.is_empty() {
            return;
        }
        let keys: Vec<String> = ids.iter().map(|id| key(kind, *id)).collect();
        let mut redis = self.redis.clone();
        if let Err(error) = redis.del::<_, ()>(keys).await {
            // Not fatal for correctness of visibility (entries carry their scope),
            // but a deleted prediction may be served until its entry expires.
            tracing::error!(%error, "could not drop cached predictions");
        }
    }
}
