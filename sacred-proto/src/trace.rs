//! W3C Trace Context: the `traceparent` a publish may carry to its
//! publications, so one trace follows a message from its publisher through
//! the server to every subscriber.
//!
//! The grammar is the Trace Context Level 1 header's:
//! `version "-" trace-id "-" parent-id "-" trace-flags`, lowercase hex of 2,
//! 32, 16 and 2 digits. Version `ff` is invalid; the all-zero trace id and
//! parent id are invalid. Version `00` is exactly 55 characters; a later
//! version may append fields after a further `-`, which a version-`00` reader
//! keeps as they are.

use crate::validate::ValidationError;

/// The length of a version-`00` `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// The longest `traceparent` accepted (a later version's extra fields
/// included).
pub const MAX_TRACEPARENT_BYTES: usize = 256;

/// Checks `value` against the W3C `traceparent` grammar.
///
/// ```
/// use sacred_proto::validate_traceparent;
///
/// assert!(validate_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_ok());
/// assert!(validate_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
/// ```
pub fn validate_traceparent(value: &str) -> Result<(), ValidationError> {
    let bytes = value.as_bytes();
    if bytes.len() > MAX_TRACEPARENT_BYTES {
        return Err(ValidationError::TooLong {
            field: "traceparent",
            max: MAX_TRACEPARENT_BYTES,
        });
    }
    let fits = bytes.len() >= TRACEPARENT_LEN
        && hex(&bytes[0..2])
        && &bytes[0..2] != b"ff"
        && bytes[2] == b'-'
        && hex(&bytes[3..35])
        && bytes[3..35].iter().any(|&b| b != b'0')
        && bytes[35] == b'-'
        && hex(&bytes[36..52])
        && bytes[36..52].iter().any(|&b| b != b'0')
        && bytes[52] == b'-'
        && hex(&bytes[53..55]);
    let tail = &bytes[TRACEPARENT_LEN.min(bytes.len())..];
    let tail_fits = if &bytes[..2.min(bytes.len())] == b"00" {
        tail.is_empty()
    } else {
        tail.is_empty() || tail[0] == b'-'
    };
    if fits && tail_fits {
        Ok(())
    } else {
        Err(ValidationError::Traceparent)
    }
}

/// Lowercase hexadecimal digits only.
fn hex(digits: &[u8]) -> bool {
    digits
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_the_w3c_examples_and_later_versions() {
        validate_traceparent(GOOD).unwrap();
        validate_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        validate_traceparent(&format!("01{}-extra", &GOOD[2..])).unwrap();
        validate_traceparent(&format!("cc{}", &GOOD[2..])).unwrap();
    }

    #[test]
    fn refuses_what_the_grammar_does_not_allow() {
        let bad = [
            String::new(),
            GOOD[..54].to_owned(),
            format!("{GOOD}-extra"),
            format!("ff{}", &GOOD[2..]),
            GOOD.to_uppercase(),
            GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            GOOD.replace("00f067aa0ba902b7", &"0".repeat(16)),
            GOOD.replace('-', "_"),
            format!("01{}x", &GOOD[2..]),
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01".to_owned(),
            "é".repeat(30),
        ];
        for value in bad {
            assert_eq!(
                validate_traceparent(&value),
                Err(ValidationError::Traceparent),
                "{value:?}"
            );
        }
        assert!(matches!(
            validate_traceparent(&format!("01{}-{}", &GOOD[2..], "a".repeat(300))),
            Err(ValidationError::TooLong { .. })
        ));
    }
}
