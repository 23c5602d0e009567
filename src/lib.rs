//! secretd: a pluggable secrets broker daemon.
//!
//! Services call secretd over gRPC instead of holding cloud credentials.
//! Each call goes through [`broker`]: validation, authorization
//! ([`policy`]), the [`cache`], then the backend built by [`backends`] from
//! the [`config`]. [`server`] is the gRPC face; `main.rs` the CLI.

pub mod backends;
pub mod broker;
pub mod cache;
pub mod config;
pub mod policy;
pub mod server;
pub mod status;

/// Generated gRPC code for `proto/secretd/v1/broker.proto`.
pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("secretd.v1");
    /// For gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("secretd_descriptor");
}

use std::sync::Arc;

use base64::Engine;

use crate::{
    broker::{Broker, Limits},
    cache::SecretCache,
    config::Config,
    policy::Policy,
};

/// A fresh random secret for `jdbc.secret` (256 bits, base64: 44 characters).
pub fn keygen() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Builds the broker described by `config`: connects the backend (running
/// its migrations) and sets up the cache and the policy.
pub async fn build_broker(config: &Config) -> Result<Arc<Broker>, backends::BackendError> {
    let store = backends::build_store(config).await?;
    let limits = Limits { max_value_size: config.secret.max_value_size, max_batch_size: config.secret.max_batch_size };
    Ok(Arc::new(Broker::new(
        store,
        SecretCache::new(&config.secret.cache),
        Policy::new(&config.secret.isolation),
        limits,
    )))
}
