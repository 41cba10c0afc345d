//! Payloads: the protocol's `Value` as plain JavaScript values and back.
//!
//! | JavaScript | `Value` | back to JavaScript |
//! |---|---|---|
//! | `null`, `undefined` | `Null` | `null` |
//! | `boolean` | `Bool` | `boolean` |
//! | `number` (finite) | `Number` (an integer if it is one) | `number` |
//! | `bigint` (64 bits) | `Number` | `number` if safe (below 2^53), else `bigint` |
//! | `string` | `String` | `string` |
//! | `Uint8Array`, `ArrayBuffer` | `Bytes` | `Uint8Array` |
//! | `Array` | `Array` | `Array` |
//! | a plain object | `Object` | a plain object |
//!
//! Anything else (a `Map`, a `Date`, a function, a class instance, a
//! non-finite number, a `bigint` beyond 64 bits, nesting deeper than the
//! protocol allows) is refused with an `InvalidError` naming where it is.

use std::collections::BTreeMap;

use js_sys::{Array, ArrayBuffer, BigInt, Object, Reflect, Uint8Array};
use sacred_client::proto::{Limits, Number, Value};
use wasm_bindgen::{JsCast, JsValue};

use crate::error;

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// JavaScript to `Value`.
pub(crate) fn from_js(value: &JsValue) -> Result<Value, JsValue> {
    convert(value, 0, &mut String::from("data"))
}

fn convert(value: &JsValue, depth: usize, path: &mut String) -> Result<Value, JsValue> {
    if depth > Limits::default().max_depth + 1 {
        return Err(error::invalid(format!("{path} nests too deep")));
    }
    if value.is_null() || value.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(flag) = value.as_bool() {
        return Ok(Value::Bool(flag));
    }
    if let Some(n) = value.as_f64() {
        if !n.is_finite() {
            return Err(error::invalid(format!(
                "{path} is {n}, not a finite number"
            )));
        }
        if n.fract() == 0.0 && n.abs() <= MAX_SAFE as f64 {
            return Ok(Value::Number(Number::from(n as i64)));
        }
        return Ok(Number::from_f64(n).map_or(Value::Null, Value::Number));
    }
    if value.is_bigint() {
        let text: String = BigInt::from(value.clone())
            .to_string(10)
            .map(String::from)
            .unwrap_or_default();
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Value::Number(n.into()));
        }
        return Err(error::invalid(format!(
            "{path} is a bigint beyond 64 bits ({text}n); send it as a string"
        )));
    }
    if let Some(text) = value.as_string() {
        return Ok(Value::String(text));
    }
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok(Value::Bytes(bytes.to_vec()));
    }
    if let Some(buffer) = value.dyn_ref::<ArrayBuffer>() {
        return Ok(Value::Bytes(Uint8Array::new(buffer).to_vec()));
    }
    if let Some(array) = value.dyn_ref::<Array>() {
        let mut items = Vec::with_capacity(array.length() as usize);
        for (index, item) in array.iter().enumerate() {
            let len = path.len();
            path.push_str(&format!("[{index}]"));
            items.push(convert(&item, depth + 1, path)?);
            path.truncate(len);
        }
        return Ok(Value::Array(items));
    }
    if is_plain_object(value) {
        let mut map = BTreeMap::new();
        for entry in Object::entries(value.unchecked_ref::<Object>()).iter() {
            let entry: Array = entry.unchecked_into();
            let key = entry.get(0).as_string().unwrap_or_default();
            let len = path.len();
            path.push_str(&format!("[{key:?}]"));
            let item = convert(&entry.get(1), depth + 1, path)?;
            path.truncate(len);
            map.insert(key, item);
        }
        return Ok(Value::Object(map));
    }
    let kind = value
        .js_typeof()
        .as_string()
        .unwrap_or_else(|| "value".into());
    let name = Reflect::get(value, &"constructor".into())
        .ok()
        .and_then(|constructor| Reflect::get(&constructor, &"name".into()).ok())
        .and_then(|name| name.as_string());
    Err(error::invalid(format!(
        "{path} is a {}, which has no place in a payload (null, boolean, number, bigint, string, Uint8Array, Array, plain object)",
        name.unwrap_or(kind)
    )))
}

/// An object made by `{...}` or `Object.create(null)`, not a class instance.
fn is_plain_object(value: &JsValue) -> bool {
    if !value.is_object() || value.is_function() {
        return false;
    }
    let prototype = Object::get_prototype_of(value);
    prototype.is_null() || prototype == Object::get_prototype_of(&Object::new())
}

/// `Value` to JavaScript.
pub(crate) fn to_js(value: &Value) -> JsValue {
    match value {
        Value::Null => JsValue::NULL,
        Value::Bool(flag) => JsValue::from_bool(*flag),
        Value::Number(n) => number(n),
        Value::String(text) => JsValue::from_str(text),
        Value::Bytes(bytes) => Uint8Array::from(bytes.as_slice()).into(),
        Value::Array(items) => items.iter().map(to_js).collect::<Array>().into(),
        Value::Object(map) => {
            let object = Object::new();
            for (key, item) in map {
                let _ = Reflect::set(&object, &JsValue::from_str(key), &to_js(item));
            }
            object.into()
        }
    }
}

fn number(n: &Number) -> JsValue {
    if let Some(n) = n.as_u64() {
        if n <= MAX_SAFE {
            JsValue::from_f64(n as f64)
        } else {
            BigInt::from(n).into()
        }
    } else if let Some(n) = n.as_i64() {
        if n.unsigned_abs() <= MAX_SAFE {
            JsValue::from_f64(n as f64)
        } else {
            BigInt::from(n).into()
        }
    } else {
        JsValue::from_f64(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// A `u64` (an offset, a time) as a number when safe, else a `bigint`.
pub(crate) fn unsigned(n: u64) -> JsValue {
    number(&Number::from(n))
}
