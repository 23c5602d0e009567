//! Tags: string key/value metadata on a secret, used for filtering and for
//! scoping one backend to one environment.

use std::collections::BTreeMap;

use crate::StoreError;

pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// An ordered map of tags. Ordered so that listings, hashes and test output
/// are stable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the generic limits: at most 50 tags, keys of 1 to 128 and
    /// values of at most 256 characters, no control characters. Backends may
    /// refuse more (with `InvalidName`) where their own alphabet is narrower.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.0.len() > MAX_TAGS {
            return Err(StoreError::invalid_name(format!("at most {MAX_TAGS} tags are allowed, got {}", self.0.len())));
        }
        for (k, v) in &self.0 {
            if k.is_empty() || k.chars().count() > MAX_TAG_KEY_LEN || k.chars().any(char::is_control) {
                return Err(StoreError::invalid_name(format!(
                    "invalid tag key {:?}: tag keys must be 1 to {MAX_TAG_KEY_LEN} characters without control characters",
                    crate::name::truncate(k)
                )));
            }
            if v.chars().count() > MAX_TAG_VALUE_LEN || v.chars().any(char::is_control) {
                return Err(StoreError::invalid_name(format!(
                    "invalid value for tag {:?}: tag values must be at most {MAX_TAG_VALUE_LEN} characters without control characters",
                    crate::name::truncate(k)
                )));
            }
        }
        Ok(())
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if every tag of `required` is present here with the same value.
    pub fn contains_all(&self, required: &Tags) -> bool {
        required.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// True if any tag of `other` is present here with the same value.
    pub fn contains_any(&self, other: &Tags) -> bool {
        other.iter().any(|(k, v)| self.get(k) == Some(v))
    }

    pub fn into_inner(self) -> BTreeMap<String, String> {
        self.0
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl From<BTreeMap<String, String>> for Tags {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_bad_key_is_not_echoed_whole() {
        let key = format!("{}\n", "k".repeat(1_000_000));
        let err = Tags::from_iter([(key.as_str(), "v")]).validate().unwrap_err();
        assert!(err.message().len() < 300, "{} bytes", err.message().len());
    }

    #[test]
    fn containment() {
        let t: Tags = [("a", "1"), ("b", "2")].into_iter().collect();
        assert!(t.contains_all(&[("a", "1")].into_iter().collect()));
        assert!(!t.contains_all(&[("a", "2")].into_iter().collect()));
        assert!(t.contains_all(&Tags::new()));
        assert!(t.contains_any(&[("x", "1"), ("b", "2")].into_iter().collect()));
        assert!(!t.contains_any(&Tags::new()));
    }

    #[test]
    fn limits() {
        assert!(Tags::from_iter([("", "x")]).validate().is_err());
        assert!(Tags::from_iter([("k", "a\nb")]).validate().is_err());
        assert!(Tags::from_iter([("k".repeat(129), "v")]).validate().is_err());
        assert!(Tags::from_iter([("k", "é".repeat(256))]).validate().is_ok());
        assert!((0..51).map(|i| (i.to_string(), "v")).collect::<Tags>().validate().is_err());
    }
}
