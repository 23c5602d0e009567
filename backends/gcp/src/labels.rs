//! Tags as Secret Manager labels.
//!
//! Labels belong to the secret, not to a version, and have a narrow
//! alphabet: keys are 1 to 63 characters of `a-z 0-9 _ -` starting with a
//! lowercase letter, values 0 to 63 of the same characters, at most 64
//! labels. (Google also admits non-ASCII lowercase letters; secretd writes
//! ASCII only, which every emulator takes too.) secretd's tags are wider
//! (keys up to 128 characters, values up to 256, any characters but
//! controls), so each key and value is escaped into the label alphabet with
//! `_` as the escape character:
//!
//! | character | written as |
//! |---|---|
//! | `a-z 0-9 -` | itself |
//! | `_` | `__` |
//! | `A-Z` | `_` and the lowercase letter (`A` is `_a`) |
//! | anything else | `_`, its Unicode code point in decimal, `_` (`Ü` is `_220_`, a space `_32_`) |
//!
//! A key whose escaped form does not start with a letter other than `x`
//! (it starts with `x`, a digit, `-` or an escape) gets one more `x` in
//! front, which reading strips: `xray` is `xxray`, `1st` is `x1st`.
//!
//! So the common tags are their own labels (`application: prod`,
//! `owner: team-data`), and `note: Ünïcode ok` is `note: _220_n_239_code_32_ok`.
//! Every escape is read back unambiguously (after `_` comes `_`, a letter
//! or digits up to the closing `_`), so two different tags never share a
//! label and every tag reads back as written. A key or value whose escaped
//! form is longer than 63 characters is refused as `InvalidName`, never
//! shortened.
//!
//! Labels that are not the escaped form of anything (written by another
//! tool, say `cost_center`, whose `_c` is fine but `a_+` is not) are
//! ignored on read: reading keeps only labels that write back to exactly
//! themselves. One label is secretd's own: [`MANAGED_KEY`] marks the
//! secrets secretd wrote and keeps the label map of a secret without tags
//! non-empty (an update that sends no labels at all is read by some
//! emulators as "leave them"). Its `_-` is no escape, so no tag can
//! collide with it.

use std::collections::HashMap;

use secretd_core::{StoreError, Tags};

/// Secret Manager's limits on one label's key and value.
pub const MAX_LABEL_LEN: usize = 63;
/// Secret Manager's limit on labels per secret.
pub const MAX_LABELS: usize = 64;

/// The label secretd sets on every secret it writes.
pub const MANAGED_KEY: &str = "secretd_-managed";
pub const MANAGED_VALUE: &str = "true";

/// The escaped form of a tag key or value, before the key's `x` rule.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            'a'..='z' | '0'..='9' | '-' => out.push(c),
            '_' => out.push_str("__"),
            'A'..='Z' => {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            }
            c => {
                out.push('_');
                out.push_str(&u32::from(c).to_string());
                out.push('_');
            }
        }
    }
    out
}

/// Undoes [`escape`]; `None` for what it cannot have written.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            'a'..='z' | '0'..='9' | '-' => out.push(c),
            '_' => match chars.next()? {
                '_' => out.push('_'),
                l @ 'a'..='z' => out.push(l.to_ascii_uppercase()),
                d @ '0'..='9' => {
                    let mut digits = String::from(d);
                    loop {
                        match chars.next()? {
                            '_' => break,
                            d @ '0'..='9' if digits.len() < 7 => digits.push(d),
                            _ => return None,
                        }
                    }
                    out.push(char::from_u32(digits.parse().ok()?)?);
                }
                _ => return None,
            },
            _ => return None,
        }
    }
    // One spelling per character: `_97_` for `a` or `_065_` would read as
    // a tag that writes back differently, so such labels are not ours.
    (escape(&out) == s).then_some(out)
}

fn key_label(key: &str) -> String {
    let escaped = escape(key);
    match escaped.chars().next() {
        Some(c) if c.is_ascii_lowercase() && c != 'x' => escaped,
        _ => format!("x{escaped}"),
    }
}

fn key_from_label(label: &str) -> Option<String> {
    let key = match label.strip_prefix('x') {
        Some(rest) => unescape(rest)?,
        None if label.starts_with(|c: char| c.is_ascii_lowercase()) => unescape(label)?,
        None => return None,
    };
    (!key.is_empty() && key_label(&key) == label).then_some(key)
}

/// The labels for `tags`, secretd's own label included; `InvalidName` for
/// a tag that does not fit.
pub fn encode(tags: &Tags) -> Result<HashMap<String, String>, StoreError> {
    if tags.len() + 1 > MAX_LABELS {
        return Err(StoreError::invalid_name(format!(
            "Secret Manager holds at most {MAX_LABELS} labels per secret, one of them secretd's; got {} tags",
            tags.len()
        )));
    }
    let mut labels = HashMap::with_capacity(tags.len() + 1);
    for (k, v) in tags.iter() {
        let key = key_label(k);
        if key.len() > MAX_LABEL_LEN {
            return Err(StoreError::invalid_name(format!(
                "tag key {k:?} needs {} characters as a Secret Manager label key; the limit is {MAX_LABEL_LEN}",
                key.len()
            )));
        }
        let value = escape(v);
        if value.len() > MAX_LABEL_LEN {
            return Err(StoreError::invalid_name(format!(
                "the value of tag {k:?} needs {} characters as a Secret Manager label value; the limit is {MAX_LABEL_LEN}",
                value.len()
            )));
        }
        labels.insert(key, value);
    }
    labels.insert(MANAGED_KEY.to_owned(), MANAGED_VALUE.to_owned());
    Ok(labels)
}

/// The tags a secret's labels stand for. Labels that are not the escaped
/// form of a tag, and secretd's own, are left out.
pub fn decode(labels: &HashMap<String, String>) -> Tags {
    labels
        .iter()
        .filter_map(|(k, v)| {
            let key = key_from_label(k)?;
            let value = unescape(v)?;
            Some((key, value))
        })
        .collect()
}

/// A `ListSecrets` filter for the tags of `filter` that the server can
/// match (`labels.KEY="VALUE"`, joined by `AND`), or `None`. It only
/// narrows the answer: the store checks every listed secret on the client,
/// so a tag left out here, or a server that ignores the filter, changes
/// the cost of a listing and never its result. Keys with `-` and empty
/// values are left out, as filter syntax might read them otherwise.
pub fn server_filter(filter: &Tags) -> Option<String> {
    let terms: Vec<String> = filter
        .iter()
        .map(|(k, v)| (key_label(k), escape(v)))
        .filter(|(k, v)| {
            k.len() <= MAX_LABEL_LEN
                && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !v.is_empty()
                && v.len() <= MAX_LABEL_LEN
        })
        .map(|(k, v)| format!("labels.{k}=\"{v}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" AND "))
}

#[cfg(test)]
mod tests {
    use secretd_core::ErrorKind;

    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().copied().collect()
    }

    fn valid_key(k: &str) -> bool {
        (1..=MAX_LABEL_LEN).contains(&k.len())
            && k.starts_with(|c: char| c.is_ascii_lowercase())
            && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    }

    fn valid_value(v: &str) -> bool {
        v.len() <= MAX_LABEL_LEN
            && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    }

    #[test]
    fn the_documented_examples() {
        let labels = encode(&tags(&[("application", "prod"), ("owner", "team-data"), ("note", "Ünïcode ok")])).unwrap();
        assert_eq!(labels["application"], "prod");
        assert_eq!(labels["owner"], "team-data");
        assert_eq!(labels["note"], "_220_n_239_code_32_ok");
        assert_eq!(labels[MANAGED_KEY], MANAGED_VALUE);
        assert_eq!(key_label("xray"), "xxray");
        assert_eq!(key_label("1st"), "x1st");
        assert_eq!(key_label("Env"), "x_env");
        assert_eq!(key_label("cost_center"), "cost__center");
    }

    #[test]
    fn tags_round_trip_through_valid_labels() {
        let cases = tags(&[
            ("application", "prod"),
            ("owner", "team-data"),
            ("note", "Ünïcode ok"),
            ("Env", "Prod"),
            ("x", "x"),
            ("xylophone", ""),
            ("_private", "a_b"),
            ("-dash", "-"),
            ("9lives", "00"),
            ("emoji 🔑", "秘密"),
            ("a:b/c.d", "k=v, w"),
            ("_97_", "_a"),
        ]);
        let labels = encode(&cases).unwrap();
        for (k, v) in &labels {
            assert!(valid_key(k), "label key {k:?}");
            assert!(valid_value(v), "label value {v:?}");
        }
        assert_eq!(decode(&labels), cases);
        assert_eq!(labels.len(), cases.len() + 1);
    }

    #[test]
    fn different_tags_never_share_a_label() {
        let keys = [
            "a", "A", "_a", "x", "xa", "xx", "x_a", "_97_", "a_b", "a__b", "aB", "a-b", "1", "x1", "_1_", "-", "x-",
            "_", "__", "é", "_233_", "x_233_",
        ];
        let mut seen = HashMap::new();
        for k in keys {
            let label = key_label(k);
            assert!(valid_key(&label), "{k:?} -> {label:?}");
            if let Some(other) = seen.insert(label.clone(), k) {
                panic!("{k:?} and {other:?} share the label key {label:?}");
            }
            assert_eq!(key_from_label(&label).as_deref(), Some(k), "{label}");
        }
        let values = ["", "a", "A", "_a", "_", "__", "a b", "a_32_b", "é", "_233_", "-"];
        let mut seen = HashMap::new();
        for v in values {
            let label = escape(v);
            if let Some(other) = seen.insert(label.clone(), v) {
                panic!("{v:?} and {other:?} share the label value {label:?}");
            }
            assert_eq!(unescape(&label).as_deref(), Some(v));
        }
    }

    #[test]
    fn foreign_and_reserved_labels_are_left_out() {
        let labels: HashMap<String, String> = [
            ("application", "prod"),
            (MANAGED_KEY, MANAGED_VALUE),
            ("a_+b", "x"),      // no such escape
            ("k_097_", "v"),    // a non-canonical code point
            ("k_97_", "v"),     // `a` spelled as a code point
            ("v", "_"),         // a dangling escape
            ("w", "_1114112_"), // beyond Unicode
            ("goog-x", "Bad"),  // outside the label alphabet
            ("x", ""),          // the empty key
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(decode(&labels), tags(&[("application", "prod")]));
    }

    #[test]
    fn what_does_not_fit_is_invalid_name() {
        let long_key = "k".repeat(64);
        let err = encode(&tags(&[(long_key.as_str(), "v")])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName);
        assert!(err.message().contains("limit is 63"), "{}", err.message());
        assert!(encode(&tags(&[(&*"k".repeat(63), "v")])).is_ok());
        // Escapes count: 32 capitals are 64 characters.
        assert!(encode(&tags(&[("k", &*"V".repeat(32))])).is_err());
        assert!(encode(&tags(&[("k", &*"v".repeat(63))])).is_ok());
        let many: Tags = (0..64).map(|i| (format!("k{i}"), "v")).collect();
        assert_eq!(encode(&many).unwrap_err().kind(), ErrorKind::InvalidName);
        let most: Tags = (0..63).map(|i| (format!("k{i}"), "v")).collect();
        assert_eq!(encode(&most).unwrap().len(), 64);
    }

    #[test]
    fn server_filters_only_hold_plain_terms() {
        assert_eq!(server_filter(&Tags::new()), None);
        assert_eq!(
            server_filter(&tags(&[("env", "prod"), ("team", "a")])).as_deref(),
            Some("labels.env=\"prod\" AND labels.team=\"a\"")
        );
        assert_eq!(
            server_filter(&tags(&[("note", "Ünïcode ok")])).as_deref(),
            Some("labels.note=\"_220_n_239_code_32_ok\"")
        );
        assert_eq!(server_filter(&tags(&[("team-name", "a"), ("empty", "")])), None);
    }
}
