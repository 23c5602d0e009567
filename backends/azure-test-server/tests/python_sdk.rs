//! Holds the test server to Microsoft's own client: `python/sdk_check.py`
//! drives it with the `azure-keyvault-secrets` Python SDK (set, get, a
//! version, versions, tags, dates, paged listings, delete, purge, recover),
//! so the Azure backend's tests do not rest only on our reading of the REST
//! API.
//!
//! It needs SECRETD_TEST_PYTHON, an interpreter with
//! `python/requirements.txt` installed (`scripts/python-client-deps.sh`
//! installs both into .venv-test). Under CI=true a missing interpreter or
//! SDK fails the test; otherwise the test is skipped loudly.

use std::{path::Path, process::Command};

use secretd_azure_test_server::TestServer;

const SDK_IMPORT: &str = "import azure.core, azure.keyvault.secrets";

/// The interpreter to run the SDK with, or `None` (outside CI) to skip.
fn python() -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let install = "scripts/python-client-deps.sh installs it";
    let Some(python) = std::env::var("SECRETD_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        assert!(
            !ci,
            "SECRETD_TEST_PYTHON is not set: CI must hold the Key Vault test server to the Python SDK ({install})"
        );
        eprintln!("\n*** SKIPPING the Azure Python SDK test: SECRETD_TEST_PYTHON is not set ({install}). ***\n");
        return None;
    };
    let probe = Command::new(&python).args(["-c", SDK_IMPORT]).output();
    let importable = probe.as_ref().is_ok_and(|out| out.status.success());
    if !importable {
        let why = match &probe {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        assert!(!ci, "{python} cannot import the Azure SDK ({install}): {why}");
        eprintln!("\n*** SKIPPING the Azure Python SDK test: {python} cannot import the Azure SDK ({install}). ***\n");
        return None;
    }
    Some(python)
}

#[test]
fn azure_keyvault_secrets_sdk_against_the_test_server() {
    let Some(python) = python() else { return };
    let server = TestServer::start().expect("the Key Vault test server starts");
    let dir = tempfile::tempdir().expect("a scratch directory");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &server.ca_pem).expect("writing the CA file");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sdk_check.py");

    let out = Command::new(&python)
        .arg(&script)
        .env("SECRETD_TEST_AZURE_URL", &server.url)
        .env("SECRETD_TEST_AZURE_CA_FILE", &ca_file)
        .env("SECRETD_TEST_AZURE_TOKEN", &server.token)
        // Only the given CA may be trusted, whatever the caller's environment says.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("running python/sdk_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK found a difference:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "the script did not run to its end:\n{stdout}\n{stderr}");

    // The SDK really went through the server's paging and soft-delete
    // paths, not around them.
    let requests = server.requests();
    let listed =
        |path: &str| requests.iter().filter(|r| r.method == "GET" && r.path == path && r.status == 200).count();
    assert!(listed("/secrets") >= 3, "the secret listing was not paged: {requests:?}");
    assert!(listed("/deletedsecrets") >= 3, "the deleted listing was not paged: {requests:?}");
    for (method, path) in
        [("DELETE", "/deletedsecrets/sdk-listed-00"), ("POST", "/deletedsecrets/sdk-db-password/recover")]
    {
        assert!(
            requests.iter().any(|r| r.method == method && r.path == path && r.status < 300),
            "no successful {method} {path}: {requests:?}"
        );
    }
}
