//! Starts the Key Vault test server on a free loopback port, outside any
//! test, for clients in other languages (the Python SDK test) or by hand.
//! Like the `scripts/servers/*.sh` servers, it prints `NAME=value` lines
//! and serves until it is killed.
//!
//! The CA certificate and the service principal's client secret go into
//! files in the directory given as the one argument (the secret with mode
//! 0600), never onto stdout, so the printed lines can be logged.

use std::{
    fs,
    io::{self, Write},
    path::PathBuf,
};

use secretd_azure_test_server::TestServer;

fn write_private(path: &std::path::Path, contents: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => return Err("usage: secretd-azure-test-server DIR (where the CA and client secret files go)".into()),
    };
    fs::create_dir_all(&dir)?;
    let server = TestServer::start()?;
    let ca_file = dir.join("ca.pem");
    fs::write(&ca_file, &server.ca_pem)?;
    let secret_file = dir.join("client-secret");
    write_private(&secret_file, &server.client_secret)?;

    let mut out = io::stdout().lock();
    writeln!(out, "SECRETD_TEST_AZURE_URL={}", server.url)?;
    writeln!(out, "SECRETD_TEST_AZURE_CA_FILE={}", ca_file.display())?;
    writeln!(out, "SECRETD_TEST_AZURE_AUTHORITY_HOST={}", server.url)?;
    writeln!(out, "SECRETD_TEST_AZURE_TOKEN_ENDPOINT={}/{}/oauth2/v2.0/token", server.url, server.tenant_id)?;
    writeln!(out, "SECRETD_TEST_AZURE_TENANT_ID={}", server.tenant_id)?;
    writeln!(out, "SECRETD_TEST_AZURE_CLIENT_ID={}", server.client_id)?;
    writeln!(out, "SECRETD_TEST_AZURE_CLIENT_SECRET_FILE={}", secret_file.display())?;
    writeln!(out, "SECRETD_TEST_AZURE_PID={}", std::process::id())?;
    out.flush()?;
    drop(out);

    // The server runs on its own thread; this one only keeps the process
    // (and so the server) alive until a signal ends it.
    loop {
        std::thread::park();
    }
}
