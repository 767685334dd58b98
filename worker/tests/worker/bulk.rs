//! The worker binary scoring bulk jobs on real PostgreSQL, Redis and moto's S3
//! and CloudWatch, under faults: a 100,000-row job whose workers are SIGKILLed
//! at random points ten times, a Redis restart, a PostgreSQL outage, a lost
//! read, a SIGTERM mid-job, each ending with exactly one outcome per row — none
//! missing, none written twice; a chunk that keeps failing is dead-lettered;
//! the metrics the stack's alarms read reach CloudWatch with the Stack dimension.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use accunode_core::config::UploadLocation;
use accunode_core::domain::bulk::{self, JobStatus, NewJob, queue};
use accunode_core::domain::{Caller, JobId, Role, SessionId, UserId};
use accunode_core::scoring::{Bundle, ModelKind};
use accunode_core::uploads::UploadStore;
use accunode_testkit::{
    RedisServer, SpawnedBinary, TestDatabase, aws_endpoint_url, create_bucket, models_dir, test_env,
};
use sqlx::PgPool;

const WORKER: &str = env!("CARGO_BIN_EXE_accunode-worker");
const CHUNK_ROWS: usize = 2_000;

/// A database, a Redis and a bucket of one test's own, and the environment
/// that points a worker at them.
struct Rig {
    database: TestDatabase,
    pool: PgPool,
    redis: RedisServer,
    bucket: String,
    env: Vec<(String, String)>,
    workdir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let database = TestDatabase::create().await;
        let pool = PgPool::connect(&database.url).await.unwrap();
        accunode_core::db::migrate(&pool).await.expect("migrate");
        let redis = RedisServer::start().await;
        let bucket = create_bucket().await;
        let env = worker_env(&database.url, &redis.url(), &bucket);
        Self {
            database,
            pool,
            redis,
            bucket,
            env,
            workdir: tempfile::tempdir().unwrap(),
        }
    }

    /// A job of `rows` annual rows (every 997th with a bad ratio) for a new
    /// user, stored and queued as the API would.
    async fn job(&self, rows: usize) -> JobId {
        self.job_scored_by(rows, None).await
    }

    /// [`Rig::job`], recorded as scored by bundle version `version` when given.
    async fn job_scored_by(&self, rows: usize, version: Option<&str>) -> JobId {
        let user: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO users (email, password_hash) VALUES ('faults@example.com', 'x') RETURNING id",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap();
        let caller = Caller {
            user_id: UserId(user),
            session_id: SessionId(uuid::Uuid::new_v4()),
            email: "faults@example.com".into(),
            role: Role::User,
            organization_id: None,
            organization_global_access: false,
        };
        let header = "company_symbol,company_name,reporting_year,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets\n";
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(header.as_bytes()).unwrap();
        let mut offset = header.len() as i64;
        let mut offsets = Vec::new();
        for row in 0..rows {
            if row % CHUNK_ROWS == 0 {
                offsets.push(offset);
            }
            let ratio = if row % 997 == 0 {
                "bad".to_owned()
            } else {
                format!("{}", (row % 100) as f64 * 0.9)
            };
            let line = format!(
                "S{row},Company {row},2020,{ratio},{},{},{},{}\n",
                row % 7,
                (row % 50) as f64 - 20.0,
                row % 30,
                (row % 40) as f64 - 10.0
            );
            file.write_all(line.as_bytes()).unwrap();
            offset += line.len() as i64;
        }
        offsets.push(offset);
        file.flush().unwrap();
        let location: UploadLocation = format!("s3://{}/uploads", self.bucket).parse().unwrap();
        let store =
            UploadStore::connect(location, Some(&aws_endpoint_url()), Some("us-east-1")).await;
        let id = JobId(uuid::Uuid::new_v4());
        let key = store.key_for(id);
        store.put_file(&key, file.path()).await.unwrap();
        let bundle = Bundle::load(&models_dir().join("accunode-v1-annual")).unwrap();
        let (job, _) = bulk::create(
            &self.pool,
            &caller,
            &NewJob {
                id,
                kind: ModelKind::Annual,
                file_name: "faults.csv".into(),
                object_key: key,
                columns: header.trim().split(',').map(str::to_owned).collect(),
                total_rows: rows as i32,
                chunk_rows: CHUNK_ROWS as i32,
                chunk_offsets: offsets,
                model_id: bundle.id().into(),
                model_version: version.unwrap_or(bundle.version()).into(),
                idempotency_key: None,
                repeats: Vec::new(),
            },
        )
        .await
        .unwrap();
        let mut connection = self.redis_connection().await;
        queue::enqueue(&mut connection, &job).await.unwrap();
        id
    }

    async fn redis_connection(&self) -> redis::aio::ConnectionManager {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap()
    }

    /// A worker, once it says it has started.
    async fn worker(&self) -> SpawnedBinary {
        let mut worker = self.spawn();
        worker
            .wait_for_log("worker started", Duration::from_secs(30))
            .await;
        worker
    }

    fn spawn(&self) -> SpawnedBinary {
        SpawnedBinary::spawn(Path::new(WORKER), &[], &self.env, self.workdir.path())
    }
}

fn worker_env(database: &str, redis: &str, bucket: &str) -> Vec<(String, String)> {
    let mut env = test_env(database, redis);
    env.extend(
        [
            ("BULK_UPLOAD_PATH", format!("s3://{bucket}/uploads")),
            ("AWS_ENDPOINT_URL", aws_endpoint_url()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("WORKER_CONCURRENCY", "2".to_owned()),
        ]
        .map(|(key, value)| (key.to_owned(), value)),
    );
    env
}

/// The job once its first chunk is committed.
async fn first_chunk_committed(pool: &PgPool, id: JobId) -> bulk::Job {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = bulk::find(pool, id).await.unwrap().unwrap();
        if job.chunks_done > 0 {
            return job;
        }
        assert!(Instant::now() < deadline, "no chunk was committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The job once it has ended, within `limit`.
async fn finished(pool: &PgPool, id: JobId, limit: Duration) -> bulk::Job {
    let deadline = Instant::now() + limit;
    loop {
        let job = bulk::find(pool, id).await.unwrap().unwrap();
        if !job.status.is_running() {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not finish: {} of {} rows",
            job.processed_rows,
            job.total_rows
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the job to end and checks that every row has exactly one outcome.
async fn assert_complete_exactly_once(pool: &PgPool, id: JobId, rows: i64) {
    let job = finished(pool, id, Duration::from_secs(300)).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(i64::from(job.processed_rows), rows);
    let (outcomes, distinct, predictions, errors): (i64, i64, i64, i64) = sqlx::query_as(
        "WITH outcome AS (SELECT bulk_row AS row FROM annual_predictions WHERE bulk_job_id = $1 \
                          UNION ALL SELECT row_number FROM bulk_job_errors WHERE job_id = $1) \
         SELECT (SELECT count(*) FROM outcome), (SELECT count(DISTINCT row) FROM outcome), \
                (SELECT count(*) FROM annual_predictions WHERE bulk_job_id = $1), \
                (SELECT count(*) FROM bulk_job_errors WHERE job_id = $1)",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((outcomes, distinct), (rows, rows), "one outcome per row");
    assert_eq!(predictions, i64::from(job.succeeded_rows));
    assert_eq!(errors, i64::from(job.failed_rows));
    assert_eq!(errors, (rows - 1) / 997 + 1, "only the bad rows failed");
}

#[tokio::test]
async fn a_job_completes_exactly_once_through_ten_sigkilled_workers() {
    let rig = Rig::start().await;
    let rows = 100_000;
    let id = rig.job(rows).await;
    // A fixed-seed generator: random-looking kill points, the same every run.
    let mut seed: u64 = 0x5eed_1234_abcd_ef01;
    let mut kills = 0;
    while kills < 10 {
        let mut worker = rig.worker().await;
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(200 + (seed >> 33) % 1500)).await;
        worker.signal("KILL");
        worker.wait(Duration::from_secs(10)).await;
        kills += 1;
        let job = bulk::find(&rig.pool, id).await.unwrap().unwrap();
        if !job.status.is_running() {
            break;
        }
    }
    assert_eq!(kills, 10, "the job outlived ten kills");
    let _survivor = rig.worker().await;
    assert_complete_exactly_once(&rig.pool, id, rows as i64).await;
}

#[tokio::test]
async fn a_job_completes_exactly_once_across_a_redis_restart() {
    let mut rig = Rig::start().await;
    let rows = 30_000;
    let id = rig.job(rows).await;
    let _worker = rig.worker().await;
    let job = first_chunk_committed(&rig.pool, id).await;
    assert!(job.status.is_running(), "Redis must stop mid-job: {job:?}");
    let port = rig.redis.port;
    rig.redis.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _restarted = RedisServer::start_on(port).await;
    assert_complete_exactly_once(&rig.pool, id, rows as i64).await;
}

#[tokio::test]
async fn a_job_completes_exactly_once_across_a_postgres_outage() {
    let rig = Rig::start().await;
    let rows = 30_000;
    let id = rig.job(rows).await;
    let _worker = rig.worker().await;
    let job = first_chunk_committed(&rig.pool, id).await;
    assert!(
        job.status.is_running(),
        "PostgreSQL must go away mid-job: {job:?}"
    );
    rig.pool.close().await;
    rig.database.refuse_connections().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.database.allow_connections().await;
    let pool = PgPool::connect(&rig.database.url).await.unwrap();
    assert_complete_exactly_once(&pool, id, rows as i64).await;
}

#[tokio::test]
async fn a_chunk_that_keeps_failing_is_dead_lettered_and_fails_its_job_with_the_reason() {
    let mut rig = Rig::start().await;
    // Recorded as scored by a bundle version no folder holds: every attempt fails.
    let id = rig.job_scored_by(3_000, Some("9.9.9")).await;
    rig.env.push(("WORKER_MAX_DELIVERIES".into(), "2".into()));
    let _worker = rig.worker().await;
    let job = finished(&rig.pool, id, Duration::from_secs(60)).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let reason = job.error.unwrap();
    assert!(
        reason.contains("failed 2 times") && reason.contains("9.9.9"),
        "{reason}"
    );
    assert_eq!(
        (job.processed_rows, job.succeeded_rows, job.failed_rows),
        (0, 0, 0)
    );
    let mut connection = rig.redis_connection().await;
    let dead: usize = redis::cmd("XLEN")
        .arg(queue::DEAD_LETTER_STREAM)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(dead >= 1, "the chunk is in the dead-letter stream");
    // The job's other chunk is dropped once a worker sees the job failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: usize = redis::cmd("XLEN")
            .arg(queue::STREAM)
            .query_async(&mut connection)
            .await
            .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} entries of the failed job are still queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_entry_read_for_a_worker_whose_answer_was_lost_is_taken_again() {
    let rig = Rig::start().await;
    let mut worker = rig.spawn();
    let started = worker
        .wait_for_log("worker started", Duration::from_secs(30))
        .await;
    let consumer = started["worker_id"].as_str().unwrap().to_owned();
    let id = rig.job(6_000).await;
    // Delivered to the worker's consumer, as a read whose answer never arrived.
    let mut connection = rig.redis_connection().await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(queue::GROUP)
        .arg(&consumer)
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(queue::STREAM)
        .arg(">")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_complete_exactly_once(&rig.pool, id, 6_000).await;
}

#[tokio::test]
async fn sigterm_finishes_the_chunks_being_scored_and_a_replacement_completes_the_job() {
    let rig = Rig::start().await;
    let rows = 40_000;
    let id = rig.job(rows).await;
    let mut worker = rig.spawn();
    let started = worker
        .wait_for_log("worker started", Duration::from_secs(30))
        .await;
    let consumer = started["worker_id"].as_str().unwrap().to_owned();
    first_chunk_committed(&rig.pool, id).await;
    worker.terminate();
    let status = worker.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "a clean stop: {status:?}");
    let job = bulk::find(&rig.pool, id).await.unwrap().unwrap();
    assert!(job.status.is_running(), "stopped mid-job: {job:?}");
    // Each slot finished and acknowledged the chunk it held: nothing is left
    // pending under the stopped worker for others to wait for.
    let mut connection = rig.redis_connection().await;
    let held: redis::Value = redis::cmd("XPENDING")
        .arg(queue::STREAM)
        .arg(queue::GROUP)
        .arg("-")
        .arg("+")
        .arg(10)
        .arg(&consumer)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        held,
        redis::Value::Array(vec![]),
        "chunks left held by the stopped worker"
    );
    let _replacement = rig.worker().await;
    assert_complete_exactly_once(&rig.pool, id, rows as i64).await;
}

#[tokio::test]
async fn the_metrics_the_alarms_read_reach_cloudwatch_with_the_stack_dimension() {
    use accunode_core::published_metrics::{STACK_DIMENSION, WORKER_METRICS, WORKER_NAMESPACE};
    let mut rig = Rig::start().await;
    let id = rig.job(20_000).await;
    let stack = format!("metrics-{}", uuid::Uuid::new_v4().simple());
    rig.env.push(("CLOUDWATCH_METRICS_SECS".into(), "1".into()));
    rig.env.push(("STACK_NAME".into(), stack.clone()));
    let _worker = rig.worker().await;
    assert_complete_exactly_once(&rig.pool, id, 20_000).await;

    let config = accunode_core::aws::sdk_config(Some(&aws_endpoint_url()), Some("us-east-1")).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let ours = aws_sdk_cloudwatch::types::DimensionFilter::builder()
        .name(STACK_DIMENSION)
        .value(&stack)
        .build();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = cloudwatch
            .list_metrics()
            .namespace(WORKER_NAMESPACE)
            .dimensions(ours.clone())
            .send()
            .await
            .unwrap();
        let mut names: Vec<&str> = listed
            .metrics()
            .iter()
            .filter_map(|m| m.metric_name())
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut expected: Vec<&str> = WORKER_METRICS.iter().map(|m| m.name).collect();
        expected.sort_unstable();
        if names == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published {names:?}, the alarms read {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every committed chunk counted once, the last ones with the next publication.
    let expected = (20_000 / CHUNK_ROWS) as f64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = std::time::SystemTime::now();
        let processed = cloudwatch
            .get_metric_statistics()
            .namespace(WORKER_NAMESPACE)
            .metric_name("TasksProcessed")
            .dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name(STACK_DIMENSION)
                    .value(&stack)
                    .build(),
            )
            .start_time((now - Duration::from_secs(600)).into())
            .end_time((now + Duration::from_secs(60)).into())
            .period(60)
            .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
            .send()
            .await
            .unwrap();
        let chunks: f64 = processed.datapoints().iter().filter_map(|p| p.sum()).sum();
        assert!(
            chunks <= expected,
            "{chunks} chunks counted, {expected} committed"
        );
        if chunks == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{chunks} chunks counted, {expected} committed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
