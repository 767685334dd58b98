//! What every module of the provisioner's test binary shares: the `accunode`
//! binary under test, paths into the repository, and reading its output.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `accunode` binary Cargo built for these tests.
pub const ACCUNODE: &str = env!("CARGO_BIN_EXE_accunode");

/// A path relative to the repository's root (`models/…`, `data/…`, `scripts/…`).
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs `accunode` with `args` and returns what it did.
pub fn accunode<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(ACCUNODE).args(args).output().unwrap()
}

/// `output`'s standard output, after asserting that the command succeeded
/// (the failure message shows both streams).
pub fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "accunode failed ({}):\n{stdout}\n{}",
        output.status,
        stderr(output)
    );
    stdout
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
