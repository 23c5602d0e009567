//! `secret.aws-secret-manager`: AWS Secrets Manager, in the platform's
//! shape (`access-key-id`, `secret-key-id`, `session-token`, and the
//! `sts-role-*` keys of an assumed role).

use async_trait::async_trait;

use super::{
    backend_block,
    shared::{empty_is_none, is_http_url},
    BackendBlock, BackendError, BuiltStore,
};
use crate::config::Credential;

backend_block! {
    #[derive(Debug)]
    pub struct AwsConfig {
        pub region: String,
        /// Another endpoint than AWS's (a VPC endpoint, a test server); empty
        /// means AWS's own.
        #[serde(alias = "endpoint-override", default, deserialize_with = "empty_is_none")]
        pub endpoint: Option<String>,
        /// Static credentials; without them the SDK's default chain is used
        /// (environment, profile, web identity, ECS, instance metadata).
        pub access_key_id: Option<Credential>,
        #[serde(alias = "secret-access-key")]
        pub secret_key_id: Option<Credential>,
        pub session_token: Option<Credential>,
        pub kms_key_id: Option<String>,
        /// Put in front of every secret name.
        #[serde(default = "default_name_prefix")]
        pub name_prefix: String,
        /// Days a deleted secret can be restored (7 to 30).
        #[serde(default = "default_recovery_window")]
        pub recovery_window_days: u8,
        /// Delete at once, without a recovery window.
        #[serde(default)]
        pub force_delete: bool,
        /// A role to assume through STS: the credentials above (or the
        /// default chain) sign only `AssumeRole`, and the role's temporary
        /// credentials sign the Secrets Manager calls.
        #[serde(default, deserialize_with = "empty_is_none")]
        pub sts_role_arn: Option<String>,
        /// What the role's trust policy may require as `sts:ExternalId`.
        #[serde(default)]
        pub sts_role_external_id: Option<ExternalId>,
        #[serde(default = "default_session_name")]
        pub sts_role_session_name: String,
        /// How long each set of temporary credentials lasts (15m to 12h).
        #[serde(default = "default_session_duration", with = "crate::config::de::duration")]
        pub sts_role_session_duration: std::time::Duration,
        /// Another STS endpoint than the region's; `endpoint` is for
        /// Secrets Manager only.
        #[serde(alias = "sts-endpoint-override", default, deserialize_with = "empty_is_none")]
        pub sts_endpoint: Option<String>,
    }
}

/// The role's external id. AWS does not treat it as a secret, but it is
/// often a shared one: it stays out of `Debug` all the same.
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct ExternalId(String);

impl std::fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExternalId(<redacted>)")
    }
}

/// AWS's own default session length.
fn default_session_duration() -> std::time::Duration {
    std::time::Duration::from_secs(3600)
}

fn default_session_name() -> String {
    "secretd".into()
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>`, in any of
/// AWS's partitions (`aws`, `aws-cn`, `aws-us-gov`, ...).
fn is_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let partition_ok = partition.starts_with("aws")
        && partition.len() <= 16
        && partition.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let name = resource.strip_prefix("role/").unwrap_or_default();
    let name_ok = !name.is_empty()
        && !name.ends_with('/')
        && name.len() <= 512
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c));
    partition_ok && account_ok && name_ok
}

fn default_name_prefix() -> String {
    "secretd/".into()
}

fn default_recovery_window() -> u8 {
    30
}

#[async_trait]
impl BackendBlock for AwsConfig {
    fn built_in(&self) -> bool {
        cfg!(feature = "aws")
    }

    fn validate(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str)) {
        if self.region.is_empty() {
            bad(&format!("{at}.region"), "must not be empty");
        }
        match (&self.access_key_id, &self.secret_key_id) {
            (Some(_), Some(_)) | (None, None) => {}
            _ => {
                bad(at, "access-key-id and secret-key-id go together (leave both out for the default credential chain)")
            }
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            bad(&format!("{at}.session-token"), "needs access-key-id and secret-key-id");
        }
        if !self.name_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)) {
            bad(
                &format!("{at}.name-prefix"),
                "holds a character that secret names do not allow (A-Z a-z 0-9 / _ + = . @ -)",
            );
        }
        if !self.force_delete && !(7..=30).contains(&self.recovery_window_days) {
            bad(&format!("{at}.recovery-window-days"), "must be 7 to 30");
        }
        if self.endpoint.as_deref().is_some_and(|e| !is_http_url(e)) {
            bad(&format!("{at}.endpoint"), "must start with http:// or https://");
        }
        self.validate_sts(at, bad);
    }

    fn write_only_settings(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.kms_key_id.is_some() {
            keys.push("kms-key-id");
        }
        if self.force_delete {
            keys.push("force-delete");
        }
        if self.recovery_window_days != default_recovery_window() {
            keys.push("recovery-window-days");
        }
        keys
    }

    fn credentials(&self) -> Vec<&Credential> {
        [&self.access_key_id, &self.secret_key_id, &self.session_token].into_iter().flatten().collect()
    }

    #[cfg(not(feature = "aws"))]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        Err(BackendError::not_built_in(at, super::BackendType::AwsSecretManager))
    }

    #[cfg(feature = "aws")]
    async fn build(&self, at: &str) -> Result<BuiltStore, BackendError> {
        use secretd_aws::{AssumeRole, AwsOptions, AwsStore, DeletePolicy, NamePrefix, StaticCredentials};
        let mut options = AwsOptions::new(self.region.clone());
        options.endpoint = self.endpoint.clone();
        options.credentials = match (&self.access_key_id, &self.secret_key_id) {
            (Some(id), Some(key)) => Some(StaticCredentials {
                access_key_id: id.source(),
                secret_access_key: key.source(),
                session_token: self.session_token.as_ref().map(|t| t.source()),
            }),
            _ => None,
        };
        if let Some(arn) = &self.sts_role_arn {
            let mut role = AssumeRole::new(arn.clone());
            role.external_id = self.sts_role_external_id.as_ref().map(|ExternalId(id)| id.clone());
            role.session_name = self.sts_role_session_name.clone();
            role.session_duration = self.sts_role_session_duration;
            role.sts_endpoint = self.sts_endpoint.clone();
            options.assume_role = Some(role);
        }
        options.kms_key_id = self.kms_key_id.clone();
        options.name_prefix =
            NamePrefix::new(&self.name_prefix).map_err(|e| BackendError::start(&format!("{at}.name-prefix"), e))?;
        options.delete = if self.force_delete {
            DeletePolicy::Force
        } else {
            DeletePolicy::RecoveryWindow(self.recovery_window_days)
        };
        options.timeout = self.timeout;
        options.max_attempts = 1;
        let store = AwsStore::connect(options).await.map_err(|e| BackendError::start(at, e))?;
        Ok(BuiltStore::plain(store))
    }
}

impl AwsConfig {
    /// The `sts-role-*` keys: each is checked alone, and the others need
    /// `sts-role-arn`.
    fn validate_sts(&self, at: &str, bad: &mut dyn FnMut(&str, &'static str)) {
        if let Some(arn) = &self.sts_role_arn {
            if !is_role_arn(arn) {
                bad(&format!("{at}.sts-role-arn"), "must be a role ARN: arn:aws:iam::<12-digit account>:role/<name>");
            }
        }
        let name = &self.sts_role_session_name;
        if !(2..=64).contains(&name.chars().count())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        {
            bad(&format!("{at}.sts-role-session-name"), "must be 2 to 64 of A-Z a-z 0-9 _ + = , . @ -");
        }
        let duration = self.sts_role_session_duration;
        if duration < std::time::Duration::from_secs(15 * 60) || duration > std::time::Duration::from_secs(12 * 3600) {
            bad(&format!("{at}.sts-role-session-duration"), "must be 15 minutes (PT15M) to 12 hours (PT12H)");
        }
        if let Some(ExternalId(id)) = &self.sts_role_external_id {
            if !(2..=1224).contains(&id.chars().count())
                || !id.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
            {
                bad(&format!("{at}.sts-role-external-id"), "must be 2 to 1224 of A-Z a-z 0-9 _ + = , . @ : / -");
            }
        }
        if self.sts_endpoint.as_deref().is_some_and(|e| !is_http_url(e)) {
            bad(&format!("{at}.sts-endpoint"), "must start with http:// or https://");
        }
        if self.sts_role_arn.is_none() {
            let set = [
                ("sts-role-external-id", self.sts_role_external_id.is_some()),
                ("sts-role-session-name", self.sts_role_session_name != default_session_name()),
                ("sts-role-session-duration", self.sts_role_session_duration != default_session_duration()),
                ("sts-endpoint", self.sts_endpoint.is_some()),
            ];
            for (key, _) in set.iter().filter(|(_, set)| *set) {
                bad(&format!("{at}.{key}"), "needs sts-role-arn");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(extra: &str) -> AwsConfig {
        serde_norway::from_str(&format!("region: us-east-1\n{extra}")).unwrap()
    }

    fn problems(extra: &str) -> Vec<(String, &'static str)> {
        let mut found = Vec::new();
        block(extra).validate("secret.aws-secret-manager", &mut |field, reason| found.push((field.to_owned(), reason)));
        found
    }

    #[test]
    fn role_arns_of_every_partition_pass_and_other_shapes_do_not() {
        for arn in [
            "arn:aws:iam::123456789012:role/kestra",
            "arn:aws-cn:iam::123456789012:role/path/to/kestra",
            "arn:aws-us-gov:iam::123456789012:role/a+b=c,d.e@f_g-h",
        ] {
            assert!(is_role_arn(arn), "{arn}");
        }
        for arn in [
            "arn",
            "arn:aws:iam::12345678901:role/short-account",
            "arn:aws:iam::123456789012:user/not-a-role",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:sts::123456789012:role/kestra",
            "arn:gcp:iam::123456789012:role/kestra",
            "arn:aws:iam:us-east-1:123456789012:role/kestra",
            "arn:aws:iam::123456789012:role/has space",
        ] {
            assert!(!is_role_arn(arn), "{arn}");
        }
    }

    #[test]
    fn a_full_sts_block_passes() {
        assert_eq!(
            problems(
                "sts-role-arn: arn:aws:iam::123456789012:role/kestra\nsts-role-external-id: ext-id\n\
                 sts-role-session-name: kestra@prod\nsts-role-session-duration: PT12H\n\
                 sts-endpoint-override: https://sts.us-east-1.amazonaws.com\n"
            ),
            []
        );
        let config = block("sts-role-arn: arn:aws:iam::123456789012:role/k\nsts-role-session-duration: PT15M\n");
        assert_eq!(config.sts_role_session_duration, std::time::Duration::from_secs(900));
        assert_eq!(config.sts_role_session_name, "secretd");
    }

    #[test]
    fn each_bad_sts_key_is_named_without_its_value() {
        let arn = "sts-role-arn: arn:aws:iam::123456789012:role/kestra\n";
        let cases = [
            ("sts-role-arn: arn:aws:iam::1234:role/SECRETCANARY\n".to_owned(), "sts-role-arn"),
            (format!("{arn}sts-role-session-duration: PT14M59S\n"), "sts-role-session-duration"),
            (format!("{arn}sts-role-session-duration: PT12H0.5S\n"), "sts-role-session-duration"),
            (format!("{arn}sts-role-session-name: x\n"), "sts-role-session-name"),
            (format!("{arn}sts-role-session-name: {}\n", "n".repeat(65)), "sts-role-session-name"),
            (format!("{arn}sts-role-session-name: SECRET CANARY\n"), "sts-role-session-name"),
            (format!("{arn}sts-role-external-id: x\n"), "sts-role-external-id"),
            (format!("{arn}sts-role-external-id: {}\n", "e".repeat(1225)), "sts-role-external-id"),
            (format!("{arn}sts-endpoint: sts.example.com\n"), "sts-endpoint"),
            ("sts-role-external-id: SECRETCANARY\n".to_owned(), "sts-role-external-id"),
            ("sts-endpoint-override: http://127.0.0.1:1\n".to_owned(), "sts-endpoint"),
            ("sts-role-session-duration: PT2H\n".to_owned(), "sts-role-session-duration"),
        ];
        for (yaml, key) in cases {
            let found = problems(&yaml);
            assert_eq!(found.len(), 1, "{yaml}: {found:?}");
            assert_eq!(found[0].0, format!("secret.aws-secret-manager.{key}"), "{yaml}");
            assert!(!found[0].1.contains("CANARY"), "{yaml}: {}", found[0].1);
        }
    }

    #[test]
    fn debug_leaves_out_the_external_id() {
        let config = block("sts-role-arn: arn:aws:iam::123456789012:role/k\nsts-role-external-id: SECRETCANARY\n");
        let shown = format!("{config:?}");
        assert!(!shown.contains("SECRETCANARY") && shown.contains("ExternalId(<redacted>)"), "{shown}");
    }
}
