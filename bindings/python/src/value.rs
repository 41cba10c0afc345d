//! Payloads: the protocol's `Value` as plain Python values and back.
//!
//! | Python | `Value` |
//! |---|---|
//! | `None` | `Null` |
//! | `bool` | `Bool` |
//! | `int` (64 bits, signed or unsigned) | `Number` |
//! | `float` (finite) | `Number` |
//! | `str` | `String` |
//! | `bytes`, `bytearray`, `memoryview` | `Bytes` (arrives as `bytes`) |
//! | `list`, `tuple` | `Array` (arrives as `list`) |
//! | `dict` with `str` keys | `Object` |
//!
//! Anything else, an integer beyond 64 bits, a non-finite float, a key that
//! is not a string or nesting deeper than the protocol allows is refused with
//! `InvalidError` (also a `ValueError`) naming where in the value it is.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};
use sacred_client::proto::{Limits, Number, Value};

use crate::error;

/// Python to `Value`.
pub(crate) fn from_py(object: &Bound<'_, PyAny>) -> PyResult<Value> {
    convert(object, 0, &mut String::from("data"))
}

fn convert(object: &Bound<'_, PyAny>, depth: usize, path: &mut String) -> PyResult<Value> {
    // One more level than the server accepts, so that its refusal, not ours,
    // names the limit; deeper than that cannot be sent anyway.
    if depth > Limits::default().max_depth + 1 {
        return Err(error::invalid(format!("{path} nests too deep")));
    }
    if object.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: a Python bool is an int.
    if let Ok(flag) = object.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if let Ok(int) = object.cast::<PyInt>() {
        if let Ok(n) = int.extract::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        if let Ok(n) = int.extract::<u64>() {
            return Ok(Value::Number(n.into()));
        }
        return Err(error::invalid(format!(
            "{path} is an integer beyond 64 bits ({int}); send it as a string"
        )));
    }
    if let Ok(float) = object.cast::<PyFloat>() {
        let n = float.value();
        return Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| error::invalid(format!("{path} is {n}, not a finite number")));
    }
    if let Ok(text) = object.cast::<PyString>() {
        return Ok(Value::String(text.to_cow()?.into_owned()));
    }
    if let Ok(bytes) = object.cast::<PyBytes>() {
        return Ok(Value::Bytes(bytes.as_bytes().to_vec()));
    }
    if let Ok(bytes) = object.cast::<PyByteArray>() {
        return Ok(Value::Bytes(bytes.to_vec()));
    }
    if object.cast::<PyMemoryView>().is_ok() {
        return Ok(Value::Bytes(object.call_method0("tobytes")?.extract()?));
    }
    if let Ok(list) = object.cast::<PyList>() {
        return sequence(list.iter(), depth, path);
    }
    if let Ok(tuple) = object.cast::<PyTuple>() {
        return sequence(tuple.iter(), depth, path);
    }
    if let Ok(dict) = object.cast::<PyDict>() {
        let mut map = BTreeMap::new();
        for (key, item) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(error::invalid(format!(
                    "{path} has a key that is not a string ({})",
                    key.repr()?
                )));
            };
            let key = key.to_cow()?.into_owned();
            let len = path.len();
            path.push_str(&format!("[{key:?}]"));
            let value = convert(&item, depth + 1, path)?;
            path.truncate(len);
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    Err(error::invalid(format!(
        "{path} is of type {}, which has no place in a payload (None, bool, int, float, str, bytes, list, tuple, dict)",
        object.get_type().name()?
    )))
}

fn sequence<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: usize,
    path: &mut String,
) -> PyResult<Value> {
    let mut values = Vec::new();
    for (index, item) in items.enumerate() {
        let len = path.len();
        path.push_str(&format!("[{index}]"));
        values.push(convert(&item, depth + 1, path)?);
        path.truncate(len);
    }
    Ok(Value::Array(values))
}

/// `Value` to Python.
pub(crate) fn to_py(py: Python<'_>, value: &Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any().unbind(),
        Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                n.into_pyobject(py)?.into_any().unbind()
            } else if let Some(n) = n.as_i64() {
                n.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        Value::String(text) => PyString::new(py, text).into_any().unbind(),
        Value::Bytes(bytes) => PyBytes::new(py, bytes).into_any().unbind(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_py(py, item)?)?;
            }
            dict.into_any().unbind()
        }
    })
}
