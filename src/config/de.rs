//! Turning the parsed YAML tree into the typed configuration, with errors
//! that never quote what the file or the environment held.
//!
//! serde's own messages embed the offending value (`invalid type: string
//! "hvs.…", expected struct VaultTokenAuth`), so a credential written where
//! a block belongs would be printed by `config check` and by a failing
//! `serve`. This deserializer is the one door every configuration value
//! passes through, and its error type is built only from what cannot hold a
//! secret: the *kind* of value found (a string, a number, a list), what was
//! expected (the type's own description, or the keys and choices the
//! schema lists), and fixed sentences. [`de::Error::custom`] throws its
//! message away, since a `Display` can hold anything; our own types give a
//! precise reason through [`reason`], which only takes `&'static str`.
//!
//! It also tracks where each value sits, as the dotted path operators know
//! from the docs (`secret.vault.token`, `auth.service-accounts[2]`). Keys of
//! settings blocks come from the schema and are named; keys of free-form
//! maps such as `tags` are user data and appear only as `[entry N]`.
//!
//! `${VAR}` references are replaced here too, as each string value is
//! read, never in the raw text: an environment variable holding `:` or a
//! newline cannot change the file's structure, and a reference's errors get
//! the same paths. Their messages name neither the variable nor its value
//! (a value typed between `${` and `}` by mistake would be printed).

use std::fmt;

use serde::de::{self, DeserializeSeed, Expected, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_norway::{Mapping, Value};

/// Where `${VAR}` references are looked up.
pub(crate) type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// Deserializes `T` from the whole configuration tree.
pub(crate) fn from_tree<'de, T: serde::Deserialize<'de>>(value: Value, env: Env<'_>) -> Result<T, DeError> {
    let root = Node { value, path: String::new(), env, expand: true };
    T::deserialize(root).map_err(|e| e.at(""))
}

/// `T` with every default, as an empty block of the file would give it.
pub(crate) fn from_defaults<T: serde::de::DeserializeOwned>() -> Result<T, DeError> {
    from_tree(Value::Mapping(Mapping::new()), &|_| None)
}

/// An error with a precise, value-free sentence, for our own `Deserialize`
/// impls: `Err(reason("must be HOST:PORT or unix:///PATH"))`. Other
/// deserializers show it as `invalid value: ..., expected <text>`.
pub(crate) fn reason<E: de::Error>(text: &'static str) -> E {
    E::invalid_value(Unexpected::Other(REASON), &text)
}

/// Marks [`reason`]'s errors; it names no input, only that one is refused.
const REASON: &str = "a value that is refused";

/// A configuration value that could not be used, and where it sits.
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct DeError {
    path: Option<String>,
    problem: Problem,
}

impl DeError {
    /// The dotted path of the field, `(top level)` for the file itself.
    pub fn field(&self) -> &str {
        match self.path.as_deref() {
            None | Some("") => "(top level)",
            Some(path) => path,
        }
    }

    /// Sets the path unless a more precise one (a field inside) was set.
    fn at(mut self, path: &str) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_owned());
        }
        self
    }

    /// Fills in what the visitor expected, for errors raised without it.
    fn expecting(mut self, expected: &str) -> Self {
        if let Problem::Unspecified { expected: missing @ None } = &mut self.problem {
            *missing = Some(plain(expected));
        }
        self
    }

    fn new(problem: Problem) -> Self {
        Self { path: None, problem }
    }
}

/// Every field here is a kind, a schema name, a count or a fixed sentence:
/// nothing taken from the input.
#[derive(Debug)]
enum Problem {
    Mismatch {
        found: &'static str,
        expected: String,
    },
    Invalid {
        found: &'static str,
        expected: String,
    },
    Length {
        len: usize,
        expected: String,
    },
    UnknownVariant {
        variants: &'static [&'static str],
    },
    /// The key, when it has the shape of a setting name; a key shaped like
    /// anything else may be a value typed in the wrong place.
    UnknownKey {
        key: Option<String>,
        expected: &'static [&'static str],
    },
    MissingKey(&'static str),
    DuplicateKey(&'static str),
    Reason(String),
    Unspecified {
        expected: Option<String>,
    },
    /// The `n`th `${...}` of the value names a variable that is not set.
    MissingEnv {
        reference: usize,
    },
    MalformedReference(&'static str),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Mismatch { found, expected } => write!(f, "found {found}, expected {expected}"),
            Problem::Invalid { found, expected } => write!(f, "found {found} that is not allowed, expected {expected}"),
            Problem::Length { len, expected } => write!(f, "found {len} items, expected {expected}"),
            Problem::UnknownVariant { variants } => write!(f, "is not a known choice, expected {}", one_of(variants)),
            Problem::UnknownKey { key, expected } => {
                match key {
                    Some(key) => write!(f, "unknown field `{key}`")?,
                    None => f.write_str("unknown field (not shown: it is not shaped like a setting name)")?,
                }
                if expected.is_empty() {
                    f.write_str(", there are no fields here")
                } else {
                    write!(f, ", expected {}", one_of(expected))
                }
            }
            Problem::MissingKey(key) => write!(f, "missing field `{key}`"),
            Problem::DuplicateKey(key) => write!(f, "duplicate field `{key}`"),
            Problem::Reason(text) => f.write_str(text),
            Problem::Unspecified { expected: Some(expected) } => write!(f, "is not valid, expected {expected}"),
            Problem::Unspecified { expected: None } => f.write_str("is not valid here"),
            Problem::MissingEnv { reference } => write!(
                f,
                "names an environment variable that is not set (reference {reference} of the value; \
                 ${{NAME:-default}} gives a fallback)"
            ),
            Problem::MalformedReference(why) => write!(f, "malformed reference: {why}"),
        }
    }
}

impl de::Error for DeError {
    /// The message is dropped: it may quote the input.
    fn custom<T: fmt::Display>(_message: T) -> Self {
        Self::new(Problem::Unspecified { expected: None })
    }

    fn invalid_type(found: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::new(Problem::Mismatch { found: kind_of(&found), expected: plain(&expected.to_string()) })
    }

    fn invalid_value(found: Unexpected<'_>, expected: &dyn Expected) -> Self {
        match found {
            Unexpected::Other(REASON) => Self::new(Problem::Reason(expected.to_string())),
            found => Self::new(Problem::Invalid { found: kind_of(&found), expected: plain(&expected.to_string()) }),
        }
    }

    fn invalid_length(len: usize, expected: &dyn Expected) -> Self {
        Self::new(Problem::Length { len, expected: plain(&expected.to_string()) })
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Problem::UnknownVariant { variants: expected })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let key = looks_like_setting_name(field).then(|| field.to_owned());
        Self::new(Problem::UnknownKey { key, expected })
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(Problem::MissingKey(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::new(Problem::DuplicateKey(field))
    }
}

/// Every key of the configuration is kebab-case: lower-case letters,
/// digits and `-`.
fn looks_like_setting_name(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// The kind of a value serde reports, never the value itself.
fn kind_of(found: &Unexpected<'_>) -> &'static str {
    match found {
        Unexpected::Bool(_) => "true or false",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => "a number",
        Unexpected::Char(_) | Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "an empty value",
        Unexpected::Option => "an optional value",
        Unexpected::Seq => "a list",
        Unexpected::Map => "a block of keys",
        Unexpected::Enum
        | Unexpected::UnitVariant
        | Unexpected::NewtypeVariant
        | Unexpected::TupleVariant
        | Unexpected::StructVariant => "a tagged value",
        Unexpected::NewtypeStruct | Unexpected::Other(_) => "a value",
    }
}

fn kind_of_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty value",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a block of keys",
        Value::Tagged(_) => "a tagged value (!tag)",
    }
}

/// A visitor's description of what it wants (serde speaks of `u32` and
/// `struct VaultTokenAuth`), in the words of the configuration docs.
fn plain(expected: &str) -> String {
    let text = match expected {
        "a string" | "string" | "a borrowed string" | "a character" | "char" | "path string" => "a string",
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" | "u128" => "a whole number of 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        "a map" => "a block of `key: value` pairs",
        "field identifier" => "a setting name",
        "variant identifier" => "a known choice",
        "socket address" => "an address of the form IP:PORT",
        "option" => "a value",
        other if other.starts_with("struct ") => "a block of settings",
        other => return other.to_owned(),
    };
    text.to_owned()
}

/// What [`Visitor::expecting`] says, captured before the visitor is used up.
fn expecting<'de, V: Visitor<'de>>(visitor: &V) -> String {
    struct Expecting<'a, V>(&'a V);
    impl<'de, V: Visitor<'de>> fmt::Display for Expecting<'_, V> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }
    }
    Expecting(visitor).to_string()
}

fn untag(value: Value) -> Value {
    match value {
        Value::Tagged(tagged) => untag(tagged.value),
        other => other,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// How the keys of a mapping may be shown in paths.
#[derive(Clone, Copy)]
enum Keys {
    /// A settings block: its keys are the schema's.
    Settings(&'static [&'static str]),
    /// A map whose keys are user data (`tags`): never shown.
    Free,
    /// Read by a type that did not say (an untagged choice): shown only
    /// when shaped like a setting name.
    Unknown,
}

/// One value of the tree, and the path that leads to it.
struct Node<'e> {
    value: Value,
    path: String,
    env: Env<'e>,
    /// Whether `${VAR}` is replaced in this string: in values, not in keys.
    expand: bool,
}

impl<'e> Node<'e> {
    fn child(&self, value: Value, path: String) -> Node<'e> {
        Node { value, path, env: self.env, expand: true }
    }

    /// A string value with its references replaced.
    fn text(&self, raw: String) -> Result<String, DeError> {
        if !self.expand || !raw.contains('$') {
            return Ok(raw);
        }
        expand(&raw, self.env).map_err(|problem| DeError::new(problem).at(&self.path))
    }

    fn mismatch(&self, found: &Value, expected: String) -> DeError {
        DeError::new(Problem::Mismatch { found: kind_of_value(found), expected }).at(&self.path)
    }

    /// A scalar where a string is wanted: say how to make it one.
    fn string_mismatch(&self, found: &Value, expected: &str) -> DeError {
        let expected = plain(expected);
        match found {
            Value::Number(_) | Value::Bool(_) if expected == "a string" => {
                self.mismatch(found, format!("{expected} (put it in quotes if it is meant as text)"))
            }
            _ => self.mismatch(found, expected),
        }
    }

    /// Takes the value out, leaving the node's path and environment.
    fn take(&mut self) -> Value {
        std::mem::take(&mut self.value)
    }

    fn visit_number<'de, V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        let expected = expecting(&visitor);
        let result = match untag(self.take()) {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64::<DeError>(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64::<DeError>(i)
                } else {
                    visitor.visit_f64::<DeError>(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            other => return Err(self.mismatch(&other, plain(&expected))),
        };
        result.map_err(|e| e.expecting(&expected).at(&self.path))
    }

    fn visit_string<'de, V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        let expected = expecting(&visitor);
        match untag(self.take()) {
            Value::String(s) => {
                let s = self.text(s)?;
                visitor.visit_string::<DeError>(s).map_err(|e| e.expecting(&expected).at(&self.path))
            }
            other => Err(self.string_mismatch(&other, &expected)),
        }
    }

    fn visit_seq<'de, V: Visitor<'de>>(&self, items: Vec<Value>, visitor: V) -> Result<V::Value, DeError> {
        let len = items.len();
        let mut access = Items { items: items.into_iter().enumerate(), parent: self };
        let value = visitor.visit_seq(&mut access)?;
        if access.items.len() == 0 {
            Ok(value)
        } else {
            Err(DeError::new(Problem::Length { len, expected: "fewer items".into() }))
        }
    }

    fn visit_map<'de, V: Visitor<'de>>(&self, map: Mapping, keys: Keys, visitor: V) -> Result<V::Value, DeError> {
        let len = map.len();
        let mut access = Entries { entries: map.into_iter().enumerate(), parent: self, keys, pending: None };
        let value = visitor.visit_map(&mut access)?;
        if access.entries.len() == 0 {
            Ok(value)
        } else {
            Err(DeError::new(Problem::Length { len, expected: "fewer keys".into() }))
        }
    }

    fn visit_mapping<'de, V: Visitor<'de>>(
        mut self,
        keys: Keys,
        expected: String,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match untag(self.take()) {
            Value::Mapping(map) => self.visit_map(map, keys, visitor),
            Value::Null => self.visit_map(Mapping::new(), keys, visitor),
            other => return Err(self.mismatch(&other, expected)),
        };
        result.map_err(|e| e.at(&self.path))
    }
}

impl<'de> de::Deserializer<'de> for Node<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        let expected = expecting(&visitor);
        let result = match self.take() {
            Value::Null => visitor.visit_unit::<DeError>(),
            Value::Bool(b) => visitor.visit_bool::<DeError>(b),
            number @ Value::Number(_) => return self.child(number, self.path.clone()).visit_number(visitor),
            Value::String(s) => {
                let s = self.text(s)?;
                visitor.visit_string::<DeError>(s)
            }
            Value::Sequence(items) => self.visit_seq(items, visitor),
            Value::Mapping(map) => self.visit_map(map, Keys::Unknown, visitor),
            Value::Tagged(tagged) => visitor.visit_enum(Choice::tagged(*tagged, &self)),
        };
        result.map_err(|e| e.expecting(&expected).at(&self.path))
    }

    fn deserialize_bool<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        let expected = expecting(&visitor);
        match untag(self.take()) {
            Value::Bool(b) => visitor.visit_bool::<DeError>(b).map_err(|e| e.expecting(&expected).at(&self.path)),
            other => Err(self.mismatch(&other, plain(&expected))),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_number(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_string(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        let expected = expecting(&visitor);
        let result = match untag(self.take()) {
            Value::String(s) => {
                let s = self.text(s)?;
                visitor.visit_string::<DeError>(s)
            }
            Value::Sequence(items) => self.visit_seq(items, visitor),
            other => return Err(self.mismatch(&other, plain(&expected))),
        };
        result.map_err(|e| e.expecting(&expected).at(&self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let result = match self.value {
            Value::Null => visitor.visit_none::<DeError>(),
            _ => visitor.visit_some(self),
        };
        result.map_err(|e| e.at(&path))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Null => visitor.visit_unit::<DeError>().map_err(|e| e.at(&self.path)),
            other => Err(self.mismatch(other, "an empty value".into())),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        visitor.visit_newtype_struct(self).map_err(|e| e.at(&path))
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        let expected = expecting(&visitor);
        let result = match untag(self.take()) {
            Value::Sequence(items) => self.visit_seq(items, visitor),
            Value::Null => self.visit_seq(Vec::new(), visitor),
            other => return Err(self.mismatch(&other, plain(&expected))),
        };
        result.map_err(|e| e.expecting(&expected).at(&self.path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let expected = plain(&expecting(&visitor));
        self.visit_mapping(Keys::Free, expected, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let expected = match fields {
            [] => "a block of settings".to_owned(),
            [field] => format!("a block of settings with the key `{field}`"),
            [a, b, c, _, _, ..] => format!("a block of settings (keys such as `{a}`, `{b}`, `{c}`)"),
            fields => format!("a block of settings with the keys {}", one_of(fields).trim_start_matches("one of ")),
        };
        self.visit_mapping(Keys::Settings(fields), expected, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let choice = match self.take() {
            Value::Tagged(tagged) => Choice::tagged(*tagged, &self),
            Value::String(name) => {
                let name = self.text(name)?;
                Choice { name, value: None, at: self.child(Value::Null, self.path.clone()) }
            }
            other => return Err(self.mismatch(&other, one_of(variants))),
        };
        visitor.visit_enum(choice).map_err(|e| e.at(&self.path))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit::<DeError>()
    }
}

/// The items of a list, each at `path[i]`.
struct Items<'a, 'e> {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    parent: &'a Node<'e>,
}

impl<'de> SeqAccess<'de> for Items<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some((i, value)) = self.items.next() else { return Ok(None) };
        let path = format!("{}[{i}]", self.parent.path);
        // Errors raised by the item's type after reading it (a parse that
        // fails) carry no path yet: they belong to the item too.
        seed.deserialize(self.parent.child(value, path.clone())).map(Some).map_err(|e| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a mapping.
struct Entries<'a, 'e> {
    entries: std::iter::Enumerate<<Mapping as IntoIterator>::IntoIter>,
    parent: &'a Node<'e>,
    keys: Keys,
    pending: Option<Node<'e>>,
}

impl Entries<'_, '_> {
    fn entry_path(&self, n: usize) -> String {
        format!("{}[entry {}]", self.parent.path, n + 1)
    }
}

impl<'de> MapAccess<'de> for Entries<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some((n, (key, value))) = self.entries.next() else { return Ok(None) };
        let parent = &self.parent.path;
        let named = match (&key, self.keys) {
            (Value::String(k), Keys::Settings(fields))
                if fields.contains(&k.as_str()) || looks_like_setting_name(k) =>
            {
                Some(join(parent, k))
            }
            (Value::String(k), Keys::Unknown) if looks_like_setting_name(k) => Some(join(parent, k)),
            _ => None,
        };
        let value_path = named.unwrap_or_else(|| self.entry_path(n));
        self.pending = Some(self.parent.child(value, value_path));
        // A block's unknown key is the block's problem; a bad key of a
        // free-form map is that entry's.
        let key_path = match self.keys {
            Keys::Settings(_) | Keys::Unknown => parent.clone(),
            Keys::Free => self.entry_path(n),
        };
        let key = Node { value: key, path: key_path.clone(), env: self.parent.env, expand: false };
        seed.deserialize(key).map(Some).map_err(|e| e.at(&key_path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self.pending.take().ok_or_else(|| reason("a value was read before its key"))?;
        let path = node.path.clone();
        seed.deserialize(node).map_err(|e| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A choice among an enum's variants: a plain name (`type: jdbc`) or a
/// YAML tag with its value (`!name value`).
struct Choice<'e> {
    name: String,
    value: Option<Value>,
    /// Where the choice sits (its value is unused).
    at: Node<'e>,
}

impl<'e> Choice<'e> {
    fn tagged(tagged: serde_norway::value::TaggedValue, node: &Node<'e>) -> Self {
        let name = tagged.tag.to_string().trim_start_matches('!').to_owned();
        Self { name, value: Some(tagged.value), at: node.child(Value::Null, node.path.clone()) }
    }

    fn value_node(&self, value: Value) -> Node<'e> {
        self.at.child(value, self.at.path.clone())
    }

    fn plain_name(&self, expected: &str) -> DeError {
        DeError::new(Problem::Mismatch { found: "a plain name", expected: expected.into() }).at(&self.at.path)
    }
}

impl<'de, 'e> de::EnumAccess<'de> for Choice<'e> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        // Already expanded: the name is read as a key is.
        let name = Node {
            value: Value::String(self.name.clone()),
            path: self.at.path.clone(),
            env: self.at.env,
            expand: false,
        };
        let variant = seed.deserialize(name)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Choice<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None | Some(Value::Null) => Ok(()),
            Some(other) => Err(self.at.mismatch(&other, "nothing after the tag".into())),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(mut self, seed: T) -> Result<T::Value, DeError> {
        match self.value.take() {
            Some(value) => seed.deserialize(self.value_node(value)),
            None => Err(self.plain_name("a value after the name")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(mut self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(value) => de::Deserializer::deserialize_seq(self.value_node(value), visitor),
            None => Err(self.plain_name("a list after the name")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(value) => de::Deserializer::deserialize_struct(self.value_node(value), "", fields, visitor),
            None => Err(self.plain_name("a block of settings after the name")),
        }
    }
}

/// Replaces `${VAR}` and `${VAR:-default}`; `$${` stands for a literal `${`.
fn expand(input: &str, env: Env<'_>) -> Result<String, Problem> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    let mut reference = 0;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            reference += 1;
            let end = body
                .find('}')
                .ok_or(Problem::MalformedReference("`${` without a closing `}` (write `$${` for a literal `${`)"))?;
            let (var, default) = match body[..end].split_once(":-") {
                Some((var, default)) => (var, Some(default)),
                None => (&body[..end], None),
            };
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Problem::MalformedReference(
                    "expected ${NAME} or ${NAME:-default}, NAME made of letters, digits and `_`, not starting with a \
                     digit",
                ));
            }
            match (env(var), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(Problem::MissingEnv { reference }),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `timeout: 5s` and friends, through humantime's parser, or in ISO-8601
/// form (`PT15M`, `P1DT2H`, `PT0.5S`) as the platform's files write them,
/// with an error that says what a duration looks like instead of quoting
/// the input.
pub(crate) mod duration {
    use std::{fmt, time::Duration};

    use serde::de::{Deserializer, Visitor};

    const EXPECTED: &str = "a duration like 500ms, 30s, 5m, 1h or PT15M";
    const REFUSED: &str = "is not a duration, expected one like 500ms, 30s, 5m, 1h or PT15M";

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
                parse(text).map_err(super::reason)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }

    /// Either form; the error is a fixed sentence.
    pub(crate) fn parse(text: &str) -> Result<Duration, &'static str> {
        let trimmed = text.trim();
        if trimmed.starts_with('-') {
            return Err("is negative, a duration must be zero or more");
        }
        let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
        if body.starts_with(['P', 'p']) {
            return iso8601(&body[1..]);
        }
        humantime::parse_duration(trimmed).map_err(|_| REFUSED)
    }

    /// The part after `P`: `[nD][T[nH][nM][n[.f]S]]`, as Java's
    /// `Duration.parse` reads it (weeks too). Months and years have no fixed
    /// length, so `P1M`/`P1Y` are refused rather than guessed.
    fn iso8601(rest: &str) -> Result<Duration, &'static str> {
        const AMBIGUOUS: &str =
            "uses months or years, which have no fixed length: write days (P30D) or hours (PT720H) instead";
        const OVERFLOW: &str = "is too long a duration";
        let (date, time) = match rest.find(['T', 't']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        if date.is_empty() && time.is_none_or(str::is_empty) {
            return Err(REFUSED);
        }
        let mut total = Duration::ZERO;
        let mut add = |amount: Duration| -> Result<(), &'static str> {
            total = total.checked_add(amount).ok_or(OVERFLOW)?;
            Ok(())
        };
        // Each designator at most once and in order, as the standard has it.
        let mut last_date = 0;
        for (number, unit) in components(date)? {
            let (rank, seconds) = match unit.to_ascii_uppercase() {
                'Y' | 'M' => return Err(AMBIGUOUS),
                'W' => (1, 7 * 86_400),
                'D' => (2, 86_400),
                _ => return Err(REFUSED),
            };
            if rank <= last_date || number.contains('.') {
                return Err(REFUSED);
            }
            last_date = rank;
            let whole: u64 = number.parse().map_err(|_| REFUSED)?;
            add(Duration::from_secs(whole.checked_mul(seconds).ok_or(OVERFLOW)?))?;
        }
        if let Some(time) = time {
            if time.is_empty() {
                return Err(REFUSED);
            }
            let mut last_time = 0;
            for (number, unit) in components(time)? {
                let (rank, seconds) = match unit.to_ascii_uppercase() {
                    'H' => (1, 3600),
                    'M' => (2, 60),
                    'S' => (3, 1),
                    _ => return Err(REFUSED),
                };
                if rank <= last_time || (number.contains('.') && rank != 3) {
                    return Err(REFUSED);
                }
                last_time = rank;
                if rank == 3 {
                    add(seconds_with_fraction(number)?)?;
                } else {
                    let whole: u64 = number.parse().map_err(|_| REFUSED)?;
                    add(Duration::from_secs(whole.checked_mul(seconds).ok_or(OVERFLOW)?))?;
                }
            }
        }
        Ok(total)
    }

    /// `12D3H` as `[("12", 'D'), ("3", 'H')]`; a number without its unit,
    /// or a unit without its number, is refused.
    fn components(text: &str) -> Result<Vec<(&str, char)>, &'static str> {
        let mut out = Vec::new();
        let mut start = 0;
        for (at, c) in text.char_indices() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                continue;
            }
            if at == start || !c.is_ascii_alphabetic() {
                return Err(REFUSED);
            }
            out.push((&text[start..at], c));
            start = at + c.len_utf8();
        }
        if start != text.len() {
            return Err(REFUSED);
        }
        Ok(out)
    }

    /// `0.5` or `0,5` (ISO allows either mark), to the nanosecond.
    fn seconds_with_fraction(number: &str) -> Result<Duration, &'static str> {
        let (whole, fraction) = match number.split_once(['.', ',']) {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || fraction.len() > 9 {
            return Err(REFUSED);
        }
        let secs: u64 = whole.parse().map_err(|_| REFUSED)?;
        let nanos: u32 =
            if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().map_err(|_| REFUSED)? };
        Ok(Duration::new(secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use serde::Deserialize;

    use super::*;

    const CANARY: &str = "Zq7CanaryXw93kLt";

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Block {
        token: Option<Inner>,
        name: Option<String>,
        port: Option<u8>,
        #[serde(default)]
        tags: BTreeMap<String, String>,
        #[serde(default)]
        items: Vec<u32>,
        kind: Option<Kind>,
        #[serde(default, with = "duration")]
        timeout: Duration,
        addr: Option<std::net::SocketAddr>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        token: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Kind {
        Jdbc,
        Vault,
    }

    fn env(var: &str) -> Option<String> {
        match var {
            "CANARY_ENV" => Some(CANARY.into()),
            "WEIRD" => Some("a: b\nc: [d".into()),
            _ => None,
        }
    }

    fn error(yaml: &str) -> (String, String) {
        let value: Value = serde_norway::from_str(yaml).unwrap();
        let e = from_tree::<Block>(value, &env).unwrap_err();
        let shown = format!("{}: {e} {e:?}", e.field());
        assert!(!shown.contains(CANARY) && !shown.contains("4711"), "the error quotes the input: {shown}");
        (e.field().to_owned(), e.to_string())
    }

    #[test]
    fn wrong_shapes_name_the_kind_and_the_expectation_never_the_value() {
        let (field, message) = error(&format!("token: {CANARY}\n"));
        assert_eq!(field, "token");
        assert_eq!(message, "found a string, expected a block of settings with the key `token`");
        let (field, message) = error(&format!("token: {{token: [{CANARY}]}}\n"));
        assert_eq!((field.as_str(), message.as_str()), ("token.token", "found a list, expected a string"));
        let (_, message) = error("name: 4711\n");
        assert_eq!(message, "found a number, expected a string (put it in quotes if it is meant as text)");
        let (_, message) = error("name: true\n");
        assert!(message.starts_with("found true or false, expected a string"), "{message}");
        let (_, message) = error(&format!("name: {{value: {CANARY}}}\n"));
        assert_eq!(message, "found a block of keys, expected a string");
        let (field, message) = error(&format!("items: [1, {CANARY}]\n"));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("items[1]", "found a string, expected a whole number from 0 to 4294967295")
        );
    }

    #[test]
    fn values_out_of_range_unknown_choices_and_parse_failures() {
        let (field, message) = error("port: 4711\n");
        assert_eq!(field, "port");
        assert_eq!(message, "found a number that is not allowed, expected a whole number from 0 to 255");
        let (field, message) = error(&format!("kind: {CANARY}\n"));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("kind", "is not a known choice, expected one of `jdbc`, `vault`")
        );
        let (_, message) = error("kind: 4711\n");
        assert_eq!(message, "found a number, expected one of `jdbc`, `vault`");
        let (field, message) = error(&format!("timeout: 5{CANARY}\n"));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("timeout", "is not a duration, expected one like 500ms, 30s, 5m, 1h or PT15M")
        );
        let (_, message) = error("timeout: 5\n");
        assert_eq!(message, "found a number, expected a duration like 500ms, 30s, 5m, 1h or PT15M");
        let (field, message) = error(&format!("addr: {CANARY}\n"));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("addr", "is not valid, expected an address of the form IP:PORT")
        );
    }

    #[test]
    fn unknown_keys_are_named_only_when_shaped_like_settings() {
        let (field, message) = error("pasword: x\n");
        assert_eq!(field, "(top level)");
        assert!(message.starts_with("unknown field `pasword`, expected one of `token`, `name`"), "{message}");
        let (_, message) = error(&format!("{CANARY}: x\n"));
        assert!(message.starts_with("unknown field (not shown"), "{message}");
        let (field, message) = error("token: {}\n");
        assert_eq!((field.as_str(), message.as_str()), ("token", "missing field `token`"));
    }

    #[test]
    fn keys_of_free_form_maps_stay_out_of_paths() {
        let (field, message) = error(&format!("tags:\n  a: b\n  {CANARY}: [x]\n"));
        assert_eq!((field.as_str(), message.as_str()), ("tags[entry 2]", "found a list, expected a string"));
        let (field, _) = error("tags:\n  4711: x\n");
        assert_eq!(field, "tags[entry 1]");
    }

    #[test]
    fn custom_messages_are_dropped() {
        let e: DeError = de::Error::custom(format!("invalid {CANARY}"));
        assert_eq!(e.to_string(), "is not valid here");
        let e: DeError = reason("must be HOST:PORT");
        assert_eq!(e.to_string(), "must be HOST:PORT");
    }

    #[test]
    fn valid_input_reads_as_before() {
        let value: Value = serde_norway::from_str(
            "token: {token: t}\nname: n\nport: 80\ntags: {a: b}\nitems: [1, 2]\nkind: vault\ntimeout: 5m\naddr: 127.0.0.1:1\n",
        )
        .unwrap();
        let block: Block = from_tree(value, &env).unwrap();
        assert_eq!(block.token.unwrap().token, "t");
        assert_eq!((block.port, block.items, block.timeout), (Some(80), vec![1, 2], Duration::from_secs(300)));
        assert!(matches!(block.kind, Some(Kind::Vault)));
        let empty: Block = from_tree(Value::Null, &env).unwrap();
        assert!(empty.tags.is_empty());
    }

    #[test]
    fn references_are_replaced_in_values_only() {
        let value: Value = serde_norway::from_str(
            "name: \"x${CANARY_ENV}y${WEIRD}\"\ntags: {\"${CANARY_ENV}\": \"$${CANARY_ENV} $5\"}\n",
        )
        .unwrap();
        let block: Block = from_tree(value, &env).unwrap();
        assert_eq!(
            block.name.unwrap(),
            format!("x{CANARY}ya: b\nc: [d"),
            "an environment value cannot change structure"
        );
        assert_eq!(block.tags.get("${CANARY_ENV}").map(String::as_str), Some("${CANARY_ENV} $5"));
        let value: Value = serde_norway::from_str("name: ${NOPE:-fallback}\n").unwrap();
        assert_eq!(from_tree::<Block>(value, &env).unwrap().name.unwrap(), "fallback");
    }

    #[test]
    fn reference_errors_name_neither_the_variable_nor_its_value() {
        let (field, message) = error(&format!("name: \"${{CANARY_ENV}}${{{CANARY}}}\"\n"));
        assert_eq!(field, "name");
        assert!(
            message.starts_with("names an environment variable that is not set (reference 2 of the value"),
            "{message}"
        );
        for bad in ["${CANARY_ENV}${", "${CANARY_ENV} ${not a name}", "${CANARY_ENV:-x", "${9lives}"] {
            let (field, message) = error(&format!("token: {{token: \"{bad}\"}}\n"));
            assert_eq!(field, "token.token");
            assert!(message.starts_with("malformed reference: "), "{message}");
        }
        // A reference that expands to a string where a block belongs.
        let (field, message) = error("token: ${CANARY_ENV}\n");
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("token", "found a string, expected a block of settings with the key `token`")
        );
    }

    #[test]
    fn iso8601_durations_read_like_the_short_form() {
        let cases = [
            ("PT15M", Duration::from_secs(900)),
            ("PT1M", Duration::from_secs(60)),
            ("PT0.5S", Duration::from_millis(500)),
            ("PT0,25S", Duration::from_millis(250)),
            ("P1D", Duration::from_secs(86_400)),
            ("P1DT2H", Duration::from_secs(93_600)),
            ("P2W", Duration::from_secs(14 * 86_400)),
            ("pt1h30m", Duration::from_secs(5400)),
            ("PT1H2M3.000000004S", Duration::new(3723, 4)),
            ("P0D", Duration::ZERO),
            ("15m", Duration::from_secs(900)),
            ("60s", Duration::from_secs(60)),
        ];
        for (text, expected) in cases {
            assert_eq!(duration::parse(text), Ok(expected), "{text}");
            let value: Value = serde_norway::from_str(&format!("timeout: {text}\n")).unwrap();
            let block: Block = from_tree(value, &env).unwrap();
            assert_eq!(block.timeout, expected, "{text}");
        }
    }

    #[test]
    fn iso8601_refusals_give_a_reason_and_quote_nothing() {
        let ambiguous = "uses months or years, which have no fixed length: write days (P30D) or hours (PT720H) instead";
        let refused = "is not a duration, expected one like 500ms, 30s, 5m, 1h or PT15M";
        let negative = "is negative, a duration must be zero or more";
        let cases = [
            ("P1M", ambiguous),
            ("P1Y", ambiguous),
            ("P1Y2M3D", ambiguous),
            ("-PT5M", negative),
            ("-5m", negative),
            ("P", refused),
            ("PT", refused),
            ("P1DT", refused),
            ("PT5", refused),
            ("PTM", refused),
            ("PT1.5M", refused),
            ("PT1M1H", refused),
            ("P1D1D", refused),
            ("PT1X", refused),
            ("P1.5D", refused),
            ("PT1.1234567891S", refused),
            ("P99999999999999999999D", refused),
            ("P999999999999999999D", "is too long a duration"),
        ];
        for (text, reason) in cases {
            assert_eq!(duration::parse(text), Err(reason), "{text}");
        }
        let (field, message) = error(&format!("timeout: PT5{CANARY}\n"));
        assert_eq!((field.as_str(), message.as_str()), ("timeout", refused));
        let (_, message) = error("timeout: P1M\n");
        assert_eq!(message, ambiguous);
    }
}
