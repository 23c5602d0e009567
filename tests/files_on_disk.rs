//! What secretd leaves on disk (issue 12, item 16), under the most
//! permissive umask (000), as outside systemd nothing narrows it: the dev
//! data directory is 0700 and every file in it 0600 (the SQLite databases
//! and their -wal/-shm files included); the Unix socket never exists with a
//! wider mode than `server.socket.mode`; and an existing secret file that
//! others may read stops the start, naming the file and its mode, never its
//! content. A world-readable `file:` credential is warned about.

mod common;

use std::{
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
};

use common::{Auth, Daemon};
use secretd::proto::{secret_broker_client::SecretBrokerClient, PutSecretRequest};

/// Every test here runs (and starts its daemons) with umask 000.
fn permissive_umask() {
    // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
    unsafe { libc::umask(0) };
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[tokio::test]
async fn the_dev_instance_keeps_its_files_private_whatever_the_umask() {
    permissive_umask();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&["serve", "--listen", "127.0.0.1:0"], dir.path());
    let data = dir.path().join("data");
    // A write, so that every database file is in use.
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let mut client = SecretBrokerClient::with_interceptor(daemon.channel().await, Auth::bearer(token.trim()));
    let put = PutSecretRequest {
        namespace: "files".into(),
        key: "k".into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    client.put_secret(put).await.expect("put");

    assert_eq!(mode(&data), 0o700, "{}", data.display());
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{} is not private", path.display());
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    for expected in
        ["admin.token", "audit.log", "jdbc.secret", "secrets.db", "secrets.db-wal", "state.db", "state.db-wal"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    drop(daemon);
}

/// A daemon on a Unix socket with mode 0600, run under strace with every
/// chmod held up for 300 ms: the socket's path is watched all through the
/// start, and the widest mode ever seen there must be 0600. Without strace
/// the test fails under CI=true and is skipped loudly otherwise.
#[test]
fn a_unix_socket_never_exists_with_a_wider_mode_than_configured() {
    permissive_umask();
    let strace_found = Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success());
    if !strace_found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "strace is missing: CI must run this test");
        eprintln!("\n*** SKIPPING the socket mode test: strace is not installed ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("secretd.sock");
    let config = dir.path().join("secretd.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: unix://{}\n  socket:\n    mode: \"0600\"\nsecret:\n  type: memory\nstate:\n  url: sqlite://{}/state.db\n",
            socket.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let (stop, widest, seen) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let watcher = {
        let (stop, widest, seen, socket) = (stop.clone(), widest.clone(), seen.clone(), socket.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(meta) = std::fs::symlink_metadata(&socket) {
                    if meta.file_type().is_socket() {
                        widest.fetch_or(meta.permissions().mode() & 0o777, Ordering::Relaxed);
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let mut child = Command::new("strace")
        .args(["-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=chmod,fchmodat"])
        .args(["-e", "inject=chmod,fchmodat:delay_enter=300000", common::bin(), "serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("SECRETD_ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = Vec::new();
    for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
        let listening = line.contains("secretd listening");
        log.push(line);
        if listening {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.last().is_some_and(|l| l.contains("secretd listening")), "secretd did not start:\n{}", log.join("\n"));
    assert!(seen.load(Ordering::Relaxed) > 0, "the watcher never saw the socket");
    assert_eq!(widest.load(Ordering::Relaxed), 0o600, "the socket was seen with a wider mode than 0600");
    assert_eq!(mode(&socket), 0o600);
    let strays: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".sd-"))
        .collect();
    assert!(strays.is_empty(), "staging directories left behind: {strays:?}");
}

/// Runs `secretd ARGS` in `dir` to its end, or for 20 s at most (a daemon
/// that started is stopped then, and counts as a success); its exit status
/// and stderr.
fn run(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(common::bin())
        .args(args)
        .current_dir(dir)
        .env("SECRETD_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("SECRETD_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let success = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (success, reader.join().unwrap())
}

#[test]
fn an_existing_secret_file_others_can_read_stops_the_start() {
    permissive_umask();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let secret = data.join("jdbc.secret");
    let value = "exposed-jdbc-secret-value-of-at-least-32-chars";
    std::fs::write(&secret, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (started, err) = run(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!started, "secretd started on a world-readable jdbc.secret");
    assert!(err.contains("data/jdbc.secret") && err.contains("mode 0644"), "{err}");
    assert!(!err.contains(value), "the error showed the secret: {err}");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token = data.join("admin.token");
    std::fs::write(&token, "sdt_exposedAdminTokenValueAAAAAAAAAAAAAAAAAAAAAAAA\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (started, err) = run(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!started, "secretd started on a group-readable admin.token");
    assert!(err.contains("data/admin.token") && err.contains("mode 0640"), "{err}");
    assert!(!err.contains("exposedAdminToken"), "the error showed the token: {err}");
}

#[test]
fn config_check_warns_of_a_world_readable_credential_file() {
    permissive_umask();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jdbc-secret");
    std::fs::write(&secret, format!("{}\n", common::TEST_SECRET)).unwrap();
    let config = dir.path().join("secretd.yaml");
    std::fs::write(
        &config,
        format!(
            "secret:\n  type: jdbc\n  jdbc:\n    url: sqlite://{}/secrets.db\n    secret: file:{}\n",
            dir.path().display(),
            secret.display()
        ),
    )
    .unwrap();
    let check = ["config", "check", config.to_str().unwrap()];
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = run(dir.path(), &check);
    assert!(ok, "a warning, not an error: {err}");
    assert!(err.contains("warning") && err.contains(&secret.display().to_string()) && err.contains("0644"), "{err}");
    assert!(!err.contains(common::TEST_SECRET), "{err}");
    // Group-readable is how a Kubernetes Secret reaches a pod's fsGroup.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o440)).unwrap();
    let (ok, err) = run(dir.path(), &check);
    assert!(ok && !err.contains("warning"), "{err}");
}
