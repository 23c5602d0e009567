//! `secret.google-secret-manager`: Google Secret Manager, in the
//! platform's shape (`project`, `service-account: |`).

use std::fmt;

use async_trait::async_trait;
use serde::Deserialize;

use super::{backend_block, shared::empty_is_none, BackendBlock, BackendError, BuiltStore};
use crate::config::Credential;

backend_block! {
    #[derive(Debug)]
    pub struct GcpConfig {
        pub project: String,
        /// A service-account key as JSON, inline or `file:`; without it,
        /// application default credentials.
        pub service_account: Option<Credential>,
        /// Another endpoint than Google's (a private endpoint, an emulator).
        #[serde(default, deserialize_with = "empty_is_none")]
        pub endpoint: Option<String>,
        /// No credentials at all: for emulators only, with an `endpoint`.
        #[serde(default)]
        pub anonymous: bool,
        #[serde(default)]
        pub replication: GcpReplication,
        #[serde(default = "default_gcp_prefix")]
        pub name_prefix: String,
    }
}

/// `automatic` (the default), or `{locations: [us-east1, ...]}`.
#[derive(Debug, Default)]
pub enum GcpReplication {
    #[default]
    Default,
    Named(GcpReplicationName),
    Locations {
        locations: Vec<String>,
    },
}

#[derive(Debug)]
pub enum GcpReplicationName {
    Automatic,
}

/// By hand rather than `untagged`: serde's untagged error is a free-form
/// message, which configuration errors do not show.
impl<'de> Deserialize<'de> for GcpReplication {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Locations {
            locations: Vec<String>,
        }
        struct ReplicationVisitor;
        impl<'de> serde::de::Visitor<'de> for ReplicationVisitor {
            type Value = GcpReplication;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("automatic, or a block with the key `locations`")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<GcpReplication, E> {
                match name {
                    "automatic" => Ok(GcpReplication::Named(GcpReplicationName::Automatic)),
                    _ => Err(crate::config::de::reason("must be automatic, or a block with the key `locations`")),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<GcpReplication, A::Error> {
                let Locations { locations } =
                    Locations::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(GcpReplication::Locations { locations })
            }
        }
        deserializer.deserialize_any(ReplicationVisitor)
    }
}

fn default_gcp_prefix() -> String {
    "secretd".into()
}

#[async_trait]
impl BackendBlock for GcpConfig {
    fn built_in(&self) -> bool {
        cfg!(feature = "gcp")
    }

    fn validate(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str)) {
        if self.anonymous && self.endpoint.is_none() {
            bad(&format!("{at}.anonymous"), "is for emulators only and needs an endpoint");
        }
        if self.anonymous && self.service_account.is_some() {
            bad(at, "takes service-account or anonymous, not both");
        }
        if let GcpReplication::Locations { locations } = &self.replication {
            if locations.is_empty() {
                bad(&format!("{at}.replication.locations"), "needs at least one location");
            }
        }
    }

    fn write_only_settings(&self) -> Vec<&'static str> {
        // Replication is chosen when a secret is created.
        match self.replication {
            GcpReplication::Default => Vec::new(),
            _ => vec!["replication"],
        }
    }

    fn credentials(&self) -> Vec<&Credential> {
        self.service_account.iter().collect()
    }

    #[cfg(not(feature = "gcp"))]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        Err(BackendError::not_built_in(at, super::BackendType::GoogleSecretManager))
    }

    #[cfg(feature = "gcp")]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        use secretd_core::RetryPolicy;
        use secretd_gcp::{GcpCredentials, GcpOptions, GcpStore, NamePrefix, Replication};
        let credentials = match (&self.service_account, self.anonymous) {
            (Some(key), _) => GcpCredentials::ServiceAccount(key.source()),
            (None, true) => GcpCredentials::Anonymous,
            (None, false) => GcpCredentials::ApplicationDefault,
        };
        let mut options = GcpOptions::new(self.project.clone(), credentials);
        options.endpoint = self.endpoint.clone();
        options.replication = match &self.replication {
            GcpReplication::Locations { locations } => Replication::UserManaged(locations.clone()),
            GcpReplication::Default | GcpReplication::Named(_) => Replication::Automatic,
        };
        options.name_prefix =
            NamePrefix::new(&self.name_prefix).map_err(|e| BackendError::start(&format!("{at}.name-prefix"), e))?;
        options.timeout = self.timeout;
        options.retry = RetryPolicy::NONE;
        let store = GcpStore::connect(options).await.map_err(|e| BackendError::start(at, e))?;
        Ok(BuiltStore::plain(store))
    }
}
