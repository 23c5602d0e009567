//! The gRPC server: the `SecretBroker` service, health and reflection.
//!
//! This layer only converts between protobuf messages and the broker's
//! types; behaviour lives in [`crate::broker`]. [`run`] serves on a listener
//! it is given until a shutdown future completes, so tests start a real
//! server on port 0 and stop it cleanly, and `main` does the same with
//! SIGTERM/SIGINT.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use prost_types::Timestamp;
use secretd_core::{SecretMetadata, SecretValue, Tags};
use tokio::net::TcpListener;
use tonic::{transport::server::TcpIncoming, Request, Response, Status};
use tonic_health::ServingStatus;

use crate::{
    broker::{Broker, Ref, Resolved},
    cache::Origin,
    policy::Caller,
    proto::{
        self,
        batch_get_result::Result as ItemResult,
        secret_broker_server::{SecretBroker, SecretBrokerServer},
    },
};

/// The gRPC face of a [`Broker`].
pub struct BrokerService {
    broker: Arc<Broker>,
}

impl BrokerService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// Who is calling. Authentication is built by the security work; until
    /// then every caller is the local dev caller, which is why the dev
    /// instance listens on loopback only.
    fn caller<T>(&self, _request: &Request<T>) -> Caller {
        Caller::local()
    }
}

fn to_response(resolved: &Resolved) -> proto::GetSecretResponse {
    let meta = &resolved.secret.metadata;
    proto::GetSecretResponse {
        value: Bytes::copy_from_slice(resolved.secret.value.expose()),
        version: meta.version.to_string(),
        tags: meta.tags.as_map().clone().into_iter().collect(),
        namespace: meta.name.namespace.to_string(),
        source: match resolved.origin {
            Origin::Backend => proto::Source::Backend,
            Origin::Cache => proto::Source::Cache,
        } as i32,
    }
}

fn to_metadata(meta: SecretMetadata) -> proto::SecretMetadata {
    proto::SecretMetadata {
        tenant: meta.name.tenant.to_string(),
        namespace: meta.name.namespace.to_string(),
        key: meta.name.key.to_string(),
        version: meta.version.to_string(),
        tags: meta.tags.into_inner().into_iter().collect(),
        created_at: Some(Timestamp::from(meta.created_at)),
        updated_at: Some(Timestamp::from(meta.updated_at)),
    }
}

fn to_tags(map: std::collections::HashMap<String, String>) -> Tags {
    map.into_iter().collect()
}

#[tonic::async_trait]
impl SecretBroker for BrokerService {
    async fn get_secret(
        &self,
        request: Request<proto::GetSecretRequest>,
    ) -> Result<Response<proto::GetSecretResponse>, Status> {
        let caller = self.caller(&request);
        let req = request.get_ref();
        let r = Ref { tenant: &req.tenant, namespace: &req.namespace, key: &req.key, version: &req.version };
        let resolved = self.broker.get(&caller, r).await?;
        Ok(Response::new(to_response(&resolved)))
    }

    async fn batch_get_secrets(
        &self,
        request: Request<proto::BatchGetSecretsRequest>,
    ) -> Result<Response<proto::BatchGetSecretsResponse>, Status> {
        let caller = self.caller(&request);
        let refs = &request.get_ref().refs;
        let asked = refs
            .iter()
            .map(|r| Ref { tenant: &r.tenant, namespace: &r.namespace, key: &r.key, version: &r.version })
            .collect();
        let answers = self.broker.batch_get(&caller, asked).await?;
        let results = refs
            .iter()
            .zip(answers)
            .map(|(r, answer)| proto::BatchGetResult {
                r#ref: Some(r.clone()),
                result: Some(match answer {
                    Ok(resolved) => ItemResult::Secret(to_response(&resolved)),
                    Err(status) => ItemResult::Error(proto::ItemError {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                }),
            })
            .collect();
        Ok(Response::new(proto::BatchGetSecretsResponse { results }))
    }

    async fn list_secrets(
        &self,
        request: Request<proto::ListSecretsRequest>,
    ) -> Result<Response<proto::ListSecretsResponse>, Status> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let page = self
            .broker
            .list(&caller, &req.tenant, &req.namespace, to_tags(req.tags), req.page_size, &req.page_token)
            .await?;
        Ok(Response::new(proto::ListSecretsResponse {
            secrets: page.items.into_iter().map(to_metadata).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        }))
    }

    async fn put_secret(
        &self,
        request: Request<proto::PutSecretRequest>,
    ) -> Result<Response<proto::PutSecretResponse>, Status> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        // The request buffer itself is tonic's; the copy we keep is wiped on drop.
        let value = SecretValue::from_slice(&req.value);
        let r = Ref { tenant: &req.tenant, namespace: &req.namespace, key: &req.key, version: "" };
        let version = self.broker.put(&caller, r, value, to_tags(req.tags), &req.description).await?;
        Ok(Response::new(proto::PutSecretResponse { version: version.to_string() }))
    }

    async fn delete_secret(
        &self,
        request: Request<proto::DeleteSecretRequest>,
    ) -> Result<Response<proto::DeleteSecretResponse>, Status> {
        let caller = self.caller(&request);
        let req = request.get_ref();
        let r = Ref { tenant: &req.tenant, namespace: &req.namespace, key: &req.key, version: "" };
        self.broker.delete(&caller, r).await?;
        Ok(Response::new(proto::DeleteSecretResponse {}))
    }
}

/// Serves the broker, health and reflection on `listener` until `shutdown`
/// completes, then lets in-flight calls finish.
pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    health_interval: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let health_task = tokio::spawn(watch_health(broker.clone(), health_reporter, health_interval));
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SecretBrokerServer::new(BrokerService::new(broker)))
        // No Nagle: small gRPC frames must not wait for delayed ACKs (a
        // 40 ms tail otherwise).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await;
    health_task.abort();
    result
}

/// Keeps `grpc.health.v1` in step with the backend: SERVING only while the
/// backend answers its health check.
async fn watch_health(broker: Arc<Broker>, reporter: tonic_health::server::HealthReporter, interval: Duration) {
    let service = <SecretBrokerServer<BrokerService> as tonic::server::NamedService>::NAME;
    let mut last = None;
    loop {
        let status = match broker.store().health().await {
            Ok(()) => ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, "backend health check failed");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            tracing::info!(?status, "health changed");
            reporter.set_service_status(service, status).await;
            reporter.set_service_status("", status).await;
            last = Some(status);
        }
        tokio::time::sleep(interval).await;
    }
}
