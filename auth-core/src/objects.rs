//! Objects only: the documents' struct types are read from JSON objects and never from arrays.
//!
//! serde's derive also reads a struct from an array of its field values in order, so without
//! this `"cache": [0]` would quietly turn the token cache off and a JWK could be written as
//! `["OKP", "ed1", …]`. No document authgate reads has an array where an object belongs, so
//! each such type is declared `#[serde(remote = "Self")]` (the derive then writes inherent
//! functions) and [`objects_only!`] gives it the trait impls, reading through [`ObjectOnly`].
//! Hosts reading their own documents (the auth-server's request bodies) wrap a deserializer in
//! [`ObjectOnly`] themselves, and word serde's errors with [`json_words`].
//! Read such a type through the trait (`serde_json::from_*`, `<T as Deserialize>::deserialize`):
//! `T::deserialize` names the derive's own function, which takes arrays too.

use serde::de::{Deserializer, Visitor};

/// Reads the struct it is handed as a map only; everything else goes to the inner deserializer.
/// Applied one level at a time: each nested type wraps its own deserializer the same way.
pub struct ObjectOnly<D>(pub D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// serde's error text in JSON's words: its sequences and maps are arrays and objects, and a
/// struct's Rust name (`expected struct CacheConfig`) is an object.
pub fn json_words(serde_message: &str) -> String {
    const STRUCT: &str = "expected struct ";
    let s = serde_message
        .replace("expected a sequence", "expected array")
        .replace("expected a map", "expected object")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: object");
    match s.find(STRUCT) {
        Some(i) => {
            let name = &s[i + STRUCT.len()..];
            let rest = name.find(|c: char| !c.is_alphanumeric() && c != '_').map_or("", |n| &name[n..]);
            format!("{}expected object{rest}", &s[..i])
        }
        None => s,
    }
}

/// `Deserialize` (objects only) for types declared `#[serde(remote = "Self")]`; after
/// `serialize:`, their derived `Serialize` as the trait too (the remote derive writes it as an
/// inherent function).
macro_rules! objects_only {
    (serialize: $($t:ty),+ $(,)?) => {
        $crate::objects::objects_only!($($t),+);
        $(impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$t>::serialize(self, serializer)
            }
        })+
    };
    ($($t:ty),+ $(,)?) => {
        $(impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // The inherent function the derive wrote, not this trait method.
                <$t>::deserialize($crate::objects::ObjectOnly(deserializer))
            }
        })+
    };
}
pub(crate) use objects_only;
