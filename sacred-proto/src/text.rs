//! Protocol strings, read strictly: a MessagePack `bin` is bytes, never text.
//!
//! serde's own `String` accepts bytes that happen to be valid UTF-8, so a
//! MessagePack peer could send a channel name or a token as `bin` and be
//! understood. The protocol says strings are `str` (docs/protocol.md, 2.3), so
//! every string field of a message reads through these functions, which accept
//! text only. (Map keys are checked by the scan, which refuses any key that is
//! not a `str`.)

use std::fmt;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// A visitor that accepts text and nothing else.
struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        Ok(text.to_owned())
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<String, E> {
        Ok(text)
    }
}

/// A visitor for an optional string: `null` (or absence) is `None`.
struct OptionalText;

impl<'de> Visitor<'de> for OptionalText {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<String>, D::Error> {
        string(deserializer).map(Some)
    }
}

/// A required string field.
pub(crate) fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_string(Text)
}

/// An optional string field whose absence or `null` is `None`.
pub(crate) fn optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_option(OptionalText)
}

/// An optional string field whose absence or `null` is `""`.
pub(crate) fn nullable<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    optional(deserializer).map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        #[serde(deserialize_with = "super::string")]
        name: String,
        #[serde(default, deserialize_with = "super::optional")]
        user: Option<String>,
    }

    #[test]
    fn text_is_read_and_bytes_are_refused() {
        // {"name": "ada"}
        let text = [0x81, 0xa4, b'n', b'a', b'm', b'e', 0xa3, b'a', b'd', b'a'];
        let body: Body = rmp_serde::from_slice(&text).unwrap();
        assert_eq!(body.name, "ada");
        assert_eq!(body.user, None);
        // {"name": bin "ada"}
        let bin = [
            0x81, 0xa4, b'n', b'a', b'm', b'e', 0xc4, 3, b'a', b'd', b'a',
        ];
        let err = rmp_serde::from_slice::<Body>(&bin).unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
        // {"name": "ada", "user": bin "x"}
        let mut optional_bin = text.to_vec();
        optional_bin[0] = 0x82;
        optional_bin.extend([0xa4, b'u', b's', b'e', b'r', 0xc4, 1, b'x']);
        assert!(rmp_serde::from_slice::<Body>(&optional_bin).is_err());
        let json: Body = serde_json::from_str(r#"{"name":"ada","user":null}"#).unwrap();
        assert_eq!(json.user, None);
    }
}
