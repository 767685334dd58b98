//! The API's model bundles: which serve, what `/api/v1/models` and `/health`
//! say about them, swapping without a restart (SIGHUP on a folder, polling the
//! model bucket), a failed reload keeping the served bundles, and start-up
//! refusing a bundle of the wrong kind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use accunode_core::config::{Settings, Sources};
use accunode_core::scoring::store::{ModelStore, S3Location};
use accunode_service::startup::Application;
use accunode_testkit::{
    SpawnedBinary, TestDatabase, aws_endpoint_url, create_bucket, models_dir, redis_url, test_env,
    wait_until,
};
use serde_json::Value;

const API: &str = env!("CARGO_BIN_EXE_accunode-api");
const START_TIMEOUT: Duration = Duration::from_secs(30);

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Copies a shipped bundle into `root` (as `id`), with `version`.
fn install(root: &Path, shipped: &str, version: &str) -> PathBuf {
    let target = root.join(shipped);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(models_dir().join(shipped)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    let manifest = target.join("manifest.json");
    let mut json: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    json["version"] = version.into();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    target
}

fn with(env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<_> = env
        .into_iter()
        .filter(|(key, _)| !extra.iter().any(|(k, _)| k == key))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[tokio::test]
async fn models_endpoint_and_health_name_the_bundles_in_service() {
    let database = TestDatabase::create().await;
    let workdir = tempfile::tempdir().unwrap();
    let env = test_env(&database.url, &redis_url());
    let mut api = SpawnedBinary::spawn(Path::new(API), &[], &env, workdir.path());
    let listening = api.wait_for_log("API listening", START_TIMEOUT).await;
    let base = format!("http://{}", listening["address"].as_str().unwrap());

    let models = get_json(&format!("{base}/api/v1/models")).await;
    assert_eq!(models["annual"]["id"], "accunode-v1-annual");
    assert_eq!(models["quarterly"]["id"], "accunode-v1-quarterly");
    let features = models["annual"]["features"].as_array().unwrap();
    assert_eq!(features.len(), 5);
    assert_eq!(features[0]["name"], "long_term_debt_to_total_capital");
    assert_eq!(features[0]["max"], 100.0);
    assert!(features[1].get("max").is_none(), "unbounded: no max");
    assert_eq!(
        models["annual"]["risk_thresholds"]["critical_above_pct"],
        15.0
    );
    assert_eq!(
        models["quarterly"]["components"][0]["type"],
        "binned_logistic"
    );

    let health = get_json(&format!("{base}/health")).await;
    assert_eq!(health["models"]["annual"]["version"], "1.0.0");
    assert_eq!(health["models"]["quarterly"]["id"], "accunode-v1-quarterly");
    api.terminate();
    api.wait(Duration::from_secs(40)).await;
}

#[tokio::test]
async fn sighup_swaps_a_new_version_in_and_a_broken_one_leaves_the_served_bundle() {
    let database = TestDatabase::create().await;
    let workdir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    install(models.path(), "accunode-v1-annual", "1.0.0");
    install(models.path(), "accunode-v1-quarterly", "1.0.0");
    let env = with(
        test_env(&database.url, &redis_url()),
        &[("ML_MODEL_PATH", models.path().to_str().unwrap())],
    );
    let mut api = SpawnedBinary::spawn(Path::new(API), &[], &env, workdir.path());
    let listening = api.wait_for_log("API listening", START_TIMEOUT).await;
    let base = format!("http://{}", listening["address"].as_str().unwrap());
    let served = || async { get_json(&format!("{base}/api/v1/models")).await };

    // A new version published into the folder, then SIGHUP.
    let annual = install(models.path(), "accunode-v1-annual", "1.1.0");
    api.signal("HUP");
    let swapped = api
        .wait_for_log("model swapped", Duration::from_secs(10))
        .await;
    assert_eq!(swapped["from"], "accunode-v1-annual 1.0.0");
    assert_eq!(swapped["to"], "accunode-v1-annual 1.1.0");
    assert_eq!(served().await["annual"]["version"], "1.1.0");
    assert_eq!(served().await["quarterly"]["version"], "1.0.0");

    // A broken bundle: the reload fails, the served one stays.
    std::fs::write(annual.join("manifest.json"), "{ not json").unwrap();
    api.signal("HUP");
    let failed = api
        .wait_for_log(
            "model reload failed; the loaded models stay in service",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("annual model accunode-v1-annual"),
        "{failed}"
    );
    assert_eq!(served().await["annual"]["version"], "1.1.0");
    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .status(),
        200
    );
    api.terminate();
    api.wait(Duration::from_secs(40)).await;
}

#[tokio::test]
async fn from_the_model_bucket_the_latest_version_serves_and_new_ones_are_picked_up() {
    let database = TestDatabase::create().await;
    let bucket = create_bucket().await;
    let location = format!("s3://{bucket}/models");
    let store = ModelStore::connect(
        S3Location::parse(&location).unwrap(),
        Some(&aws_endpoint_url()),
        Some("us-east-1"),
    )
    .await;
    let staging = tempfile::tempdir().unwrap();
    store
        .push(&install(staging.path(), "accunode-v1-quarterly", "1.0.0"))
        .await
        .unwrap();
    for version in ["1.0.0", "1.2.0"] {
        let dir = tempfile::tempdir().unwrap();
        store
            .push(&install(dir.path(), "accunode-v1-annual", version))
            .await
            .unwrap();
    }

    let env = with(
        test_env(&database.url, &redis_url()),
        &[
            ("ML_MODEL_PATH", &location),
            ("AWS_ENDPOINT_URL", &aws_endpoint_url()),
            ("MODEL_RELOAD_SECS", "1"),
        ],
    );
    let settings = Settings::load(&Sources {
        file: None,
        dotenv: None,
        env,
    })
    .unwrap();
    let application = Application::build(settings).await.unwrap();
    let base = format!("http://{}", application.address());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let annual_version = || async {
        get_json(&format!("{base}/api/v1/models")).await["annual"]["version"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(annual_version().await, "1.2.0", "the latest published");
    let dir = tempfile::tempdir().unwrap();
    store
        .push(&install(dir.path(), "accunode-v1-annual", "1.10.0"))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(15),
        "the 1.10.0 bundle to serve",
        || async { annual_version().await == "1.10.0" },
    )
    .await;
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Models load before any connection is made: a wrong one fails fast, even
/// with PostgreSQL and Redis unreachable.
#[test]
fn a_bundle_of_the_wrong_kind_or_a_missing_one_stops_start_up_naming_it() {
    for (key, value, expected) in [
        (
            "ANNUAL_MODEL",
            "accunode-v1-quarterly",
            "annual model accunode-v1-quarterly: it is a quarterly bundle",
        ),
        (
            "QUARTERLY_MODEL",
            "accunode-v1-quarterly@2.0.0",
            "quarterly model accunode-v1-quarterly@2.0.0: found version 1.0.0",
        ),
        (
            "ANNUAL_MODEL",
            "no-such-bundle",
            "annual model no-such-bundle: cannot read",
        ),
    ] {
        let workdir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(API)
            .env_clear()
            .envs(test_env(
                "postgres://127.0.0.1:1/none",
                "redis://127.0.0.1:1",
            ))
            .env(key, value)
            .current_dir(workdir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{key}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{key}={value}: {stderr}");
    }
}
