//! Who may do what, as one pure function: [`Policy::decide`].
//!
//! In order, first refusal wins:
//! 1. isolation: a principal whose service type is in
//!    `secret.isolation.denied-services` is refused every call;
//! 2. permission: the principal must hold the action's permission (`admin`
//!    holds all);
//! 3. the principal's own namespace globs (a token made with
//!    `--namespace 'company.*'`), when it has any;
//! 4. `access.rules` that apply to the principal (by name or service type):
//!    a matching `deny` glob refuses, else a matching `allow` glob admits,
//!    else `access.default-access` decides.
//!
//! The decision looks only at the caller, the action and the name, never at
//! whether the secret exists, so a refusal tells nothing about existence.
//! Globs use `*` (any run of characters, `.` and `/` included) and `?`, over
//! `TENANT/NAMESPACE/KEY`: `main/company.*/db/*`.

use std::{collections::BTreeSet, sync::Arc};

use secretd_core::{Namespace, SecretName, Tenant};
use wildmatch::WildMatch;

use crate::{
    auth::Principal,
    config::{AccessConfig, DefaultAccess, IsolationConfig, Permission},
};

/// What a call wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    List,
    Write,
    Delete,
    /// Managing tokens.
    Admin,
}

impl Action {
    fn permission(self) -> Permission {
        match self {
            Action::Read => Permission::Read,
            Action::List => Permission::List,
            Action::Write => Permission::Write,
            Action::Delete => Permission::Delete,
            Action::Admin => Permission::Admin,
        }
    }
}

/// What a call acts on.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Secret(&'a SecretName),
    /// Listing a namespace.
    Namespace(&'a Tenant, &'a Namespace),
    /// Token management.
    Tokens,
}

/// Who is calling, as established by authentication.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    /// `ip:port` or `unix:...`, for the audit record.
    pub peer: String,
}

/// A `TENANT/NAMESPACE/KEY` glob.
#[derive(Debug)]
struct NameGlob {
    source: String,
    tenant: WildMatch,
    namespace: WildMatch,
    key: WildMatch,
    /// The key part matches every key (`*`): the glob covers whole namespaces.
    any_key: bool,
}

impl NameGlob {
    fn parse(source: &str) -> Option<Self> {
        let mut parts = source.splitn(3, '/');
        let (tenant, namespace, key) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Self {
            source: source.to_owned(),
            tenant: WildMatch::new(tenant),
            namespace: WildMatch::new(namespace),
            key: WildMatch::new(key),
            any_key: key.chars().all(|c| c == '*') && !key.is_empty(),
        })
    }

    /// For a listing, an allow glob admits the namespace if any key could
    /// match; a deny glob refuses it only if it covers every key.
    fn matches(&self, target: &Target<'_>, deny: bool) -> bool {
        match target {
            Target::Secret(n) => {
                self.tenant.matches(n.tenant.as_str())
                    && self.namespace.matches(n.namespace.as_str())
                    && self.key.matches(n.key.as_str())
            }
            Target::Namespace(t, ns) => {
                self.tenant.matches(t.as_str()) && self.namespace.matches(ns.as_str()) && (!deny || self.any_key)
            }
            Target::Tokens => false,
        }
    }
}

#[derive(Debug)]
struct Rule {
    principals: Vec<String>,
    services: Vec<String>,
    allow: Vec<NameGlob>,
    deny: Vec<NameGlob>,
}

impl Rule {
    fn applies_to(&self, p: &Principal) -> bool {
        self.applies(&p.name, &p.service)
    }

    fn applies(&self, name: &str, service: &str) -> bool {
        (self.principals.is_empty() && self.services.is_empty())
            || self.principals.iter().any(|n| n == name)
            || self.services.iter().any(|s| s == service)
    }
}

/// The compiled rules.
#[derive(Debug, Default)]
pub struct Policy {
    denied_services: BTreeSet<String>,
    default_access: DefaultAccess,
    rules: Vec<Rule>,
}

/// Why a call may proceed, or why not: for the caller (refusals only) and
/// the audit record.
pub type Decision = Result<&'static str, Denial>;

/// A refusal: which kind of rule refused (a fixed word, the metrics label)
/// and why, in words for the caller and the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub rule: &'static str,
    pub reason: String,
}

impl Denial {
    /// Refused for who the caller is (isolation, permissions), not for
    /// where it looks: every namespace would be refused alike.
    pub fn is_caller_wide(&self) -> bool {
        matches!(self.rule, "isolation" | "permission")
    }
}

impl Policy {
    /// Globs that do not parse were refused by config validation; any that
    /// slip through are dropped here (and so never admit anything).
    pub fn new(isolation: &IsolationConfig, access: &AccessConfig) -> Self {
        let denied_services =
            if isolation.enabled { isolation.denied_services.iter().cloned().collect() } else { BTreeSet::new() };
        let globs = |list: &[String]| list.iter().filter_map(|g| NameGlob::parse(g)).collect();
        let rules = access
            .rules
            .iter()
            .map(|r| Rule {
                principals: r.principals.clone(),
                services: r.services.clone(),
                allow: globs(&r.allow),
                deny: globs(&r.deny),
            })
            .collect();
        Self { denied_services, default_access: access.default_access, rules }
    }

    /// The decision, with the reasons the caller and the audit see.
    pub fn decide(&self, caller: &Caller, action: Action, target: Target<'_>) -> Decision {
        let verdict = self.judge(caller, action, target);
        if verdict.allowed {
            return Ok(match verdict.step {
                Step::Rule { .. } => "allowed by access.rules",
                Step::DefaultAccess => "access.default-access: allow",
                _ => "admin permission",
            });
        }
        let p = &caller.principal;
        let reason = match verdict.step {
            Step::Isolation => format!("service type {} is denied by secret.isolation.denied-services", p.service),
            Step::Permission => {
                format!("principal {} lacks the {} permission", p.name, action.permission().as_str())
            }
            Step::PrincipalLimits => match target {
                Target::Secret(n) => {
                    format!("{}/{} is outside principal {}'s tenants and namespaces", n.tenant, n.namespace, p.name)
                }
                Target::Namespace(t, ns) => {
                    format!("{t}/{ns} is outside principal {}'s tenants and namespaces", p.name)
                }
                Target::Tokens => format!("outside principal {}'s tenants and namespaces", p.name),
            },
            Step::Rule { .. } => format!("denied by {}", self.rule_text(verdict.step).unwrap_or_default()),
            Step::DefaultAccess | Step::AdminPermission => {
                "no access rule allows it (access.default-access: deny)".into()
            }
            // The policy never judges a backend: the broker adds that step.
            Step::BackendIsolation => "refused by the backend's isolation".into(),
        };
        Err(Denial { rule: verdict.step.label(), reason })
    }

    /// Which step decided, without building any message: the one
    /// implementation of the order above, for [`decide`](Self::decide) and
    /// for `access explain`.
    pub fn judge(&self, caller: &Caller, action: Action, target: Target<'_>) -> Verdict {
        let p = &caller.principal;
        let verdict = |allowed, step| Verdict { allowed, step };
        if self.denied_services.contains(&p.service) {
            return verdict(false, Step::Isolation);
        }
        if !p.can(action.permission()) {
            return verdict(false, Step::Permission);
        }
        let place = match target {
            Target::Secret(n) => Some((&n.tenant, &n.namespace)),
            Target::Namespace(t, ns) => Some((t, ns)),
            Target::Tokens => None,
        };
        if let Some((tenant, ns)) = place {
            if !p.reaches(tenant, ns) {
                return verdict(false, Step::PrincipalLimits);
            }
        }
        if matches!(target, Target::Tokens) {
            return verdict(true, Step::AdminPermission);
        }
        let applicable = || self.rules.iter().enumerate().filter(|(_, r)| r.applies_to(p));
        for (rule, r) in applicable() {
            if let Some(glob) = r.deny.iter().position(|g| g.matches(&target, true)) {
                return verdict(false, Step::Rule { rule, glob, deny: true });
            }
        }
        for (rule, r) in applicable() {
            if let Some(glob) = r.allow.iter().position(|g| g.matches(&target, false)) {
                return verdict(true, Step::Rule { rule, glob, deny: false });
            }
        }
        verdict(self.default_access == DefaultAccess::Allow, Step::DefaultAccess)
    }

    /// Whether exactly the access rules that apply to `principal` apply to
    /// a principal named `name` of type `service`: then the rules judge
    /// both alike on every name, and a token of that name and service is
    /// no wider than `principal` wherever its own limits let it go.
    pub fn rules_apply_alike(&self, principal: &Principal, name: &str, service: &str) -> bool {
        self.rules.iter().all(|r| r.applies_to(principal) == r.applies(name, service))
    }

    /// `access.rules[i] deny "glob"` for a rule step.
    pub fn rule_text(&self, step: Step) -> Option<String> {
        let Step::Rule { rule, glob, deny } = step else { return None };
        let r = self.rules.get(rule)?;
        let (list, word) = if deny { (&r.deny, "deny") } else { (&r.allow, "allow") };
        Some(format!("access.rules[{rule}] {word} {:?}", list.get(glob)?.source))
    }

    /// What `access.default-access` says.
    pub fn default_access(&self) -> DefaultAccess {
        self.default_access
    }
}

/// The step of the policy that decided a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `secret.isolation.denied-services` names the caller's service type.
    Isolation,
    /// The caller lacks the action's permission.
    Permission,
    /// The name is outside the principal's own tenants and namespaces.
    PrincipalLimits,
    /// Token management, which needs only the `admin` permission.
    AdminPermission,
    /// An `access.rules` glob: the `glob`-th of rule `rule`'s deny or allow list.
    Rule { rule: usize, glob: usize, deny: bool },
    /// No rule matched: `access.default-access`.
    DefaultAccess,
    /// The `isolation.denied-services` of the `secret.dedicated` backend
    /// that serves the namespace (the broker's check, after the policy's).
    BackendIsolation,
}

impl Step {
    /// A fixed word per step: the metrics label of refusals.
    pub fn label(self) -> &'static str {
        match self {
            Step::Isolation => "isolation",
            Step::Permission => "permission",
            Step::PrincipalLimits => "namespaces",
            Step::AdminPermission => "admin",
            Step::Rule { .. } => "access_rule",
            Step::DefaultAccess => "default_access",
            Step::BackendIsolation => "backend_isolation",
        }
    }
}

/// What [`Policy::judge`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub step: Step,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessRule;

    fn caller(name: &str, service: &str, permissions: &[Permission], namespaces: &[&str]) -> Caller {
        Caller {
            principal: Arc::new(Principal {
                name: name.into(),
                service: service.into(),
                permissions: permissions.iter().copied().collect(),
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                tenants: vec!["*".into()],
                expires_at: None,
            }),
            peer: "test".into(),
        }
    }

    fn name(tenant: &str, ns: &str, key: &str) -> SecretName {
        SecretName::parse(tenant, ns, key).unwrap()
    }

    #[test]
    fn decision_table() {
        use Permission::*;
        let isolation = IsolationConfig { enabled: true, denied_services: vec!["EXECUTOR".into()] };
        let access = AccessConfig {
            default_access: DefaultAccess::Deny,
            rules: vec![
                AccessRule {
                    services: vec!["WORKER".into()],
                    allow: vec!["main/company.*/*".into()],
                    ..Default::default()
                },
                AccessRule {
                    services: vec!["WORKER".into()],
                    deny: vec!["*/company.finance*/*".into(), "main/company.team/root-*".into()],
                    ..Default::default()
                },
                AccessRule { principals: vec!["ops".into()], allow: vec!["*/*/*".into()], ..Default::default() },
            ],
        };
        let policy = Policy::new(&isolation, &access);
        let worker = caller("w", "WORKER", &[Read, List], &[]);
        let scoped = caller("etl", "WORKER", &[Read], &["company.etl*"]);
        let executor = caller("e", "EXECUTOR", &[Admin], &[]);
        let ops = caller("ops", "SCHEDULER", &[Read, Write], &[]);
        let team_db = name("main", "company.team", "db");
        let cases: Vec<(&Caller, Action, SecretName, bool)> = vec![
            (&worker, Action::Read, team_db.clone(), true),
            (&worker, Action::Write, team_db.clone(), false), // lacks write
            (&worker, Action::Read, name("main", "company.finance", "k"), false), // deny glob
            (&worker, Action::Read, name("main", "company.team", "root-pw"), false), // deny on key
            (&worker, Action::Read, name("acme", "company.team", "db"), false), // default deny
            (&worker, Action::Read, name("main", "other", "db"), false), // default deny
            (&scoped, Action::Read, name("main", "company.etl.jobs", "x"), true),
            (&scoped, Action::Read, team_db.clone(), false), // principal namespaces
            (&executor, Action::Read, team_db.clone(), false), // isolation beats admin
            (&ops, Action::Write, name("acme", "anything", "x"), true),
            (&ops, Action::Delete, team_db.clone(), false),
        ];
        for (i, (c, action, n, allowed)) in cases.into_iter().enumerate() {
            let decision = policy.decide(c, action, Target::Secret(&n));
            assert_eq!(decision.is_ok(), allowed, "case {i}: {} {action:?} {n}: {decision:?}", c.principal.name);
        }
        // Listing: a key-specific deny does not hide the namespace; a
        // whole-namespace deny does.
        let t = Tenant::parse("main").unwrap();
        let team = Namespace::parse("company.team").unwrap();
        let finance = Namespace::parse("company.finance").unwrap();
        assert!(policy.decide(&worker, Action::List, Target::Namespace(&t, &team)).is_ok());
        assert!(policy.decide(&worker, Action::List, Target::Namespace(&t, &finance)).is_err());
        assert!(policy.decide(&executor, Action::Admin, Target::Tokens).is_err());
        assert!(policy.decide(&caller("a", "ADMIN", &[Admin], &[]), Action::Admin, Target::Tokens).is_ok());
        assert!(policy.decide(&worker, Action::Admin, Target::Tokens).is_err());
    }

    #[test]
    fn isolation_off_and_default_allow() {
        let policy = Policy::new(
            &IsolationConfig { enabled: false, denied_services: vec!["EXECUTOR".into()] },
            &AccessConfig::default(),
        );
        let executor = caller("e", "EXECUTOR", &[Permission::Read], &[]);
        assert!(policy.decide(&executor, Action::Read, Target::Secret(&name("main", "a", "k"))).is_ok());
    }
}
