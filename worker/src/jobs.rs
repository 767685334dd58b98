//! Bulk scoring: chunks taken from the Redis stream, scored and committed.
//!
//! The job flow: the API stores an accepted file in the uploads bucket,
//! records the job and adds one stream entry per chunk (a row range). Each of
//! the worker's `WORKER_CONCURRENCY` slots reads `WORKER_PREFETCH` entries at a
//! time through the consumer group, fetches its chunk's byte range, validates
//! and scores the rows with the bundle recorded on the job, and commits them
//! (see `accunode_core::domain::bulk::commit_chunk`); only then is the entry
//! acknowledged and deleted. So a chunk is delivered at least once and written
//! exactly once.
//!
//! Recovery, without an operator:
//! - a chunk that fails (PostgreSQL or S3 down, …) is retried by the same slot
//!   after a back-off, each retry counted as a delivery; after
//!   `WORKER_MAX_DELIVERIES` it goes to the dead-letter stream and its job
//!   fails with the reason;
//! - a chunk running past `WORKER_CHUNK_TIME_LIMIT_SECS` is abandoned, and one
//!   idle that long in another live worker's hands is claimed (`XAUTOCLAIM`);
//! - the chunks of a worker whose heartbeat expired (killed, lost) are claimed
//!   by the sweep at once, so a dead worker's work resumes within a minute;
//! - a job recorded but never queued (the API stopped in between) is queued.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use accunode_core::cache;
use accunode_core::config::RedisSettings;
use accunode_core::domain::bulk::queue::{self, ChunkMessage, DEAD_LETTER_STREAM, GROUP, STREAM};
use accunode_core::domain::bulk::rows::{self, Columns};
use accunode_core::domain::bulk::{self, ChunkCommit, ChunkTiming};
use accunode_core::scoring::registry::PinnedBundles;
use accunode_core::uploads::UploadStore;
use anyhow::Context;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, watch};

use crate::HEARTBEAT_KEY_PREFIX;
use crate::metrics::WorkerMetrics;

/// How long a read waits for new entries before the slot looks around again.
const READ_BLOCK: Duration = Duration::from_millis(1000);
/// How often the sweep looks for dead workers' chunks and unqueued jobs.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// An entry this worker holds, idle this long and scored by no slot, was read
/// but never received.
const LOST_READ_IDLE: Duration = Duration::from_secs(10);
/// A job recorded this long ago without being queued is queued by the sweep.
const UNQUEUED_GRACE_SECS: i64 = 30;

/// What the slots share.
pub struct JobRunner {
    pub pool: PgPool,
    /// Each slot and the sweep open a connection of their own: a blocking read
    /// on a shared connection holds up every other command on it.
    pub redis: RedisSettings,
    pub store: UploadStore,
    pub bundles: PinnedBundles,
    pub worker_id: Arc<str>,
    pub concurrency: u32,
    pub prefetch: u32,
    pub chunk_time_limit: Duration,
    pub max_deliveries: u32,
    pub metrics: Arc<WorkerMetrics>,
    /// Entries the slots are scoring now.
    pub in_progress: Mutex<HashSet<String>>,
}

/// Entries the sweep claimed, for the slots to score.
type Claimed = Arc<Mutex<mpsc::Receiver<StreamId>>>;

/// A slot's own connection: waits longer than a blocking read takes.
async fn connect_own(
    settings: &RedisSettings,
    stop: &watch::Receiver<bool>,
) -> Option<ConnectionManager> {
    loop {
        match cache::connect_with_response_timeout(settings, READ_BLOCK + Duration::from_secs(4))
            .await
        {
            Ok(connection) => return Some(connection),
            Err(error) => {
                tracing::warn!(%error, "cannot connect to Redis; retrying");
                if sleep_or_stop(Duration::from_secs(1), stop).await {
                    return None;
                }
            }
        }
    }
}

impl JobRunner {
    /// Runs the slots and the sweep until `stop` turns true; each slot finishes
    /// the chunk it is scoring first.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let Some(mut redis) = connect_own(&self.redis, &stop).await else {
            return Ok(());
        };
        // Redis may be starting: keep trying rather than give up on the queue.
        while let Err(error) = queue::ensure_group(&mut redis).await {
            tracing::warn!(%error, "cannot create the queue's consumer group; retrying");
            if sleep_or_stop(Duration::from_secs(1), &stop).await {
                return Ok(());
            }
        }
        let (claimed_tx, claimed_rx) = mpsc::channel(64);
        let claimed: Claimed = Arc::new(Mutex::new(claimed_rx));
        let mut tasks = Vec::new();
        for _ in 0..self.concurrency {
            tasks.push(tokio::spawn(
                self.clone().slot(claimed.clone(), stop.clone()),
            ));
        }
        tasks.push(tokio::spawn(self.clone().sweep(claimed_tx, stop.clone())));
        for task in tasks {
            task.await.context("a job slot panicked")?;
        }
        Ok(())
    }

    async fn slot(self: Arc<Self>, claimed: Claimed, stop: watch::Receiver<bool>) {
        let Some(mut redis) = connect_own(&self.redis, &stop).await else {
            return;
        };
        while !*stop.borrow() {
            let entries = match self.next_entries(&mut redis, &claimed).await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the queue; retrying");
                    if sleep_or_stop(Duration::from_secs(1), &stop).await {
                        return;
                    }
                    continue;
                }
            };
            // Entries read are finished even when a stop came meanwhile: the
            // read may have been answered after the stop (at most
            // WORKER_PREFETCH entries a slot).
            for entry in entries {
                let id = entry.id.clone();
                self.in_progress.lock().await.insert(id.clone());
                self.handle(&mut redis, entry, &stop).await;
                self.in_progress.lock().await.remove(&id);
            }
        }
    }

    /// Claimed entries first, then entries idle past the time limit in a live
    /// worker's hands, then new ones.
    async fn next_entries(
        &self,
        redis: &mut ConnectionManager,
        claimed: &Claimed,
    ) -> redis::RedisResult<Vec<StreamId>> {
        if let Ok(entry) = claimed.lock().await.try_recv() {
            return Ok(vec![entry]);
        }
        let stale: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(STREAM)
            .arg(GROUP)
            .arg(&*self.worker_id)
            .arg(self.chunk_time_limit.as_millis() as u64)
            .arg("0")
            .arg("COUNT")
            .arg(self.prefetch)
            .query_async(redis)
            .await?;
        if !stale.claimed.is_empty() {
            return Ok(stale.claimed);
        }
        let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&*self.worker_id)
            .arg("COUNT")
            .arg(self.prefetch)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .query_async(redis)
            .await?;
        Ok(read
            .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default())
    }

    /// Scores one entry's chunk, retrying failures until it is committed, no
    /// longer needed, or dead-lettered.
    async fn handle(
        &self,
        redis: &mut ConnectionManager,
        entry: StreamId,
        stop: &watch::Receiver<bool>,
    ) {
        let Some(message) = ChunkMessage::from_fields(|name| entry.get::<String>(name)) else {
            tracing::warn!(id = %entry.id, "dropping a queue entry this worker did not write");
            self.acknowledge(redis, &entry.id).await;
            return;
        };
        let taken = Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            let deliveries = match self.deliveries(redis, &entry.id).await {
                Ok(Some(deliveries)) => deliveries,
                // Acknowledged by another delivery meanwhile: nothing to do.
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the entry's deliveries; retrying");
                    if sleep_or_stop(backoff, stop).await {
                        return;
                    }
                    continue;
                }
            };
            if deliveries > u64::from(self.max_deliveries) {
                self.dead_letter(redis, &entry.id, message, deliveries)
                    .await;
                return;
            }
            let attempt =
                tokio::time::timeout(self.chunk_time_limit, self.process(message, taken)).await;
            let error = match attempt {
                Ok(Ok(())) => {
                    self.acknowledge(redis, &entry.id).await;
                    return;
                }
                Ok(Err(error)) => format!("{error:#}"),
                Err(_) => format!(
                    "the chunk ran past its time limit of {} s",
                    self.chunk_time_limit.as_secs()
                ),
            };
            self.metrics.failed();
            tracing::warn!(job = %message.job, chunk = message.chunk, deliveries, %error, "chunk failed; retrying");
            let _: redis::RedisResult<()> = redis::cmd("HSET")
                .arg(last_error_key())
                .arg(format!("{}:{}", message.job, message.chunk))
                .arg(&error)
                .query_async(redis)
                .await;
            if sleep_or_stop(backoff, stop).await {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
            // Claiming it again counts the retry as a delivery.
            let reclaimed: redis::RedisResult<Vec<StreamId>> = redis::cmd("XCLAIM")
                .arg(STREAM)
                .arg(GROUP)
                .arg(&*self.worker_id)
                .arg(0)
                .arg(&entry.id)
                .query_async(redis)
                .await
                .map(|reply: redis::streams::StreamClaimReply| reply.ids);
            if let Ok(ids) = reclaimed
                && ids.is_empty()
            {
                return;
            }
        }
    }

    /// How often `id` was delivered; `None` when it is no longer pending.
    async fn deliveries(
        &self,
        redis: &mut ConnectionManager,
        id: &str,
    ) -> redis::RedisResult<Option<u64>> {
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(STREAM)
            .arg(GROUP)
            .arg(id)
            .arg(id)
            .arg(1)
            .query_async(redis)
            .await?;
        Ok(pending
            .ids
            .first()
            .map(|entry| entry.times_delivered as u64))
    }

    /// Scores and commits one chunk.
    async fn process(&self, message: ChunkMessage, taken: Instant) -> anyhow::Result<()> {
        let Some(job) = bulk::find(&self.pool, message.job).await? else {
            tracing::warn!(job = %message.job, "no such job; dropping its chunk");
            return Ok(());
        };
        if !job.status.is_running() {
            return Ok(());
        }
        let chunk = usize::try_from(message.chunk).unwrap_or(usize::MAX);
        let Some((start, end, first_row)) = job.chunk_range(chunk) else {
            tracing::warn!(job = %job.id, chunk, "the job has no such chunk; dropping it");
            return Ok(());
        };
        bulk::start(&self.pool, job.id).await?;
        let bundle = self
            .bundles
            .get(job.kind, &job.model_id, &job.model_version)
            .await
            .with_context(|| format!("loading bundle {} {}", job.model_id, job.model_version))?;
        let data = self
            .store
            .get_range(&job.object_key, start, end)
            .await
            .context("reading the chunk from the uploads bucket")?;
        let columns =
            Columns::from_stored(job.kind, &job.columns).context("the job's stored header")?;
        let scoring_bundle = bundle.clone();
        let scored = tokio::task::spawn_blocking(move || {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(false)
                .from_reader(data.as_ref());
            let mut records = Vec::new();
            let mut row_number = first_row;
            for record in reader.records() {
                let record = record?;
                // Blank lines are not rows (the API counted rows the same way).
                if record.len() == 1 && record[0].trim().is_empty() {
                    continue;
                }
                records.push((row_number, record));
                row_number += 1;
            }
            anyhow::Ok(rows::score_rows(&scoring_bundle, &columns, records)?)
        })
        .await
        .context("the scoring task panicked")??;
        let components: Vec<String> = bundle.component_names().map(str::to_owned).collect();
        let wait = Duration::from_millis(
            u64::try_from(chrono::Utc::now().timestamp_millis() - message.enqueued_ms).unwrap_or(0),
        )
        .saturating_sub(taken.elapsed());
        let timing = ChunkTiming {
            worker_id: self.worker_id.to_string(),
            queued_ms: wait.as_millis() as i64,
            duration_ms: taken.elapsed().as_millis() as i64,
        };
        match bulk::commit_chunk(
            &self.pool,
            &job,
            message.chunk,
            &scored,
            &components,
            &timing,
        )
        .await?
        {
            ChunkCommit::Committed { succeeded, failed } => {
                self.metrics
                    .committed(succeeded as u64, failed as u64, taken.elapsed(), wait);
                tracing::debug!(job = %job.id, chunk, succeeded, failed, "chunk committed");
            }
            ChunkCommit::AlreadyDone => {
                tracing::info!(job = %job.id, chunk, "chunk was committed by an earlier delivery");
            }
            ChunkCommit::JobStopped(status) => {
                tracing::info!(job = %job.id, chunk, %status, "job stopped; chunk not written");
            }
        }
        Ok(())
    }

    /// Acknowledges and deletes an entry: done entries leave the stream, so
    /// its length is the work left.
    async fn acknowledge(&self, redis: &mut ConnectionManager, id: &str) {
        let done: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(STREAM)
            .arg(GROUP)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(STREAM)
            .arg(id)
            .ignore()
            .query_async(redis)
            .await;
        if let Err(error) = done {
            // The chunk is committed: a redelivery will find it done.
            tracing::warn!(%error, id, "cannot acknowledge a committed chunk");
        }
    }

    /// Moves an entry delivered too often to the dead-letter stream and fails its job.
    async fn dead_letter(
        &self,
        redis: &mut ConnectionManager,
        id: &str,
        message: ChunkMessage,
        deliveries: u64,
    ) {
        let field = format!("{}:{}", message.job, message.chunk);
        let last_error: Option<String> = redis::cmd("HGET")
            .arg(last_error_key())
            .arg(&field)
            .query_async(redis)
            .await
            .unwrap_or(None);
        let rows = match bulk::find(&self.pool, message.job).await {
            Ok(Some(job)) => {
                let first = message.chunk * job.chunk_rows + 1;
                format!(
                    " (rows {first}–{})",
                    (first + job.chunk_rows - 1).min(job.total_rows)
                )
            }
            _ => String::new(),
        };
        let reason = format!(
            "chunk {}{rows} failed {} times; last error: {}",
            message.chunk,
            deliveries - 1,
            last_error.as_deref().unwrap_or("unknown")
        );
        if let Err(error) = bulk::fail(&self.pool, message.job, &reason).await {
            // Not acknowledged: the next delivery tries again.
            tracing::error!(%error, job = %message.job, "cannot fail the job of a dead-lettered chunk");
            return;
        }
        let moved: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(DEAD_LETTER_STREAM)
            .arg("*")
            .arg("job")
            .arg(message.job.to_string())
            .arg("chunk")
            .arg(message.chunk)
            .arg("reason")
            .arg(&reason)
            .ignore()
            .cmd("HDEL")
            .arg(last_error_key())
            .arg(&field)
            .ignore()
            .query_async(redis)
            .await;
        if let Err(error) = moved {
            tracing::warn!(%error, "cannot write the dead-letter entry");
        }
        self.metrics.dead_lettered();
        tracing::error!(job = %message.job, chunk = message.chunk, %reason, "chunk dead-lettered; job failed");
        self.acknowledge(redis, id).await;
    }

    /// Every `SWEEP_INTERVAL`: claims the chunks of workers whose heartbeat is
    /// gone, queues jobs that were never queued, reads the queue's length.
    async fn sweep(self: Arc<Self>, claimed: mpsc::Sender<StreamId>, stop: watch::Receiver<bool>) {
        let Some(mut redis) = connect_own(&self.redis, &stop).await else {
            return;
        };
        loop {
            if sleep_or_stop(SWEEP_INTERVAL, &stop).await {
                return;
            }
            if let Err(error) = self.claim_from_dead_workers(&mut redis, &claimed).await {
                tracing::debug!(%error, "sweep: cannot look for dead workers' chunks");
            }
            if let Err(error) = self.reclaim_lost_reads(&mut redis, &claimed).await {
                tracing::debug!(%error, "sweep: cannot look for entries read but never received");
            }
            match bulk::unqueued(&self.pool, UNQUEUED_GRACE_SECS).await {
                Ok(jobs) => {
                    for job in jobs {
                        if queue::enqueue(&mut redis, &job).await.is_ok() {
                            let _ = bulk::mark_enqueued(&self.pool, job.id).await;
                            tracing::info!(job = %job.id, "queued a job the API recorded but did not queue");
                        }
                    }
                }
                Err(error) => tracing::debug!(%error, "sweep: cannot look for unqueued jobs"),
            }
            if let Ok(length) = queue::length(&mut redis).await {
                self.metrics.queue_length(length);
            }
        }
    }

    /// Entries delivered to this worker that no slot is scoring: a read whose
    /// answer was lost (a time-out, a dropped connection) after Redis had
    /// delivered it. Claimed again, they count as a delivery.
    async fn reclaim_lost_reads(
        &self,
        redis: &mut ConnectionManager,
        claimed: &mpsc::Sender<StreamId>,
    ) -> redis::RedisResult<()> {
        let min_idle = LOST_READ_IDLE.as_millis() as u64;
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(STREAM)
            .arg(GROUP)
            .arg("IDLE")
            .arg(min_idle)
            .arg("-")
            .arg("+")
            .arg(64)
            .arg(&*self.worker_id)
            .query_async(redis)
            .await?;
        for entry in pending.ids {
            if self.in_progress.lock().await.contains(&entry.id) {
                continue;
            }
            let reply: redis::streams::StreamClaimReply = redis::cmd("XCLAIM")
                .arg(STREAM)
                .arg(GROUP)
                .arg(&*self.worker_id)
                .arg(min_idle)
                .arg(&entry.id)
                .query_async(redis)
                .await?;
            for id in reply.ids {
                tracing::info!(id = %id.id, "re-taking an entry whose read was lost");
                if claimed.send(id).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn claim_from_dead_workers(
        &self,
        redis: &mut ConnectionManager,
        claimed: &mpsc::Sender<StreamId>,
    ) -> redis::RedisResult<()> {
        let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(STREAM)
            .arg(GROUP)
            .query_async(redis)
            .await?;
        for consumer in consumers.consumers {
            if consumer.name == *self.worker_id {
                continue;
            }
            let alive: bool = redis::cmd("EXISTS")
                .arg(format!("{HEARTBEAT_KEY_PREFIX}{}", consumer.name))
                .query_async(redis)
                .await?;
            if alive {
                continue;
            }
            if consumer.pending == 0 {
                let _: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(STREAM)
                    .arg(GROUP)
                    .arg(&consumer.name)
                    .query_async(redis)
                    .await;
                continue;
            }
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(STREAM)
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(64)
                .arg(&consumer.name)
                .query_async(redis)
                .await?;
            for entry in pending.ids {
                // Min idle 1 s: an entry another sweep just claimed is left alone.
                let reply: redis::streams::StreamClaimReply = redis::cmd("XCLAIM")
                    .arg(STREAM)
                    .arg(GROUP)
                    .arg(&*self.worker_id)
                    .arg(1000)
                    .arg(&entry.id)
                    .query_async(redis)
                    .await?;
                for id in reply.ids {
                    tracing::info!(from = %consumer.name, id = %id.id, "claimed a chunk of a worker whose heartbeat is gone");
                    if claimed.send(id).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

fn last_error_key() -> &'static str {
    "accunode:bulk:last-errors"
}

/// Sleeps for `duration`; `true` when `stop` turned true meanwhile.
async fn sleep_or_stop(duration: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut watching = stop.clone();
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        _ = watching.wait_for(|stopped| *stopped) => true,
    }
}
