//! The deployment material in `deploy/` (issue 6), checked by
//! `scripts/check-deploy.sh` against this build of the daemon: both
//! Kustomize overlays render and validate against the Kubernetes API
//! schemas, keep their hardening and agree with their `secretd.yaml`; every
//! `secretd.yaml` under `deploy/` passes `secretd config check`; and the
//! systemd unit keeps its sandbox and passes `systemd-analyze verify`.
//!
//! The script installs what it needs (kubectl from Debian's
//! `kubernetes-client` if there is none, `kubernetes-validate` from PyPI into
//! `.venv-test`). If it cannot, it fails under `CI=true`; otherwise it exits
//! 77 and this test says loudly that it skipped. The container image is not
//! built: there is no Docker engine here.

use std::process::Command;

/// The script's exit code for "a tool could not be installed, nothing was
/// checked" (never used under `CI=true`).
const SKIPPED: i32 = 77;

#[test]
fn deploy_manifests_unit_and_configs_pass_check_deploy() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("bash")
        .arg(format!("{root}/scripts/check-deploy.sh"))
        .env("SECRETD_BIN", env!("CARGO_BIN_EXE_secretd"))
        .current_dir(root)
        .output()
        .expect("cannot run bash scripts/check-deploy.sh");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match output.status.code() {
        Some(0) => {}
        Some(SKIPPED) if !ci => {
            eprintln!("\n*** SKIPPED: check-deploy.sh could not install its tools; deploy/ was NOT checked ***");
            eprintln!("{report}");
        }
        _ => panic!("scripts/check-deploy.sh failed ({}):\n{report}", output.status),
    }
}
