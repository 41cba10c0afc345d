//! `to_value`: any `Serialize` type as a [`Value`], bytes kept as bytes.
//!
//! The serializer is human-readable, as JSON is (so a UUID or a timestamp
//! serialises as its text form), yet keeps `serialize_bytes` as
//! [`Value::Bytes`], which `serde_json::to_value` cannot: MessagePack frames
//! carry them as `bin`, JSON frames as base64.

use std::collections::BTreeMap;

use serde::ser::{self, Serialize};

use super::{BYTES_TOKEN, Number, Value, ValueError};

/// Converts `value` to a [`Value`].
///
/// Integers must fit 64 bits and floats must be finite, as on the wire; map
/// keys must be strings, characters or integers (integers become their
/// decimal text, as in `serde_json`). Enums use the external tagging JSON uses.
///
/// ```
/// use sacred_proto::{Value, to_value};
///
/// #[derive(serde::Serialize)]
/// struct Move { piece: &'static str, to: (u8, u8) }
///
/// let value = to_value(&Move { piece: "knight", to: (2, 5) })?;
/// assert_eq!(value, Value::from(serde_json::json!({"piece": "knight", "to": [2, 5]})));
/// assert!(to_value(&f64::NAN).is_err());
/// # Ok::<(), sacred_proto::ValueError>(())
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ValueSerializer {
        human_readable: true,
    })
}

struct ValueSerializer {
    /// True but inside [`Value::Bytes`]' own newtype, which it reads as bytes.
    human_readable: bool,
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = Tagged<SeqBuilder>;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = Tagged<MapBuilder>;

    fn is_human_readable(&self) -> bool {
        self.human_readable
    }

    fn serialize_bool(self, v: bool) -> Result<Value, ValueError> {
        Ok(Value::Bool(v))
    }

    fn serialize_i8(self, v: i8) -> Result<Value, ValueError> {
        Ok(Value::from(i64::from(v)))
    }

    fn serialize_i16(self, v: i16) -> Result<Value, ValueError> {
        Ok(Value::from(i64::from(v)))
    }

    fn serialize_i32(self, v: i32) -> Result<Value, ValueError> {
        Ok(Value::from(i64::from(v)))
    }

    fn serialize_i64(self, v: i64) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_i128(self, v: i128) -> Result<Value, ValueError> {
        if let Ok(v) = u64::try_from(v) {
            return Ok(Value::from(v));
        }
        i64::try_from(v)
            .map(Value::from)
            .map_err(|_| ValueError::beyond_64_bits(v))
    }

    fn serialize_u8(self, v: u8) -> Result<Value, ValueError> {
        Ok(Value::from(u64::from(v)))
    }

    fn serialize_u16(self, v: u16) -> Result<Value, ValueError> {
        Ok(Value::from(u64::from(v)))
    }

    fn serialize_u32(self, v: u32) -> Result<Value, ValueError> {
        Ok(Value::from(u64::from(v)))
    }

    fn serialize_u64(self, v: u64) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_u128(self, v: u128) -> Result<Value, ValueError> {
        u64::try_from(v)
            .map(Value::from)
            .map_err(|_| ValueError::beyond_64_bits(v))
    }

    fn serialize_f32(self, v: f32) -> Result<Value, ValueError> {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<Value, ValueError> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| ValueError::new(format!("{v} is not a finite number")))
    }

    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        Ok(Value::String(v.to_string()))
    }

    fn serialize_str(self, v: &str) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::Bytes(v.to_vec()))
    }

    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ValueError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(Value::from(variant))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        if name == BYTES_TOKEN {
            return value.serialize(ValueSerializer {
                human_readable: false,
            });
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        let inner = value.serialize(self)?;
        Ok(Value::Object(BTreeMap::from([(variant.to_owned(), inner)])))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, ValueError> {
        Ok(SeqBuilder(Vec::with_capacity(len.unwrap_or(0).min(256))))
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, ValueError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, ValueError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Tagged<SeqBuilder>, ValueError> {
        Ok(Tagged {
            variant,
            inner: self.serialize_seq(Some(len))?,
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder, ValueError> {
        Ok(MapBuilder::default())
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<MapBuilder, ValueError> {
        Ok(MapBuilder::default())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Tagged<MapBuilder>, ValueError> {
        Ok(Tagged {
            variant,
            inner: MapBuilder::default(),
        })
    }
}

/// The elements of an array, as they are serialised.
struct SeqBuilder(Vec<Value>);

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.0.push(to_value(value)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Array(self.0))
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

/// The entries of an object, as they are serialised.
#[derive(Default)]
struct MapBuilder {
    entries: BTreeMap<String, Value>,
    /// The key whose value comes next (`serialize_key` then `serialize_value`).
    key: Option<String>,
}

impl MapBuilder {
    fn insert(&mut self, key: String, value: Value) -> Result<(), ValueError> {
        match self.entries.entry(key) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
            std::collections::btree_map::Entry::Occupied(slot) => Err(ValueError::new(format!(
                "duplicate key `{}` in an object",
                slot.key()
            ))),
        }
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| ValueError::new("a map value without its key"))?;
        let value = to_value(value)?;
        self.insert(key, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Object(self.entries))
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ValueError> {
        let value = to_value(value)?;
        self.insert(key.to_owned(), value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Object(self.entries))
    }
}

/// An enum variant with content: `{"<variant>": content}`.
struct Tagged<B> {
    variant: &'static str,
    inner: B,
}

impl<B> Tagged<B> {
    fn wrap(variant: &'static str, inner: Value) -> Value {
        Value::Object(BTreeMap::from([(variant.to_owned(), inner)]))
    }
}

impl ser::SerializeTupleVariant for Tagged<SeqBuilder> {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(&mut self.inner, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Self::wrap(self.variant, Value::Array(self.inner.0)))
    }
}

impl ser::SerializeStructVariant for Tagged<MapBuilder> {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ValueError> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Self::wrap(self.variant, Value::Object(self.inner.entries)))
    }
}

/// Map keys: strings and characters as they are, integers as decimal text.
struct KeySerializer;

impl KeySerializer {
    fn refuse(what: &str) -> ValueError {
        ValueError::new(format!("map keys must be strings, not {what}"))
    }
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = ValueError;
    type SerializeSeq = ser::Impossible<String, ValueError>;
    type SerializeTuple = ser::Impossible<String, ValueError>;
    type SerializeTupleStruct = ser::Impossible<String, ValueError>;
    type SerializeTupleVariant = ser::Impossible<String, ValueError>;
    type SerializeMap = ser::Impossible<String, ValueError>;
    type SerializeStruct = ser::Impossible<String, ValueError>;
    type SerializeStructVariant = ser::Impossible<String, ValueError>;

    fn is_human_readable(&self) -> bool {
        true
    }

    fn serialize_str(self, v: &str) -> Result<String, ValueError> {
        Ok(v.to_owned())
    }

    fn serialize_char(self, v: char) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i8(self, v: i8) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i16(self, v: i16) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i32(self, v: i32) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i64(self, v: i64) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u8(self, v: u8) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u16(self, v: u16) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u32(self, v: u32) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u64(self, v: u64) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, ValueError> {
        Ok(variant.to_owned())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, ValueError> {
        value.serialize(self)
    }

    fn serialize_bool(self, _: bool) -> Result<String, ValueError> {
        Err(Self::refuse("booleans"))
    }

    fn serialize_f32(self, _: f32) -> Result<String, ValueError> {
        Err(Self::refuse("floats"))
    }

    fn serialize_f64(self, _: f64) -> Result<String, ValueError> {
        Err(Self::refuse("floats"))
    }

    fn serialize_bytes(self, _: &[u8]) -> Result<String, ValueError> {
        Err(Self::refuse("bytes"))
    }

    fn serialize_none(self) -> Result<String, ValueError> {
        Err(Self::refuse("null"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, ValueError> {
        Err(Self::refuse("options"))
    }

    fn serialize_unit(self) -> Result<String, ValueError> {
        Err(Self::refuse("null"))
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<String, ValueError> {
        Err(Self::refuse("null"))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, ValueError> {
        Err(Self::refuse("enums with content"))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, ValueError> {
        Err(Self::refuse("arrays"))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, ValueError> {
        Err(Self::refuse("tuples"))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, ValueError> {
        Err(Self::refuse("tuples"))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, ValueError> {
        Err(Self::refuse("enums with content"))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, ValueError> {
        Err(Self::refuse("objects"))
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, ValueError> {
        Err(Self::refuse("objects"))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, ValueError> {
        Err(Self::refuse("enums with content"))
    }
}
