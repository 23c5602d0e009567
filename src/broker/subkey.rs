//! One member of a JSON-object secret value (`subkey`), taken out without
//! leaving copies of the value behind.
//!
//! serde_json scans the value once, borrowing it: the object's keys are
//! compared with the wanted name, every other member is skipped (checked,
//! never copied), and the wanted member is borrowed as raw JSON text. No
//! `serde_json::Value` is built: it would copy every member into buffers
//! nobody wipes. A string member is unescaped here rather than by
//! serde_json, whose scratch buffer is not wiped either; the text goes
//! straight into the answer's zeroizing buffer. Errors carry no part of
//! the value: serde_json's own messages may quote it, so they are dropped.

use std::fmt;

use secretd_core::SecretValue;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

const MAX_SUBKEY_CHARS: usize = 255;

/// A validated member name: 1 to 255 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subkey(String);

impl Subkey {
    /// `None` for an empty name: the caller wants the whole value.
    pub fn parse(raw: &str) -> Result<Option<Self>, InvalidSubkey> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.chars().count() > MAX_SUBKEY_CHARS || raw.chars().any(char::is_control) {
            return Err(InvalidSubkey);
        }
        Ok(Some(Self(raw.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("subkey must be 1 to {MAX_SUBKEY_CHARS} characters without control characters")]
pub struct InvalidSubkey;

/// Why a value has no usable member of that name. None of them says
/// anything about the value beyond its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// Not JSON, or JSON but not an object.
    #[error("the value is not a JSON object")]
    NotAnObject,
    #[error("the object has no such member")]
    Missing,
    /// Parsers disagree on which of two equal keys wins; answering either
    /// could hand the caller a value other tools would not.
    #[error("the object has this member more than once")]
    Duplicate,
    /// A string member with an escape that is no Unicode text (a lone
    /// surrogate).
    #[error("the member is a JSON string that is not valid Unicode")]
    NotText,
}

/// The member `subkey` of the JSON object `value`: a string member as its
/// text, any other member as its JSON text.
pub fn member(value: &SecretValue, subkey: &Subkey) -> Result<SecretValue, MemberError> {
    let text = std::str::from_utf8(value.expose()).map_err(|_| MemberError::NotAnObject)?;
    // Anything but an object is refused before serde_json sees it: its
    // "invalid type" error copies a top-level string into its scratch
    // buffer to quote it.
    if !text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{') {
        return Err(MemberError::NotAnObject);
    }
    let mut parser = serde_json::Deserializer::from_str(text);
    let found =
        FindMember { wanted: subkey.as_str() }.deserialize(&mut parser).map_err(|_| MemberError::NotAnObject)?;
    parser.end().map_err(|_| MemberError::NotAnObject)?;
    let raw = match found {
        Found::Member(raw) => raw.get(),
        Found::Missing => return Err(MemberError::Missing),
        Found::Duplicate => return Err(MemberError::Duplicate),
    };
    if raw.starts_with('"') {
        unescape(raw).map(SecretValue::new).ok_or(MemberError::NotText)
    } else {
        Ok(SecretValue::from_slice(raw.as_bytes()))
    }
}

enum Found<'de> {
    Member(&'de RawValue),
    Missing,
    Duplicate,
}

struct FindMember<'w> {
    wanted: &'w str,
}

impl<'de> DeserializeSeed<'de> for FindMember<'_> {
    type Value = Found<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindMember<'_> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut duplicate = false;
        while let Some(wanted) = map.next_key_seed(KeyIs(self.wanted))? {
            if wanted {
                let raw: &'de RawValue = map.next_value()?;
                duplicate |= found.replace(raw).is_some();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(match found {
            _ if duplicate => Found::Duplicate,
            Some(raw) => Found::Member(raw),
            None => Found::Missing,
        })
    }
}

/// Whether a key is the wanted one; keys are compared, never kept.
struct KeyIs<'w>(&'w str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// The text of a JSON string literal that serde_json has already checked
/// (quotes, escapes, no raw control characters); `None` for an escape that
/// is no Unicode scalar (serde_json lets lone surrogates through when it
/// only skips a string). The buffer is sized up front and never grows, as
/// unescaping only shortens: growing would leave an unwiped copy behind.
fn unescape(literal: &str) -> Option<Vec<u8>> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?.as_bytes();
    let mut text = Zeroizing::new(Vec::with_capacity(inner.len()));
    let mut at = 0;
    while at < inner.len() {
        let byte = inner[at];
        if byte != b'\\' {
            text.push(byte);
            at += 1;
            continue;
        }
        let escape = *inner.get(at + 1)?;
        at += 2;
        let plain = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let first = hex4(inner.get(at..at + 4)?)?;
                at += 4;
                let scalar = if (0xD800..0xDC00).contains(&first) {
                    if inner.get(at..at + 2)? != b"\\u" {
                        return None;
                    }
                    let second = hex4(inner.get(at + 2..at + 6)?)?;
                    at += 6;
                    if !(0xDC00..0xE000).contains(&second) {
                        return None;
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                let mut utf8 = Zeroizing::new([0u8; 4]);
                text.extend_from_slice(char::from_u32(scalar)?.encode_utf8(&mut utf8[..]).as_bytes());
                continue;
            }
            _ => return None,
        };
        text.push(plain);
    }
    // Moves the buffer out without copying it; SecretValue wipes it.
    Some(std::mem::take(&mut *text))
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(value: &str, subkey: &str) -> Result<String, MemberError> {
        let subkey = Subkey::parse(subkey).unwrap().unwrap();
        member(&SecretValue::from_slice(value.as_bytes()), &subkey)
            .map(|v| String::from_utf8(v.expose().to_vec()).unwrap())
    }

    #[test]
    fn string_members_are_their_text_others_their_json() {
        let doc = r#" {"s": "p\"w\\d\u00e9\ud83d\ude00\n", "n": -1.5e3, "o": {"a": [1, "x"]}, "a": [true, null],
                      "t": true, "z": null, "e": ""} "#;
        assert_eq!(get(doc, "s").unwrap(), "p\"w\\dé😀\n");
        assert_eq!(get(doc, "n").unwrap(), "-1.5e3");
        assert_eq!(get(doc, "o").unwrap(), r#"{"a": [1, "x"]}"#);
        assert_eq!(get(doc, "a").unwrap(), "[true, null]");
        assert_eq!(get(doc, "t").unwrap(), "true");
        assert_eq!(get(doc, "z").unwrap(), "null");
        assert_eq!(get(doc, "e").unwrap(), "");
        assert_eq!(get(r#"{"k\u0065y": "v"}"#, "key").unwrap(), "v", "escaped keys are compared unescaped");
    }

    #[test]
    fn shapes_that_have_no_member() {
        for not_an_object in
            ["", "  ", "plain text", r#""a string""#, "[1, 2]", "42", "null", "{", r#"{"a": 1} trailing"#, r#"{"a" 1}"#]
        {
            assert_eq!(get(not_an_object, "a"), Err(MemberError::NotAnObject), "{not_an_object:?}");
        }
        let not_utf8 = SecretValue::from_slice(b"{\"a\": \"\xff\"}");
        assert_eq!(member(&not_utf8, &Subkey::parse("a").unwrap().unwrap()).unwrap_err(), MemberError::NotAnObject);
        assert_eq!(get(r#"{"a": 1}"#, "b"), Err(MemberError::Missing));
        assert_eq!(get(r#"{"a": {"b": 1}}"#, "b"), Err(MemberError::Missing), "only top-level members");
        assert_eq!(get(r#"{"a": 1, "a": 2}"#, "a"), Err(MemberError::Duplicate));
        assert_eq!(get(r#"{"a": "\ud800"}"#, "a"), Err(MemberError::NotText));
        assert_eq!(get(r#"{"a": "\udc00x"}"#, "a"), Err(MemberError::NotText));
    }

    #[test]
    fn deep_nesting_is_no_crash() {
        // serde_json skips and captures members without recursing.
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let doc = format!("{{\"deep\": {nested}, \"b\": \"x\"}}");
        assert_eq!(get(&doc, "b").unwrap(), "x");
        assert_eq!(get(&doc, "deep").unwrap(), nested);
    }

    #[test]
    fn subkey_names() {
        assert_eq!(Subkey::parse(""), Ok(None));
        assert_eq!(Subkey::parse("DATABASE_PASSWORD").unwrap().unwrap().as_str(), "DATABASE_PASSWORD");
        assert!(Subkey::parse(&"é".repeat(255)).unwrap().is_some(), "255 characters, not bytes");
        for bad in ["a\nb".to_owned(), "\u{7f}".to_owned(), "x".repeat(256)] {
            assert_eq!(Subkey::parse(&bad), Err(InvalidSubkey), "{bad:?}");
        }
    }
}
