//! The contract between the secretd broker and the places secrets live.
//!
//! A backend implements [`SecretStore`] and speaks only to its own server;
//! the broker puts authentication, policy and caching in front of it. This
//! crate holds what every backend shares: validated names ([`SecretName`]),
//! values that wipe themselves ([`SecretValue`]), tags and their scoping
//! ([`TagScope`], [`ScopedStore`]), one error vocabulary ([`StoreError`]),
//! the AES-256-GCM envelope for stores that encrypt at rest ([`Envelope`],
//! [`Keyring`] for rotating its secret, [`Reseal`] for moving stored values
//! to the new one),
//! and, behind the `conformance` feature, the suite every backend must pass
//! unchanged.

mod credential;
mod envelope;
mod error;
mod name;
pub mod pacing;
mod reseal;
mod retry;
mod scope;
mod store;
mod tags;
mod value;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "test-util")]
pub mod testing;

pub use credential::{CredentialSource, RotatingSecret};
pub use envelope::{Envelope, EnvelopeError, Keyring, KeyringError, MIN_SECRET_LEN};
pub use error::{ErrorKind, StoreError};
pub use name::{Key, Namespace, SecretName, Tenant, DEFAULT_TENANT};
pub use reseal::{Reseal, ResealFailure, ResealOutcome, ResealProgress, ResealProgressFn, ResealReport};
pub use retry::{retry, RetryPolicy};
pub use scope::{ScopedStore, TagScope};
pub use store::{
    key_after_token, key_page_token, name_after_token, name_page_token, page_of_names, Capabilities, Page, PageRequest,
    ScanSelection, Secret, SecretMetadata, SecretStore, Version,
};
pub use tags::Tags;
pub use value::SecretValue;
