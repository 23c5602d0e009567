//! The README's quick start, run as written: the `sh` blocks of its
//! "Quick start" section are read from README.md, the client lines run
//! line by line in one bash against a dev daemon started with the serve
//! line of scripts/dev.sh, and each answer is checked against what the
//! lines before it did (a get returns the value put, a list names the
//! keys, a token list names the tokens created, and so on).
//!
//! Only two things are substituted: the test's own binary for
//! `target/release/secretd` (and dev.sh's `"$bin"`), and a free port,
//! given to the daemon with `--listen` and to the CLI as SECRETD_ADDR (as
//! dev.sh exports it), so the test never meets another instance on 7878.

mod common;

use std::{
    collections::BTreeMap,
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;

const RELEASE_BINARY: &str = "target/release/secretd";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of each ```sh block between `## Quick start` and the next
/// `## ` heading.
fn quick_start_blocks(readme: &str) -> Vec<Vec<String>> {
    let section = readme.split_once("\n## Quick start\n").expect("README.md has a `## Quick start` section").1;
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(lines), text) if !text.trim().is_empty() => lines.push(text.to_owned()),
            _ => {}
        }
    }
    assert!(current.is_none(), "a ```sh block of the quick start is not closed");
    blocks
}

/// Splits a shell line into words the way the quick start writes them:
/// single and double quotes, a `|`, a trailing `# comment`.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let text = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    text.push(q);
                }
            }
            '#' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            '|' if word.is_none() => words.push("|".to_owned()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The value of `--name`-style option `flag` in `args`.
fn option<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// The arguments that are not options or option values.
fn positionals(args: &[String]) -> Vec<&str> {
    let mut found = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg.starts_with('-') {
            iter.next();
        } else {
            found.push(arg.as_str());
        }
    }
    found
}

/// The dev daemon, stopped when dropped.
struct DevDaemon(Child);

impl Drop for DevDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the daemon with the `"$bin" serve ...` line of scripts/dev.sh.
fn start_dev_daemon(bin: &str, dir: &Path, port: u16) -> DevDaemon {
    let script = std::fs::read_to_string(repo().join("scripts/dev.sh")).expect("scripts/dev.sh");
    let serve = script
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("\"$bin\" serve"))
        .expect("scripts/dev.sh starts the daemon with a `\"$bin\" serve` line");
    let args: Vec<String> = words(serve.trim_end_matches('&')).into_iter().skip(1).collect();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let child = Command::new(bin)
        .args(&args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("SECRETD_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("SECRETD_CONFIG")
        .env_remove("SECRETD_JDBC_SECRET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the dev daemon");
    let daemon = DevDaemon(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "the dev daemon did not listen on {port}; its log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// What one line of the quick start did.
struct Ran {
    line: String,
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `lines` in one bash in `dir`, each on its own, keeping the shell's
/// variables from line to line; a line that assigns `NAME=$(...)` has the
/// value it captured as its stdout.
fn run_lines(lines: &[String], dir: &Path, env: &[(&str, String)]) -> Vec<Ran> {
    let mut script = String::from("set -o pipefail\n");
    for (i, line) in lines.iter().enumerate() {
        script.push_str(&format!("{{ {line}\n}} >out.{i} 2>err.{i}\necho $? >rc.{i}\n"));
        let assigned = line.split_once("=$(").map(|(name, _)| name).filter(|n| !n.contains(' '));
        if let Some(name) = assigned {
            script.push_str(&format!("printf '%s' \"${name}\" >out.{i}\n"));
        }
    }
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(&script).current_dir(dir).stdin(Stdio::null());
    for var in ["SECRETD_CONFIG", "SECRETD_TOKEN", "SECRETD_USER", "SECRETD_NAMESPACE", "SECRETD_TENANT"] {
        bash.env_remove(var);
    }
    bash.env_remove("SECRETD_JDBC_SECRET").env_remove("SECRETD_CA_CERT");
    for (name, value) in env {
        bash.env(name, value);
    }
    let out = bash.output().expect("run bash");
    assert!(out.status.success(), "bash failed: {}", String::from_utf8_lossy(&out.stderr));
    let read = |name: String| std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| Ran {
            line: line.clone(),
            status: read(format!("rc.{i}")).trim().parse().unwrap(),
            stdout: read(format!("out.{i}")),
            stderr: read(format!("err.{i}")),
        })
        .collect()
}

/// What the lines so far have stored, to check each answer against.
#[derive(Default)]
struct Expected {
    secrets: BTreeMap<(String, String), String>,
    tokens: BTreeMap<String, String>,
}

impl Expected {
    /// The value a read of `namespace/key` finds: the namespace's own, or
    /// the nearest parent's.
    fn inherited(&self, namespace: &str, key: &str) -> Option<&String> {
        let mut ns = namespace;
        loop {
            if let Some(value) = self.secrets.get(&(ns.to_owned(), key.to_owned())) {
                return Some(value);
            }
            ns = ns.rsplit_once('.')?.0;
        }
    }

    /// Checks what `ran` printed and records what it changed.
    fn check(&mut self, ran: &Ran) {
        let Ran { line, stdout, .. } = ran;
        let all = words(line);
        let (stdin, command) = match all.iter().position(|w| w == "|") {
            Some(pipe) => {
                let echo = &all[..pipe];
                assert_eq!(echo.first().map(String::as_str), Some("echo"), "{line}: only `echo ... |` pipes are known");
                (echo.last().cloned(), all[pipe + 1..].to_vec())
            }
            None => (None, all),
        };
        // `NAME=$($B verb ...)` and `NAME=VALUE $B verb ...` alike: the
        // words after `$B`.
        let Some(at) = command.iter().position(|w| w == "$B" || w.ends_with("=$($B")) else {
            panic!("{line}: a client line of the quick start runs $B");
        };
        let mut args = command[at + 1..].to_vec();
        if let Some(last) = args.last_mut() {
            if let Some(inside) = last.strip_suffix(')') {
                *last = inside.to_owned();
            }
        }
        let verb: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
        let namespace = option(&args, "-n").unwrap_or("default").to_owned();
        match verb.as_slice() {
            ["put", ..] => {
                let found = positionals(&args[1..]);
                let (key, value) = match (found.as_slice(), &stdin) {
                    ([key], Some(value)) => (key.to_string(), value.clone()),
                    ([key, value], None) => (key.to_string(), value.to_string()),
                    _ => panic!("{line}: put takes a key and a value from an argument or stdin"),
                };
                assert!(stdout.starts_with("version "), "{line}: a put prints the new version: {stdout:?}");
                self.secrets.insert((namespace, key), value);
            }
            ["get", ..] => {
                let key = positionals(&args[1..]).first().expect("get names a key").to_string();
                let expected = self
                    .inherited(&namespace, &key)
                    .unwrap_or_else(|| panic!("{line}: nothing before it put {key} where {namespace} reads"));
                assert_eq!(stdout, expected, "{line}: get prints the raw value put");
            }
            ["list", ..] => {
                for ((ns, key), value) in &self.secrets {
                    if *ns == namespace {
                        assert!(stdout.contains(key.as_str()), "{line}: the list names {key}: {stdout}");
                    }
                    assert!(!stdout.contains(value.as_str()), "{line}: a list shows no value: {stdout}");
                }
            }
            ["delete", ..] => {
                let key = positionals(&args[1..]).first().expect("delete names a key").to_string();
                let removed = self.secrets.remove(&(namespace.clone(), key.clone()));
                assert!(removed.is_some(), "{line}: nothing before it put {namespace}/{key}");
            }
            ["token", "create"] => {
                let name = option(&args, "--name").expect("token create names the token").to_owned();
                let token = stdout.trim();
                assert!(token.starts_with("sdt_") && !token.contains(char::is_whitespace), "{line}: {stdout:?}");
                self.tokens.insert(name, token.to_owned());
            }
            ["token", "list"] => {
                assert!(!self.tokens.is_empty(), "{line}: the quick start lists tokens after creating some");
                for (name, token) in &self.tokens {
                    assert!(stdout.lines().any(|l| l.starts_with(&format!("{name}\t"))), "{line}: lists {name}");
                    assert!(!stdout.contains(token.as_str()), "{line}: a token list shows no token");
                }
            }
            ["keygen", ..] => {
                let key =
                    base64::engine::general_purpose::STANDARD.decode(stdout.trim()).expect("keygen prints base64");
                assert_eq!(key.len(), 32, "{line}: a 32-byte secret");
            }
            ["config", "check"] => {
                let file = positionals(&args[2..]).first().expect("config check names a file").to_string();
                assert_eq!(stdout.trim(), format!("{file}: ok"), "{line}");
            }
            ["access", "explain"] => {
                let who = option(&args, "--principal").expect("the quick start explains a principal");
                assert!(stdout.starts_with(&format!("principal {who} ")), "{line}: {stdout}");
                assert!(stdout.lines().any(|l| l.starts_with(&format!("{namespace}\t"))), "{line}: {stdout}");
            }
            _ => panic!("{line}: add what `{}` should print to tests/readme.rs", verb.join(" ")),
        }
    }
}

/// The first block's lines are the repository's own scripts: they exist,
/// may be run, and parse.
#[test]
fn the_quick_start_scripts_exist_and_parse() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = quick_start_blocks(&readme);
    let scripts: Vec<String> =
        blocks.iter().flatten().filter(|l| !l.contains("$B")).filter_map(|l| words(l).first().cloned()).collect();
    assert!(scripts.iter().any(|s| s == "scripts/dev.sh"), "the quick start starts with scripts/dev.sh: {scripts:?}");
    for script in scripts.iter().filter(|s| !s.starts_with("B=")) {
        let path = repo().join(script);
        let mode = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{script}: {e}")).permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is executable");
        let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(syntax.status.success(), "{script}: {}", String::from_utf8_lossy(&syntax.stderr));
    }
}

/// Every client line of the quick start succeeds, in order, against the
/// dev daemon, and prints what the lines before it lead one to expect.
#[test]
fn the_quick_start_client_lines_work_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines: Vec<String> =
        quick_start_blocks(&readme).into_iter().filter(|b| b.iter().any(|l| l.contains("$B"))).flatten().collect();
    assert!(
        lines.first().is_some_and(|l| words(l).first().map(String::as_str) == Some(&format!("B={RELEASE_BINARY}"))),
        "the client block starts with B={RELEASE_BINARY}: {lines:?}"
    );
    let bin = common::bin();
    let lines: Vec<String> = lines.iter().map(|l| l.replace(RELEASE_BINARY, bin)).collect();
    for verb in ["put", "get", "token create"] {
        assert!(lines.iter().any(|l| l.contains(&format!("$B {verb} "))), "the quick start shows `{verb}`");
    }

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("config"), &dir.path().join("config"));
    let port = free_port();
    let _daemon = start_dev_daemon(bin, dir.path(), port);
    let ran = run_lines(&lines, dir.path(), &[("SECRETD_ADDR", format!("127.0.0.1:{port}"))]);

    let mut expected = Expected::default();
    for (i, ran) in ran.iter().enumerate() {
        assert!(
            ran.status == 0 && !ran.stderr.contains("error"),
            "{}: exit {}\nstdout: {}\nstderr: {}",
            ran.line,
            ran.status,
            ran.stdout,
            ran.stderr
        );
        if i > 0 {
            expected.check(ran);
        }
    }
}
