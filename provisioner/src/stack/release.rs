//! `accunode release` and `accunode releases`: versioned, immutable release
//! artifacts in the stack's bucket. Release V is `releases/V/`: the API and
//! worker binaries and `manifest.json` (each file's SHA-256 and size, the git
//! commit, the build time, the model bundles and the migrations it carries).
//!
//! Beside them, `SHA256SUMS` lists the binaries' checksums in the format
//! instances check them with (`sha256sum --check`) before they run one.
//!
//! A published version never changes: every object is written with S3's
//! conditional write (`If-None-Match: *`), so publishing V again with the same
//! files is a no-op and with other files is refused. The manifest is written
//! last: a version without one is an interrupted publish, which publishing the
//! same files again completes. There is no mutable `current` pointer; what an
//! instance runs is named by its deploy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::aws::{self, aws_error, error_code};
use super::resources::Ctx;
use super::spec::names;

/// The binaries a release carries, as the instances' units name them.
pub const BINARIES: [&str; 2] = ["accunode-api", "accunode-worker"];
/// Where a release's files live in the bucket.
pub const PREFIX: &str = "releases";
const MANIFEST: &str = "manifest.json";
/// The binaries' checksums in `sha256sum` format, which instances verify.
pub const SHA256SUMS: &str = "SHA256SUMS";
/// The object metadata key holding a file's SHA-256, so a resend or a
/// re-publish compares without downloading the file.
const SHA256_METADATA: &str = "sha256";

/// What `releases/V/manifest.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    /// The commit the binaries were built from, with "-dirty" when the work
    /// tree had uncommitted changes; `None` outside a git checkout.
    pub git_commit: Option<String>,
    /// When the release was made (RFC 3339, UTC).
    pub built_at: String,
    pub files: Vec<FileEntry>,
    /// The model bundles (`models/<id>/manifest.json`) the release was built with.
    pub model_bundles: Vec<BundleEntry>,
    /// The migrations the binaries carry (sqlx runs them at the API's start).
    pub migrations: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEntry {
    pub id: String,
    pub version: String,
}

/// A version's name: it becomes an S3 prefix and an instance tag.
pub fn check_version(version: &str) -> anyhow::Result<()> {
    let valid = (1..=64).contains(&version.len())
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        bail!(
            "--version {version:?}: use 1 to 64 letters, digits, '.', '-' and '_', starting with a letter or digit (e.g. 1.4.0)"
        );
    }
    if version == "current" {
        bail!(
            "--version \"current\" is reserved: a release names one exact version, never a moving pointer"
        );
    }
    Ok(())
}

/// The workspace the command runs in: the nearest folder up from here whose
/// Cargo.toml declares `[workspace]`.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let here = std::env::current_dir().context("cannot read the current directory")?;
    for dir in here.ancestors() {
        let manifest = dir.join("Cargo.toml");
        if std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("[workspace]")) {
            return Ok(dir.to_owned());
        }
    }
    bail!(
        "{} is not inside the AccuNode workspace: run `accunode release` from its checkout (it reads migrations/ and models/ there)",
        here.display()
    )
}

/// Builds the release binaries for the instances (x86_64 Linux) and returns
/// the folder they are in.
fn build(root: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--bin",
            BINARIES[0],
            "--bin",
            BINARIES[1],
        ])
        .status()
        .context("cannot run cargo to build the release (or pass --from DIR with the binaries)")?;
    if !status.success() {
        bail!("cargo build --release failed ({status}); nothing was published");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("x86_64-unknown-linux-gnu").join("release"))
}

/// Checks that `dir` holds both binaries, each one the instances can run.
pub fn check_folder(dir: &Path) -> anyhow::Result<()> {
    for binary in BINARIES {
        let path = dir.join(binary);
        if !path.is_file() {
            bail!(
                "{} is missing: --from must hold {} built for x86_64 Linux",
                path.display(),
                BINARIES.join(" and ")
            );
        }
        check_executable(&path)?;
    }
    Ok(())
}

/// Refuses a file the instances could not run: they are x86_64 Linux.
fn check_executable(path: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut header = Vec::with_capacity(20);
    std::fs::File::open(path)
        .and_then(|file| file.take(20).read_to_end(&mut header))
        .with_context(|| format!("cannot read {}", path.display()))?;
    // ELF magic, 64-bit class, e_machine EM_X86_64 (62) little-endian.
    let x86_64_elf = header.len() == 20
        && header[..4] == *b"\x7fELF"
        && header[4] == 2
        && header[18..20] == [62, 0];
    if !x86_64_elf {
        bail!(
            "{} is not an x86_64 Linux executable (ELF): the instances run x86_64 Linux",
            path.display()
        );
    }
    Ok(())
}

/// SHA-256 (hex) and size of a file, read in blocks.
fn digest(path: &Path) -> anyhow::Result<(String, u64)> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        hash.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok((hex(&hash.finalize()), bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hex SHA-256 as S3's `x-amz-checksum-sha256` takes it (base64 of the bytes).
fn base64_of_hex(hex: &str) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn migrations(root: &Path) -> anyhow::Result<Vec<FileEntry>> {
    let dir = root.join("migrations");
    let mut entries = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            let (sha256, bytes) = digest(&path)?;
            entries.push(FileEntry {
                name: file_name(&path),
                sha256,
                bytes,
            });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn model_bundles(root: &Path) -> anyhow::Result<Vec<BundleEntry>> {
    #[derive(Deserialize)]
    struct BundleManifest {
        id: String,
        version: String,
    }
    let dir = root.join("models");
    let mut bundles = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let manifest = entry?.path().join("manifest.json");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let bundle: BundleManifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a bundle manifest", manifest.display()))?;
        bundles.push(BundleEntry {
            id: bundle.id,
            version: bundle.version,
        });
    }
    bundles.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(bundles)
}

fn git_commit(root: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn bucket(ctx: &Ctx) -> String {
    names::bucket(&ctx.stack, &ctx.account, ctx.region())
}

fn key(version: &str, name: &str) -> String {
    format!("{PREFIX}/{version}/{name}")
}

/// Writes `key` only if nothing is there yet, with the SHA-256 it was
/// hashed with; false when something is.
async fn put_if_absent(
    ctx: &Ctx,
    bucket: &str,
    key: &str,
    body: ByteStream,
    sha256: &str,
) -> anyhow::Result<bool> {
    aws::put_if_absent(
        ctx.aws
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .metadata(SHA256_METADATA, sha256)
            // S3 refuses bytes that are not the ones hashed (a file changed
            // between hashing and sending); moto does not check it.
            .checksum_sha256(base64_of_hex(sha256))
            .body(body),
    )
    .await
    .map(|written| written.is_some())
}

/// The SHA-256 of a stored object: from the metadata it was written with, or
/// computed from its bytes when another tool wrote it.
async fn stored_sha256(ctx: &Ctx, bucket: &str, key: &str) -> anyhow::Result<String> {
    let head = ctx
        .aws
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot read s3://{bucket}/{key}"))?;
    if let Some(sha256) = head.metadata().and_then(|m| m.get(SHA256_METADATA)) {
        return Ok(sha256.clone());
    }
    let body = read_object(ctx, bucket, key)
        .await?
        .with_context(|| format!("s3://{bucket}/{key} went away while it was read"))?;
    Ok(hex(&Sha256::digest(&body)))
}

/// An object's bytes, or `None` when there is no such key.
async fn read_object(ctx: &Ctx, bucket: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let object = match ctx.aws.s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(error) if error_code(&error) == Some("NoSuchKey") => return Ok(None),
        Err(error) => {
            return Err(aws_error(error))
                .with_context(|| format!("cannot read s3://{bucket}/{key}"));
        }
    };
    let body = object
        .body
        .collect()
        .await
        .with_context(|| format!("cannot read s3://{bucket}/{key}"))?;
    Ok(Some(body.into_bytes().to_vec()))
}

/// What `accunode release` reports.
#[derive(Debug, Serialize)]
pub struct Published {
    pub manifest: Manifest,
    /// Whether this run wrote anything (false: the same release was there).
    pub uploaded: bool,
    pub bucket: String,
}

/// Publishes release `version` from the binaries in `from` (or built here).
pub async fn publish(ctx: &Ctx, version: &str, from: Option<&Path>) -> anyhow::Result<Published> {
    let started = Instant::now();
    let root = workspace_root()?;
    let dir = match from {
        Some(dir) => dir.to_owned(),
        None => build(&root)?,
    };
    check_folder(&dir)?;
    let mut files = Vec::new();
    for binary in BINARIES {
        let path = dir.join(binary);
        let (sha256, bytes) = digest(&path)?;
        files.push((
            path,
            FileEntry {
                name: binary.to_owned(),
                sha256,
                bytes,
            },
        ));
    }
    let manifest = Manifest {
        version: version.to_owned(),
        git_commit: git_commit(&root),
        built_at: aws_smithy_types::DateTime::from(SystemTime::now())
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .context("cannot format the build time")?,
        files: files.iter().map(|(_, entry)| entry.clone()).collect(),
        model_bundles: model_bundles(&root)?,
        migrations: migrations(&root)?,
    };
    let bucket = bucket(ctx);
    let mut uploaded = false;
    for (path, entry) in &files {
        let body = ByteStream::from_path(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file_key = key(version, &entry.name);
        let what = if put_if_absent(ctx, &bucket, &file_key, body, &entry.sha256).await? {
            uploaded = true;
            "uploaded"
        } else {
            let there = stored_sha256(ctx, &bucket, &file_key).await?;
            if there != entry.sha256 {
                bail!(
                    "release {version} is already published with another {} (sha256 {there}, this one {}): a published version never changes; choose another --version",
                    entry.name,
                    entry.sha256
                );
            }
            "already published"
        };
        ctx.progress.done(
            if what == "uploaded" { "+" } else { " " },
            &entry.name,
            "release file",
            &format!(
                "{what}, {} bytes, sha256 {}…",
                entry.bytes,
                &entry.sha256[..12]
            ),
            started.elapsed(),
        );
    }
    // What instances check the binaries against (`sha256sum --check`).
    let sums: String = manifest
        .files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.name))
        .collect();
    let sums_sha256 = hex(&Sha256::digest(sums.as_bytes()));
    let sums_key = key(version, SHA256SUMS);
    if put_if_absent(
        ctx,
        &bucket,
        &sums_key,
        ByteStream::from(sums.into_bytes()),
        &sums_sha256,
    )
    .await?
    {
        uploaded = true;
    } else if stored_sha256(ctx, &bucket, &sums_key).await? != sums_sha256 {
        bail!(
            "release {version} is already published with another {SHA256SUMS}: a published version never changes; choose another --version"
        );
    }
    // The manifest goes last: its presence says the release is whole. One
    // that is there already was written from the same files (checked above)
    // and stands, with its build time and commit.
    let text = serde_json::to_vec_pretty(&manifest)?;
    let sha256 = hex(&Sha256::digest(&text));
    let manifest_key = key(version, MANIFEST);
    let manifest = if put_if_absent(ctx, &bucket, &manifest_key, ByteStream::from(text), &sha256)
        .await?
    {
        uploaded = true;
        manifest
    } else {
        let there = read_manifest(ctx, &bucket, version)
            .await?
            .with_context(|| format!("s3://{bucket}/{manifest_key} went away while it was read"))?;
        if there.files != manifest.files {
            bail!(
                "release {version} is already published with other files: a published version never changes; choose another --version"
            );
        }
        there
    };
    Ok(Published {
        manifest,
        uploaded,
        bucket,
    })
}

/// The manifest of release `version`, if it is published.
pub async fn manifest(ctx: &Ctx, version: &str) -> anyhow::Result<Option<Manifest>> {
    read_manifest(ctx, &bucket(ctx), version).await
}

async fn read_manifest(ctx: &Ctx, bucket: &str, version: &str) -> anyhow::Result<Option<Manifest>> {
    let key = key(version, MANIFEST);
    let Some(body) = read_object(ctx, bucket, &key).await? else {
        return Ok(None);
    };
    let manifest = serde_json::from_slice(&body)
        .with_context(|| format!("s3://{bucket}/{key} is not a release manifest"))?;
    Ok(Some(manifest))
}

/// One row of `accunode releases`.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub version: String,
    /// `None`: the publish of this version was interrupted before its manifest.
    pub manifest: Option<Manifest>,
}

/// The published releases, oldest first (versions without a manifest last).
pub async fn list(ctx: &Ctx) -> anyhow::Result<Vec<Listed>> {
    let bucket = bucket(ctx);
    let mut versions = Vec::new();
    let mut pages = ctx
        .aws
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("{PREFIX}/"))
        .delimiter("/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(error) if error_code(&error) == Some("NoSuchBucket") => {
                return Err(aws::NoBucket(bucket).into());
            }
            Err(error) => {
                return Err(aws_error(error))
                    .with_context(|| format!("cannot list s3://{bucket}/{PREFIX}/"));
            }
        };
        for prefix in page.common_prefixes() {
            if let Some(version) = prefix
                .prefix()
                .and_then(|p| p.strip_prefix(&format!("{PREFIX}/")))
                .and_then(|p| p.strip_suffix('/'))
            {
                versions.push(version.to_owned());
            }
        }
    }
    let manifests = futures::future::try_join_all(
        versions
            .iter()
            .map(|version| read_manifest(ctx, &bucket, version)),
    )
    .await?;
    let mut listed: Vec<Listed> = versions
        .into_iter()
        .zip(manifests)
        .map(|(version, manifest)| Listed { version, manifest })
        .collect();
    listed.sort_by(|a, b| {
        let built = |l: &Listed| l.manifest.as_ref().map(|m| m.built_at.clone());
        (built(a).is_none(), built(a), &a.version).cmp(&(built(b).is_none(), built(b), &b.version))
    });
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_names_not_paths_nor_the_old_pointer() {
        for good in ["1.4.0", "2026-11-28.1", "v2_rc1", "a"] {
            check_version(good).unwrap();
        }
        for bad in [
            "",
            "-1",
            "1/2",
            "../x",
            "1 2",
            "é",
            "current",
            &"9".repeat(65),
        ] {
            let error = check_version(bad).unwrap_err().to_string();
            assert!(error.starts_with("--version"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn checksums_go_to_s3_as_base64_of_the_digest() {
        // SHA-256 of the empty input, in both spellings.
        assert_eq!(
            base64_of_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn only_x86_64_linux_executables_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("elf");
        std::fs::copy(std::env::current_exe().unwrap(), &elf).unwrap();
        check_executable(&elf).unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        let error = check_executable(&script).unwrap_err().to_string();
        assert!(error.contains("not an x86_64 Linux executable"), "{error}");
    }
}
