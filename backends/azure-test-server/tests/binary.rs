//! The binary that starts the test server outside a test: what it prints
//! is what `scripts/servers/*.sh` print, it serves until killed, and the
//! client secret stays in its 0600 file, off stdout.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
};

#[test]
fn prints_its_address_and_files_and_serves_until_killed() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_secretd-azure-test-server"))
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut printed = BTreeMap::new();
    let mut lines = BufReader::new(child.stdout.take().expect("its stdout"));
    let mut line = String::new();
    while !printed.contains_key("SECRETD_TEST_AZURE_PID") {
        line.clear();
        if lines.read_line(&mut line).expect("reading its stdout") == 0 {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once('=') {
            printed.insert(name.to_owned(), value.to_owned());
        }
    }
    let get = |name: &str| printed.get(name).unwrap_or_else(|| panic!("{name} was not printed: {printed:?}")).clone();

    assert_eq!(get("SECRETD_TEST_AZURE_PID"), child.id().to_string());
    let url = get("SECRETD_TEST_AZURE_URL");
    let port: u16 = url.strip_prefix("https://localhost:").and_then(|p| p.parse().ok()).expect("a loopback https URL");
    assert_eq!(get("SECRETD_TEST_AZURE_AUTHORITY_HOST"), url);
    let tenant = get("SECRETD_TEST_AZURE_TENANT_ID");
    assert_eq!(get("SECRETD_TEST_AZURE_TOKEN_ENDPOINT"), format!("{url}/{tenant}/oauth2/v2.0/token"));
    assert!(!get("SECRETD_TEST_AZURE_CLIENT_ID").is_empty());

    let ca = std::fs::read_to_string(get("SECRETD_TEST_AZURE_CA_FILE")).expect("the CA file");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "not a PEM certificate: {ca:?}");
    let secret_file = get("SECRETD_TEST_AZURE_CLIENT_SECRET_FILE");
    let secret = std::fs::read_to_string(&secret_file).expect("the client secret file");
    let mode = std::fs::metadata(&secret_file).expect("its metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the client secret file is readable by others");
    assert!(!secret.is_empty());
    assert!(printed.values().all(|v| !v.contains(&secret)), "the client secret was printed");

    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the server listens where it says");
    child.kill().expect("stopping the binary");
    child.wait().expect("reaping the binary");
}
