//! `accunode release | releases` against moto, on a stack made by `accunode
//! provision`: what is published is read back from S3 (bytes and manifest),
//! a version never changes (same files: a no-op; other files: refused, the
//! stored bytes untouched), an interrupted publish shows as incomplete and
//! the same files complete it, and bad flags are named before any AWS call.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::stack::{accunode, json, unique_stack};
use crate::support::{ACCUNODE, stderr, succeeded};

const BUCKET_SUFFIX: &str = "-ml-models-123456789012-us-east-1";

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small real x86_64 Linux executable, standing in for the binaries.
const ELF: &str = "/usr/bin/true";

/// A release folder: both binaries as real x86_64 ELF files, the worker made
/// distinct by `worker_tail`.
pub(crate) fn release_folder(worker_tail: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let elf = std::fs::read(ELF).unwrap();
    std::fs::write(dir.path().join("accunode-api"), &elf).unwrap();
    std::fs::write(
        dir.path().join("accunode-worker"),
        [elf.as_slice(), worker_tail].concat(),
    )
    .unwrap();
    dir
}

async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let object = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(object.body.collect().await.unwrap().into_bytes().to_vec())
}

pub(crate) fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// `accunode release --version VERSION --from FOLDER` on `stack`.
fn release(stack: &str, version: &str, folder: &Path) -> std::process::Output {
    accunode(
        stack,
        &["release", "--version", version, "--from", path(folder)],
    )
}

#[tokio::test]
async fn a_release_is_published_once_and_never_changes() {
    let stack = unique_stack("rel");
    let s3 = accunode_testkit::s3_client().await;
    let bucket = format!("{stack}{BUCKET_SUFFIX}");

    // Before the stack exists there is nowhere to publish.
    let folder = release_folder(b"worker one");
    let early = release(&stack, "1.0.0", folder.path());
    assert!(!early.status.success());
    assert!(
        stderr(&early).contains("does not exist: run `accunode provision` first"),
        "{}",
        stderr(&early)
    );
    succeeded(&accunode(&stack, &["provision", "--phase", "1"]));

    // Published: every file in S3 with the bytes of the folder, the manifest
    // naming each by its SHA-256, and the workspace's migrations and bundles.
    let first = json(&accunode(
        &stack,
        &[
            "release",
            "--version",
            "1.0.0",
            "--from",
            path(folder.path()),
            "--output",
            "json",
        ],
    ));
    assert_eq!(first["release"]["uploaded"], true, "{first}");
    let manifest = &first["release"]["manifest"];
    for name in ["accunode-api", "accunode-worker"] {
        let local = std::fs::read(folder.path().join(name)).unwrap();
        let stored = object(&s3, &bucket, &format!("releases/1.0.0/{name}"))
            .await
            .unwrap_or_else(|| panic!("{name} was not published"));
        assert!(stored == local, "{name}: the stored bytes differ");
        let entry = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap();
        assert_eq!(entry["sha256"], sha256(&local), "{name}");
        assert_eq!(entry["bytes"], local.len(), "{name}");
    }
    let sums = String::from_utf8(
        object(&s3, &bucket, "releases/1.0.0/SHA256SUMS")
            .await
            .expect("SHA256SUMS is published"),
    )
    .unwrap();
    let expected: String = ["accunode-api", "accunode-worker"]
        .iter()
        .map(|name| {
            let sha = sha256(&std::fs::read(folder.path().join(name)).unwrap());
            format!("{sha}  {name}\n")
        })
        .collect();
    assert_eq!(sums, expected, "sha256sum's format, one line per binary");
    let stored_manifest: serde_json::Value = serde_json::from_slice(
        &object(&s3, &bucket, "releases/1.0.0/manifest.json")
            .await
            .expect("the manifest is published"),
    )
    .unwrap();
    assert_eq!(&stored_manifest, manifest);
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert_eq!(manifest["migrations"].as_array().unwrap().len(), migrations);
    assert!(
        manifest["model_bundles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == "accunode-v1-annual"),
        "{manifest}"
    );
    assert!(manifest["git_commit"].is_string(), "{manifest}");

    // The same files again: nothing written, the first manifest stands.
    let again = release(&stack, "1.0.0", folder.path());
    assert!(
        succeeded(&again).contains("already published with these files"),
        "{}",
        succeeded(&again)
    );
    let stored_again: serde_json::Value = serde_json::from_slice(
        &object(&s3, &bucket, "releases/1.0.0/manifest.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored_again["built_at"], manifest["built_at"]);

    // Other bytes under the same version: refused, naming the file, and the
    // published worker is untouched.
    let other = release_folder(b"worker two");
    let refused = release(&stack, "1.0.0", other.path());
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("already published with another accunode-worker")
            && stderr(&refused).contains("choose another --version"),
        "{}",
        stderr(&refused)
    );
    let worker = object(&s3, &bucket, "releases/1.0.0/accunode-worker")
        .await
        .unwrap();
    assert!(worker == std::fs::read(folder.path().join("accunode-worker")).unwrap());

    // A new version takes them.
    succeeded(&release(&stack, "1.1.0", other.path()));

    // An interrupted publish (a binary, no manifest; written by another tool,
    // without our checksum metadata) lists as incomplete, and publishing the
    // same files completes it.
    s3.put_object()
        .bucket(&bucket)
        .key("releases/0.9.0/accunode-api")
        .body(
            std::fs::read(folder.path().join("accunode-api"))
                .unwrap()
                .into(),
        )
        .send()
        .await
        .unwrap();
    let listed = json(&accunode(&stack, &["releases", "--output", "json"]));
    let versions: Vec<(&str, bool)> = listed["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["version"].as_str().unwrap(), r["manifest"].is_null()))
        .collect();
    assert_eq!(
        versions,
        [("1.0.0", false), ("1.1.0", false), ("0.9.0", true)],
        "oldest first, the incomplete one last"
    );
    let text = succeeded(&accunode(&stack, &["releases"]));
    assert!(
        text.contains("0.9.0") && text.contains("incomplete"),
        "{text}"
    );
    succeeded(&release(&stack, "0.9.0", folder.path()));
    assert!(
        object(&s3, &bucket, "releases/0.9.0/manifest.json")
            .await
            .is_some()
    );

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

#[test]
fn bad_release_flags_are_named_before_any_aws_call() {
    // An endpoint that answers nothing: a flag error must come first.
    let run = |args: &[&str]| {
        std::process::Command::new(ACCUNODE)
            .args(args)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap()
    };
    for (args, named) in [
        (vec!["release", "--version", "../x"], "--version \"../x\""),
        (
            vec!["release", "--version", "current"],
            "--version \"current\" is reserved",
        ),
        (
            vec!["release", "--version", "1.0", "--from", "/nonexistent"],
            "--from /nonexistent: not a folder",
        ),
    ] {
        let output = run(&args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(named),
            "{args:?}: {}",
            stderr(&output)
        );
    }

    // A folder without the worker, or with something the instances cannot run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(ELF, dir.path().join("accunode-api")).unwrap();
    let output = run(&["release", "--version", "1.0", "--from", path(dir.path())]);
    assert!(
        stderr(&output).contains("accunode-worker is missing"),
        "{}",
        stderr(&output)
    );
    std::fs::write(dir.path().join("accunode-worker"), "#!/bin/sh\n").unwrap();
    let output = run(&["release", "--version", "1.0", "--from", path(dir.path())]);
    assert!(
        stderr(&output).contains("accunode-worker is not an x86_64 Linux executable"),
        "{}",
        stderr(&output)
    );
}
