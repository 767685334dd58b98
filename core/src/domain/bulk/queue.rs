//! The bulk queue in Redis: one stream entry per chunk (`job`, `chunk`,
//! `enqueued_ms`), read by the workers' consumer group, at least once.
//!
//! Entries are small; the rows stay in the uploads bucket. A worker
//! acknowledges and deletes an entry only after its chunk is committed in
//! PostgreSQL, so the stream's length is the work not yet done. Entries that
//! were delivered too often go to the dead-letter stream.

use redis::aio::ConnectionManager;

use super::Job;
use crate::domain::JobId;

/// The stream of chunk entries.
pub const STREAM: &str = "accunode:bulk:chunks";
/// The workers' consumer group.
pub const GROUP: &str = "accunode-workers";
/// Chunks delivered `WORKER_MAX_DELIVERIES` times, with the reason.
pub const DEAD_LETTER_STREAM: &str = "accunode:bulk:dead-letter";

/// One chunk to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMessage {
    pub job: JobId,
    pub chunk: i32,
    /// When the API queued it (milliseconds since the epoch).
    pub enqueued_ms: i64,
}

impl ChunkMessage {
    /// Reads an entry's fields (`get` gives a field's value by name); `None`
    /// for an entry this code did not write.
    pub fn from_fields(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            job: JobId(get("job")?.parse().ok()?),
            chunk: get("chunk")?.parse().ok()?,
            enqueued_ms: get("enqueued_ms")?.parse().ok()?,
        })
    }
}

/// Creates the stream and the group when missing (from the stream's start, so
/// entries added before the group existed are delivered too).
pub async fn ensure_group(redis: &mut ConnectionManager) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(redis)
        .await;
    match created {
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Puts every chunk of `job` on the queue, in one round trip. Safe to repeat:
/// a chunk delivered twice is committed once.
pub async fn enqueue(redis: &mut ConnectionManager, job: &Job) -> redis::RedisResult<()> {
    ensure_group(redis).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut pipe = redis::pipe();
    for chunk in 0..job.chunk_count() {
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("job")
            .arg(job.id.to_string())
            .arg("chunk")
            .arg(chunk)
            .arg("enqueued_ms")
            .arg(now)
            .ignore();
    }
    pipe.query_async(redis).await
}

/// Chunks waiting or being scored: the stream's length (done entries are deleted).
pub async fn length(redis: &mut ConnectionManager) -> redis::RedisResult<u64> {
    redis::cmd("XLEN").arg(STREAM).query_async(redis).await
}
