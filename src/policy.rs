//! Who may do what: the isolation rules, as one pure function.
//!
//! The platform's switch is `secret.isolation.denied-services`: a principal
//! of a denied service type (EXECUTOR, say) is refused every call, before
//! the cache or the backend is touched. The decision looks only at the
//! caller, the action and the name, never at whether the secret exists, so a
//! refusal tells nothing about existence.

use std::collections::BTreeSet;

use secretd_core::{Namespace, SecretName, Tenant};

use crate::config::IsolationConfig;

/// What a call wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    List,
    Write,
    Delete,
}

/// What a call acts on: one secret, or a namespace (for listing).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Secret(&'a SecretName),
    Namespace(&'a Tenant, &'a Namespace),
}

/// Who is calling, as established by authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal's name, for audit and errors.
    pub principal: String,
    /// The service type (WORKER, EXECUTOR, ...), when the principal has one.
    pub service: Option<String>,
}

impl Caller {
    /// The caller of a dev instance. There is no authentication yet, so
    /// every caller is this one and has no service type.
    pub fn local() -> Self {
        Self { principal: "local".into(), service: None }
    }
}

/// The compiled isolation rules.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    denied_services: BTreeSet<String>,
}

impl Policy {
    pub fn new(isolation: &IsolationConfig) -> Self {
        let denied_services =
            if isolation.enabled { isolation.denied_services.iter().cloned().collect() } else { BTreeSet::new() };
        Self { denied_services }
    }

    /// `Ok` if the call may proceed; otherwise the reason, for the caller
    /// and the audit record.
    pub fn decide(&self, caller: &Caller, _action: Action, _target: Target<'_>) -> Result<(), String> {
        if let Some(service) = &caller.service {
            if self.denied_services.contains(service) {
                return Err(format!(
                    "service type {service} may not resolve secrets (secret.isolation.denied-services)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(service: Option<&str>) -> Caller {
        Caller { principal: "p".into(), service: service.map(str::to_owned) }
    }

    #[test]
    fn isolation_table() {
        let on = Policy::new(&IsolationConfig { enabled: true, denied_services: vec!["EXECUTOR".into()] });
        let off = Policy::new(&IsolationConfig { enabled: false, denied_services: vec!["EXECUTOR".into()] });
        let name = SecretName::parse("", "a", "k").unwrap();
        let cases = [
            (&on, Some("EXECUTOR"), false),
            (&on, Some("WORKER"), true),
            (&on, None, true),
            (&off, Some("EXECUTOR"), true),
        ];
        for (policy, service, allowed) in cases {
            for action in [Action::Read, Action::List, Action::Write, Action::Delete] {
                assert_eq!(
                    policy.decide(&caller(service), action, Target::Secret(&name)).is_ok(),
                    allowed,
                    "{service:?} {action:?}"
                );
            }
        }
    }
}
