//! Request bodies parsed with a bound on what they become in memory.
//!
//! A JSON body is small on the wire and large in memory: `[0,0,0,…]` costs two bytes per
//! value on the wire and a 32-byte `Value` (plus the vector's growth) once parsed, so 10 MB
//! of it took 262 MB. [`parse`] builds the same [`Value`] as `serde_json::from_slice`, but
//! counts every value (scalars, arrays, objects and object keys) while it builds, and stops
//! with [`ServerError::TooManyJsonValues`] at `limits.max_json_values`, before the tree grows
//! further. Nesting is bounded by serde_json's own recursion limit (128).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::ServerError;

/// Parses `bytes` as one JSON value of at most `max_values` values.
///
/// # Errors
///
/// [`ServerError::TooManyJsonValues`] past the bound, [`ServerError::BadRequest`] for
/// malformed JSON.
pub(crate) fn parse(bytes: &[u8], max_values: usize) -> Result<Value, ServerError> {
    let left = Cell::new(max_values);
    let exceeded = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Bounded {
        left: &left,
        exceeded: &exceeded,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if exceeded.get() => Err(ServerError::TooManyJsonValues { limit: max_values }),
        Err(error) => Err(ServerError::bad_request(format!("malformed JSON: {error}"))),
    }
}

/// Builds a [`Value`], taking one from `left` per value.
#[derive(Clone, Copy)]
struct Bounded<'a> {
    left: &'a Cell<usize>,
    exceeded: &'a Cell<bool>,
}

impl Bounded<'_> {
    fn take<E: de::Error>(self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("too many JSON values"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        self.take()?;
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut values = Vec::new();
        while let Some(value) = seq.next_element_seed(self)? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut values = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.take()?;
            let value = map.next_value_seed(self)?;
            values.insert(key, value);
        }
        Ok(Value::Object(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_as_serde_json_parses_them() {
        for text in [
            r#"{"id":"a","n":1,"f":1.5,"neg":-3,"big":18446744073709551615,"b":true,"z":null}"#,
            r#"{"nested":{"list":[1,[2,{"x":"y"}],"é\"\\"]}}"#,
            "[]",
            "\"text\"",
        ] {
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text.as_bytes(), 1000).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn values_are_counted_and_the_bound_is_exact() {
        // An object (1), a key (1) and an array (1) of three values (3): six.
        let text = br#"{"a":[1,2,3]}"#;
        assert!(parse(text, 6).is_ok());
        assert!(matches!(
            parse(text, 5),
            Err(ServerError::TooManyJsonValues { limit: 5 })
        ));
    }

    #[test]
    fn malformed_bodies_and_trailing_text_are_bad_requests() {
        for text in ["{\"a\":", "{} {}", "nul", ""] {
            assert!(
                matches!(
                    parse(text.as_bytes(), 100),
                    Err(ServerError::BadRequest { .. })
                ),
                "{text}"
            );
        }
    }
}
