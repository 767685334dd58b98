//! The OpenAPI document as a product: a Python client generated from the
//! committed `service/openapi.json` with `openapi-python-client` (warnings are
//! failures) drives a running API through registration, sign-in, companies
//! and predictions (`scripts/client_smoke.py`).
//!
//! `scripts/test` installs the generator into a virtualenv and names it in
//! `TEST_OPENAPI_CLIENT_VENV`.

use std::path::Path;
use std::process::Command;

use crate::support::BulkRig;

#[tokio::test]
async fn a_generated_python_client_registers_signs_in_and_predicts() {
    let venv = std::env::var("TEST_OPENAPI_CLIENT_VENV").expect(
        "TEST_OPENAPI_CLIENT_VENV is not set: run through scripts/test, which installs openapi-python-client",
    );
    let bin = Path::new(&venv).join("bin");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let package = out.path().join("accunode_client");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let generated = Command::new(bin.join("openapi-python-client"))
        .args(["generate", "--meta", "none", "--fail-on-warning", "--path"])
        .arg(root.join("service/openapi.json"))
        .arg("--output-path")
        .arg(&package)
        .env("PATH", &path)
        .current_dir(out.path())
        .output()
        .expect("run openapi-python-client");
    assert!(
        generated.status.success(),
        "client generation failed:\n{}{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );

    let mut rig = BulkRig::start(&[]).await;
    rig.start_worker().await;
    let app = &rig.app;
    let smoke = tokio::process::Command::new(bin.join("python"))
        .arg(root.join("scripts/client_smoke.py"))
        .arg(&app.base)
        .arg(&app.database.url)
        .env("PYTHONPATH", out.path())
        .env("PATH", &path)
        .output()
        .await
        .expect("run the client script");
    let stdout = String::from_utf8_lossy(&smoke.stdout);
    assert!(
        smoke.status.success(),
        "the generated client failed:\n{stdout}{}",
        String::from_utf8_lossy(&smoke.stderr)
    );
    assert!(stdout.contains("scored PYCL annual"), "{stdout}");
    assert!(
        stdout.contains("bulk job completed: 3 rows, 1 failed"),
        "{stdout}"
    );
}
