//! The channel grammar: `namespace:name` or `name`, ASCII, bounded length.

use crate::limits::Limits;
use crate::validate::ValidationError;

/// Characters a namespace may hold, besides ASCII letters and digits.
const NAMESPACE_EXTRA: &[u8] = b"_-.";
/// Characters a name may hold, besides ASCII letters and digits.
const NAME_EXTRA: &[u8] = b"_-.@/=,+~:";
/// Characters reserved for future channel features, refused today:
/// `$` (private), `#` (user-limited), `*` and `>` (wildcards).
const RESERVED: &[u8] = b"$#*>";

/// Checks a channel against the grammar of `docs/protocol.md`:
/// 1 to `limits.max_channel_bytes` bytes; an optional namespace before the first
/// `:` made of letters, digits and `_-.`; a non-empty name of letters, digits
/// and `_-.@/=,+~:`.
///
/// ```
/// use sacred_proto::{validate_channel, Limits};
///
/// let limits = Limits::default();
/// assert!(validate_channel("chat:room:42", &limits).is_ok());
/// assert!(validate_channel("$private", &limits).is_err());
/// ```
pub fn validate_channel(channel: &str, limits: &Limits) -> Result<(), ValidationError> {
    if channel.is_empty() {
        return Err(ValidationError::Empty { field: "channel" });
    }
    if channel.len() > limits.max_channel_bytes {
        return Err(ValidationError::TooLong {
            field: "channel",
            max: limits.max_channel_bytes,
        });
    }
    let (namespace, name) = split(channel);
    if let Some(namespace) = namespace {
        if namespace.is_empty() {
            return Err(ValidationError::Channel("empty namespace before ':'"));
        }
        check_chars(namespace, NAMESPACE_EXTRA)?;
    }
    if name.is_empty() {
        return Err(ValidationError::Channel("empty name after ':'"));
    }
    check_chars(name, NAME_EXTRA)
}

/// The namespace of a channel: the part before the first `:`, or `""` for
/// channels in the default namespace.
///
/// ```
/// assert_eq!(sacred_proto::channel_namespace("chat:room:42"), "chat");
/// assert_eq!(sacred_proto::channel_namespace("news"), "");
/// ```
pub fn channel_namespace(channel: &str) -> &str {
    split(channel).0.unwrap_or("")
}

fn split(channel: &str) -> (Option<&str>, &str) {
    match channel.split_once(':') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, channel),
    }
}

fn check_chars(part: &str, extra: &[u8]) -> Result<(), ValidationError> {
    for &byte in part.as_bytes() {
        if byte.is_ascii_alphanumeric() || extra.contains(&byte) {
            continue;
        }
        return Err(ValidationError::Channel(if RESERVED.contains(&byte) {
            "reserved character ($ # * >)"
        } else if byte == b':' {
            "':' is not allowed in a namespace"
        } else if byte.is_ascii() {
            "character outside [A-Za-z0-9_-.@/=,+~:]"
        } else {
            "non-ASCII character"
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let limits = Limits::default();
        let ok = [
            "news",
            "chat:lobby",
            "chat:room:42",
            "a.b-c_d:x@y/z=1,2+3~4",
            "n:é",
        ];
        for channel in &ok[..4] {
            assert_eq!(validate_channel(channel, &limits), Ok(()), "{channel}");
        }
        let bad = [
            ("", ValidationError::Empty { field: "channel" }),
            (":x", ValidationError::Channel("empty namespace before ':'")),
            ("chat:", ValidationError::Channel("empty name after ':'")),
            (
                "chat:$x",
                ValidationError::Channel("reserved character ($ # * >)"),
            ),
            (
                "a b",
                ValidationError::Channel("character outside [A-Za-z0-9_-.@/=,+~:]"),
            ),
            (
                "n@s:x",
                ValidationError::Channel("character outside [A-Za-z0-9_-.@/=,+~:]"),
            ),
            (ok[4], ValidationError::Channel("non-ASCII character")),
        ];
        for (channel, err) in bad {
            assert_eq!(validate_channel(channel, &limits), Err(err), "{channel:?}");
        }
        let long = "x".repeat(256);
        assert_eq!(
            validate_channel(&long, &limits),
            Err(ValidationError::TooLong {
                field: "channel",
                max: 255
            })
        );
        assert_eq!(validate_channel(&long[..255], &limits), Ok(()));
    }
}
