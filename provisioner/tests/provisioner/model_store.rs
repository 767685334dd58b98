//! Bundles in the S3 model bucket (moto): push, list, fetch, immutable
//! versions, complete-or-invisible pushes, checksums; and the CLI around them.

use std::path::{Path, PathBuf};
use std::process::Command;

use accunode_core::scoring::Bundle;
use accunode_core::scoring::store::{ModelStore, S3Location, StoreError};
use accunode_testkit::{aws_endpoint_url, create_bucket, s3_client};
use aws_sdk_s3::primitives::ByteStream;

use crate::support::{ACCUNODE, repo};

fn shipped(id: &str) -> PathBuf {
    repo("models").join(id)
}

async fn store(bucket: &str) -> ModelStore {
    ModelStore::connect(
        S3Location::parse(&format!("s3://{bucket}/models")).unwrap(),
        Some(&aws_endpoint_url()),
        Some("us-east-1"),
    )
    .await
}

/// A copy of a shipped bundle with another version.
fn with_version(id: &str, version: &str, dir: &Path) -> PathBuf {
    let copy = dir.join(format!("{id}-{version}"));
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(shipped(id)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let manifest = copy.join("manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    json["version"] = version.into();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    copy
}

#[tokio::test]
async fn pushed_bundles_are_listed_and_fetch_to_the_same_scores() {
    let bucket = create_bucket().await;
    let store = store(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    for folder in [
        shipped("accunode-v1-annual"),
        shipped("accunode-ensemble-quarterly"),
        with_version("accunode-v1-annual", "1.10.0", dir.path()),
        with_version("accunode-v1-annual", "1.9.0", dir.path()),
    ] {
        store.push(&folder).await.unwrap();
    }
    let listed: Vec<(String, String)> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.version))
        .collect();
    assert_eq!(
        listed,
        [
            ("accunode-ensemble-quarterly", "1.0.0"),
            ("accunode-v1-annual", "1.0.0"),
            ("accunode-v1-annual", "1.9.0"),
            ("accunode-v1-annual", "1.10.0"),
        ]
        .map(|(id, version)| (id.to_owned(), version.to_owned()))
    );
    assert_eq!(
        store.latest_version("accunode-v1-annual").await.unwrap(),
        "1.10.0"
    );

    let local = Bundle::load(&shipped("accunode-ensemble-quarterly")).unwrap();
    let fetched = store
        .fetch("accunode-ensemble-quarterly", "1.0.0")
        .await
        .unwrap();
    for row in [[2.0, 20.0, 40.0, 8.0], [f64::NAN, 5.0, 0.0, -3.0]] {
        assert_eq!(local.score(&row).unwrap(), fetched.score(&row).unwrap());
    }
    assert!(matches!(
        store.fetch("accunode-v1-annual", "9.9.9").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_published_version_never_changes() {
    let bucket = create_bucket().await;
    let store = store(&bucket).await;
    store.push(&shipped("accunode-v1-annual")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Same id and version, other content: refused, and the published one stays.
    let changed = with_version("accunode-v1-quarterly", "1.0.0", dir.path());
    let manifest = changed.join("manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    json["id"] = "accunode-v1-annual".into();
    json["kind"] = "quarterly".into();
    std::fs::write(&manifest, serde_json::to_vec(&json).unwrap()).unwrap();
    let error = store.push(&changed).await.unwrap_err();
    assert!(matches!(error, StoreError::VersionExists { .. }), "{error}");
    assert!(error.to_string().contains("publish a new version"));
    let fetched = store.fetch("accunode-v1-annual", "1.0.0").await.unwrap();
    assert_eq!(fetched.feature_count(), 5);
}

#[tokio::test]
async fn an_incomplete_push_is_invisible_and_a_corrupt_object_is_refused() {
    let bucket = create_bucket().await;
    let store = store(&bucket).await;
    let s3 = s3_client().await;
    // A push interrupted before its manifest: only a component file.
    s3.put_object()
        .bucket(&bucket)
        .key("models/half-pushed/1.0.0/binned_logistic.json")
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await
        .unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert!(matches!(
        store.fetch("half-pushed", "1.0.0").await,
        Err(StoreError::NotFound { .. })
    ));

    store.push(&shipped("accunode-v1-annual")).await.unwrap();
    // Someone rewrites a component in place, keeping its published checksum.
    let key = "models/accunode-v1-annual/1.0.0/binned_logistic.json";
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let published = head.metadata().unwrap()["sha256"].clone();
    s3.put_object()
        .bucket(&bucket)
        .key(key)
        .metadata("sha256", &published)
        .body(ByteStream::from_static(b"{\"tampered\": true}"))
        .send()
        .await
        .unwrap();
    let error = store
        .fetch("accunode-v1-annual", "1.0.0")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Checksum { .. }), "{error}");
    assert!(error.to_string().contains(&published));
}

#[tokio::test]
async fn the_cli_pushes_and_lists_and_names_what_is_wrong() {
    let bucket = create_bucket().await;
    let to = format!("s3://{bucket}/models");
    let accunode = |args: &[&str]| {
        Command::new(ACCUNODE)
            .args(args)
            .env("AWS_ENDPOINT_URL", aws_endpoint_url())
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap()
    };
    let annual = shipped("accunode-v1-annual");
    let pushed = accunode(&[
        "model",
        "push",
        "--bundle",
        annual.to_str().unwrap(),
        "--to",
        &to,
    ]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert!(String::from_utf8_lossy(&pushed.stderr).contains(&format!(
        "published accunode-v1-annual 1.0.0 (binned_logistic) to {to}/accunode-v1-annual/1.0.0/"
    )));

    let again = accunode(&[
        "model",
        "push",
        "--bundle",
        annual.to_str().unwrap(),
        "--to",
        &to,
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already published"));

    let listed = accunode(&["model", "list", "--from", &to, "--output", "json"]);
    assert!(listed.status.success());
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json[0]["id"], "accunode-v1-annual");
    assert_eq!(json[0]["kind"], "annual");
    assert_eq!(json.as_array().unwrap().len(), 1);

    for (args, expected) in [
        (
            vec!["model", "list", "--from", "bucket-without-scheme"],
            "invalid --from: bucket-without-scheme is not a model location",
        ),
        (
            vec!["model", "list", "--from", "s3://no-such-bucket-accunode"],
            "NoSuchBucket",
        ),
        (
            vec!["model", "push", "--bundle", "/nonexistent", "--to", &to],
            "cannot push --bundle /nonexistent",
        ),
    ] {
        let output = accunode(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}
