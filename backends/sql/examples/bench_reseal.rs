//! How long re-sealing takes (`secretd rekey`'s work), for the operator's
//! guide: seeds COUNT secrets under one secret in a fresh SQLite database
//! (or the database at URL, which must be empty), then times `reseal` under
//! a new one, and prints the figure. Run by `scripts/bench-rekey.sh`, never
//! by the test suite.
//!
//!   cargo run --release -p secretd-sql --example bench_reseal -- [COUNT] [URL]

use std::time::Instant;

use secrecy::SecretString;
use secretd_core::{Keyring, Reseal, SecretName, SecretStore, SecretValue, Tags};
use secretd_sql::{SqlOptions, SqlStore};

const OLD: &str = "bench-reseal-old-secret-0123456789abcdef";
const NEW: &str = "bench-reseal-new-secret-0123456789abcdef";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let scratch = tempfile::tempdir()?;
    let url = args.next().unwrap_or_else(|| format!("sqlite://{}", scratch.path().join("bench.db").display()));

    let seeding = Instant::now();
    let old = SqlStore::connect(&url, OLD, SqlOptions::default()).await?;
    // A realistic value: a 44-character generated password.
    let value = SecretValue::from_slice(b"c2VjcmV0ZC1iZW5jaC12YWx1ZS0wMTIzNDU2Nzg5YWI=");
    for i in 0..count {
        let name = SecretName::parse("main", &format!("bench.team{}", i % 50), &format!("service/{i}/password"))?;
        old.put(&name, &value, &Tags::new(), None).await?;
    }
    eprintln!("seeded {count} secrets in {:.1} s", seeding.elapsed().as_secs_f64());
    drop(old);

    let store =
        SqlStore::connect_with_keys(&url, Keyring::new(NEW, &[SecretString::from(OLD)])?, SqlOptions::default())
            .await?;
    let started = Instant::now();
    let report = store.reseal(&|_| {}).await?;
    let elapsed = started.elapsed().as_secs_f64();
    if report.resealed != count as u64 || !report.is_complete() {
        return Err(format!("expected {count} re-sealed, got {report:?}").into());
    }
    let started = Instant::now();
    let again = store.reseal(&|_| {}).await?;
    let idle = started.elapsed().as_secs_f64();
    println!(
        "reseal {} on {}: {count} values in {elapsed:.2} s ({:.0}/s); a second run (nothing to do) {idle:.2} s",
        store.dialect_name(),
        if url.starts_with("sqlite:") { "a fresh file" } else { "the given database" },
        count as f64 / elapsed,
    );
    assert_eq!(again.already_current, count as u64);
    Ok(())
}
