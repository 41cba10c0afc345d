//! `Value`, the payload type: any JSON value, plus raw bytes that MessagePack carries natively.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};

pub use serde_json::Number;

mod read;
mod write;

pub use read::from_value;
pub use write::to_value;

/// Why a Rust value could not become a [`Value`] ([`to_value`]) or be read
/// from one ([`from_value`]): an integer beyond 64 bits, a float that is not
/// finite, a map key that is not a string, or a shape the type does not take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(Box<str>);

impl ValueError {
    pub(crate) fn new(message: impl Into<String>) -> ValueError {
        ValueError(message.into().into_boxed_str())
    }

    fn beyond_64_bits(n: impl fmt::Display) -> ValueError {
        ValueError::new(format!(
            "the integer {n} does not fit 64 bits (payload integers run from -2^63 to 2^64-1)"
        ))
    }
}

impl serde::ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> ValueError {
        ValueError::new(msg.to_string())
    }
}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> ValueError {
        ValueError::new(msg.to_string())
    }
}

/// Capacity reserved up front for a sequence or map whose length the input
/// declares; the rest grows as elements actually arrive, so a lying length
/// cannot make decoding allocate more than the input justifies.
const MAX_PREALLOCATED: usize = 256;

/// An application payload: the `data` of publications, messages and RPCs.
///
/// Its model is JSON's (null, booleans, finite numbers, strings, arrays, objects
/// with string keys) plus [`Value::Bytes`]. MessagePack frames carry bytes as
/// `bin`; JSON has no bytes, so a JSON frame carries them as a base64 string
/// (standard alphabet, padded), the mapping protobuf's JSON form uses too. A JSON
/// reader therefore receives bytes as that string.
///
/// Objects keep their keys sorted, as `serde_json::Value` does by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// `null`; also what an absent `data` field reads as.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A finite number: an unsigned, a negative or a floating-point one.
    Number(Number),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes (MessagePack `bin`; base64 in JSON).
    Bytes(Vec<u8>),
    /// An ordered list.
    Array(Vec<Value>),
    /// A map from string keys to values.
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Reads the value as a `T` (see [`from_value`]), leaving it in place.
    ///
    /// ```
    /// let value: sacred_proto::Value = [1i64, -2].into_iter().map(Into::into).collect();
    /// let point: (i32, i32) = value.decode()?;
    /// assert_eq!(point, (1, -2));
    /// # Ok::<(), sacred_proto::ValueError>(())
    /// ```
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ValueError> {
        from_value(self.clone())
    }

    /// Converts to a `serde_json::Value` the way a JSON frame would carry it:
    /// bytes become a base64 string.
    pub fn into_json(self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Number(n) => serde_json::Value::Number(n),
            Value::String(s) => serde_json::Value::String(s),
            Value::Bytes(b) => serde_json::Value::String(BASE64.encode(b)),
            Value::Array(items) => items.into_iter().map(Value::into_json).collect(),
            Value::Object(map) => map.into_iter().map(|(k, v)| (k, v.into_json())).collect(),
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => items.into_iter().map(Value::from).collect(),
            serde_json::Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
        }
    }
}

impl From<Value> for serde_json::Value {
    fn from(value: Value) -> Self {
        value.into_json()
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Value::Bytes(bytes)
    }
}

macro_rules! from_integers {
    ($($int:ty),+) => {
        $(
            impl From<$int> for Value {
                fn from(n: $int) -> Self {
                    Value::Number(n.into())
                }
            }
        )+
    };
}

from_integers!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl From<f32> for Value {
    /// A non-finite float has no JSON form and becomes [`Value::Null`], as in `serde_json`.
    fn from(n: f32) -> Self {
        Value::from(f64::from(n))
    }
}

impl From<()> for Value {
    /// `()` is `null`, so `rpc("ping", ())` sends no argument.
    fn from((): ()) -> Self {
        Value::Null
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` is `null`.
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

impl From<BTreeMap<String, Value>> for Value {
    fn from(entries: BTreeMap<String, Value>) -> Self {
        Value::Object(entries)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::String(s.clone())
    }
}

impl From<f64> for Value {
    /// A non-finite float has no JSON form and becomes [`Value::Null`], as in `serde_json`.
    fn from(n: f64) -> Self {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

impl FromIterator<Value> for Value {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        Value::Array(iter.into_iter().collect())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => n.serialize(serializer),
            Value::String(s) => serializer.serialize_str(s),
            // Human-readable formats (JSON) get base64 text. Under a name
            // `to_value` recognises, so that bytes stay bytes through it.
            Value::Bytes(b) if serializer.is_human_readable() => {
                serializer.serialize_newtype_struct(BYTES_TOKEN, &Base64(b))
            }
            Value::Bytes(b) => serializer.serialize_bytes(b),
            Value::Array(items) => serializer.collect_seq(items),
            Value::Object(map) => serializer.collect_map(map),
        }
    }
}

/// The newtype name `Value::Bytes` serialises under in human-readable
/// formats; `to_value` reads what it wraps as bytes.
pub(crate) const BYTES_TOKEN: &str = "$sacred_proto::Bytes";

/// Bytes as base64 text where the format is human-readable, as bytes where not.
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&BASE64.encode(self.0))
        } else {
            serializer.serialize_bytes(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value or bytes")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Float(n), &"a finite number"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(b.to_vec()))
    }

    fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(b))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOCATED));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = BTreeMap::new();
        // Keys are strings: the scan refuses a MessagePack key that is not a `str`.
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            match object.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate key `{}` in an object",
                        slot.key()
                    )));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_convert_both_ways_unchanged() {
        let json = json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}});
        let value = Value::from(json.clone());
        assert_eq!(value.into_json(), json);
    }

    #[test]
    fn bytes_become_base64_in_human_readable_formats() {
        let value = Value::Bytes(vec![0, 1, 2, 255]);
        assert_eq!(serde_json::to_string(&value).unwrap(), r#""AAEC/w==""#);
        assert_eq!(value.into_json(), json!("AAEC/w=="));
    }

    #[test]
    fn bytes_stay_bytes_in_messagepack() {
        let value = Value::Bytes(vec![0, 1, 2, 255]);
        let encoded = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(encoded, [0xc4, 4, 0, 1, 2, 255]);
        assert_eq!(rmp_serde::from_slice::<Value>(&encoded).unwrap(), value);
    }

    #[test]
    fn floats_survive_json_exactly() {
        // Found by the round-trip property: needs serde_json's `float_roundtrip`.
        let value = Value::from(-1.3840898358076801e-36);
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn non_finite_floats_are_refused_on_decode() {
        let nan = rmp_serde::to_vec(&f64::NAN).unwrap();
        let err = rmp_serde::from_slice::<Value>(&nan).unwrap_err();
        assert!(err.to_string().contains("finite"), "{err}");
        assert_eq!(Value::from(f64::INFINITY), Value::Null);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = serde_json::from_str::<Value>(r#"{"a":1,"a":2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key `a`"), "{err}");
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Rect { w: u32, h: u32 },
        Line(i64, i64),
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Drawing {
        title: String,
        shapes: Vec<Shape>,
        #[serde(with = "serde_bytes")]
        thumbnail: Vec<u8>,
        layers: std::collections::HashMap<u32, bool>,
        note: Option<String>,
    }

    #[test]
    fn typed_values_round_trip_with_bytes_kept_as_bytes() {
        let drawing = Drawing {
            title: "plan".into(),
            shapes: vec![
                Shape::Dot,
                Shape::Circle(1.5),
                Shape::Rect { w: 2, h: 3 },
                Shape::Line(-1, 1),
            ],
            thumbnail: vec![0, 255],
            layers: [(7, true)].into(),
            note: None,
        };
        let value = to_value(&drawing).unwrap();
        let Value::Object(fields) = &value else {
            panic!("an object")
        };
        assert_eq!(fields["thumbnail"], Value::Bytes(vec![0, 255]));
        assert_eq!(
            value.clone().into_json(),
            json!({"title": "plan", "shapes": ["Dot", {"Circle": 1.5}, {"Rect": {"w": 2, "h": 3}}, {"Line": [-1, 1]}],
                   "thumbnail": "AP8=", "layers": {"7": true}, "note": null})
        );
        assert_eq!(from_value::<Drawing>(value.clone()).unwrap(), drawing);
        // Across a JSON frame the bytes arrive as base64 text, and still read back.
        let through_json = Value::from(value.into_json());
        assert_eq!(through_json.decode::<Drawing>().unwrap(), drawing);
    }

    #[test]
    fn what_the_wire_cannot_carry_is_refused_with_a_reason() {
        let big = to_value(&(u128::from(u64::MAX) + 1)).unwrap_err();
        assert!(big.to_string().contains("does not fit 64 bits"), "{big}");
        assert_eq!(to_value(&-5i128).unwrap(), Value::from(-5i64));
        assert!(
            to_value(&f32::INFINITY)
                .unwrap_err()
                .to_string()
                .contains("finite")
        );
        let key = to_value(&std::collections::BTreeMap::from([((1, 2), 3)])).unwrap_err();
        assert!(
            key.to_string().contains("map keys must be strings"),
            "{key}"
        );
        let narrow = from_value::<u8>(Value::from(300u64)).unwrap_err();
        assert!(narrow.to_string().contains("300"), "{narrow}");
        assert!(from_value::<serde_bytes::ByteBuf>(Value::from("not base64!")).is_err());
    }

    #[test]
    fn a_value_goes_through_to_value_unchanged() {
        let value = Value::from(json!({"a": [1, -2, 2.5, "x", null, true]}));
        let Value::Object(mut entries) = value else {
            panic!("an object")
        };
        entries.insert("b".into(), Value::Bytes(vec![0, 1, 255]));
        let value = Value::Object(entries);
        assert_eq!(to_value(&value).unwrap(), value);
        assert_eq!(
            to_value(&Value::Bytes(vec![7])).unwrap(),
            Value::Bytes(vec![7])
        );
        // and JSON still carries bytes as base64 text
        assert_eq!(
            serde_json::to_string(&Value::Bytes(vec![0, 1, 255])).unwrap(),
            r#""AAH/""#
        );
    }

    #[test]
    fn small_types_convert_directly() {
        assert_eq!(Value::from(()), Value::Null);
        assert_eq!(Value::from(5i32), Value::from(5i64));
        assert_eq!(Value::from(Some(2u8)), Value::from(2u64));
        assert_eq!(Value::from(None::<bool>), Value::Null);
        assert_eq!(Value::from(0.5f32), Value::from(0.5f64));
    }

    #[test]
    fn non_string_keys_are_refused() {
        // {1: 2} in MessagePack: JSON objects only have string keys.
        assert!(rmp_serde::from_slice::<Value>(&[0x81, 0x01, 0x02]).is_err());
    }
}
