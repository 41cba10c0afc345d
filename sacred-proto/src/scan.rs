//! A structural pass over a frame before serde sees it: bounds nesting depth,
//! batch length and every declared length by what the frame actually holds, so
//! hostile input can neither overflow the stack nor make decoding allocate
//! more than the frame's size justifies.

use rmp::Marker;

use crate::error::DecodeError;
use crate::limits::Limits;

/// Counts the top-level batch as containers open, and refuses what is too
/// deep, too long or empty. Shared by both formats.
struct Bounds<'a> {
    limits: &'a Limits,
    /// The deepest container seen so far.
    deepest: usize,
}

impl Bounds<'_> {
    /// A container opens at `depth` (1 for the frame's top-level value).
    fn open(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > self.limits.max_depth {
            return Err(DecodeError::TooDeep {
                max: self.limits.max_depth,
            });
        }
        self.deepest = self.deepest.max(depth);
        Ok(())
    }

    /// The top-level value is a batch of `len` messages (or at least `len` so far).
    fn batch(&self, len: usize) -> Result<(), DecodeError> {
        if len > self.limits.max_batch {
            return Err(DecodeError::BatchTooLong {
                max: self.limits.max_batch,
            });
        }
        Ok(())
    }
}

/// Scans JSON text: nesting depth, batch length, unterminated values, integer
/// ranges; returns the depth. Syntax proper is left to `serde_json`.
pub(crate) fn json(frame: &[u8], limits: &Limits) -> Result<usize, DecodeError> {
    let mut bounds = Bounds { limits, deepest: 0 };
    let mut depth = 0usize;
    // Whether the top-level value is an array, how many elements it has shown,
    // and whether the next token starts one.
    let mut batch = false;
    let mut count = 0usize;
    let mut expect_element = false;
    let mut started = false;

    let mut pos = 0;
    while let Some(&byte) = frame.get(pos) {
        pos += 1;
        if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        if batch && depth == 1 {
            if expect_element && byte != b']' {
                count += 1;
                expect_element = false;
                bounds.batch(count)?;
            } else if byte == b',' {
                expect_element = true;
            }
        }
        match byte {
            b'"' => pos = string_end(frame, pos)?,
            b'-' | b'0'..=b'9' => pos = number_end(frame, pos - 1)?,
            b'[' | b'{' => {
                if !started && byte == b'[' {
                    batch = true;
                    expect_element = true;
                }
                depth += 1;
                bounds.open(depth)?;
            }
            b']' | b'}' => {
                if batch && depth == 1 && count == 0 {
                    return Err(DecodeError::EmptyBatch);
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        started = true;
    }
    if depth > 0 {
        return Err(DecodeError::Truncated);
    }
    Ok(bounds.deepest)
}

/// The position just after the number that starts at `start`. An integer
/// (no fraction, no exponent) must fit 64 bits, signed or unsigned: serde_json
/// would otherwise read a larger one as a float and change its value.
fn number_end(frame: &[u8], start: usize) -> Result<usize, DecodeError> {
    let mut end = start;
    let mut integer = true;
    while let Some(&byte) = frame.get(end) {
        match byte {
            b'0'..=b'9' | b'-' => {}
            b'.' | b'e' | b'E' | b'+' => integer = false,
            _ => break,
        }
        end += 1;
    }
    // i64::MIN and u64::MAX have 19 and 20 digits: shorter integers always fit.
    if integer && end - start >= 19 {
        let text = std::str::from_utf8(&frame[start..end]).unwrap_or("");
        let fits = text.parse::<u64>().is_ok() || text.parse::<i64>().is_ok();
        if !fits && text.bytes().skip(1).all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::invalid(
                "an integer beyond 64 bits (-2^63 to 2^64-1)",
            ));
        }
    }
    Ok(end)
}

/// The position just after the closing quote of the string whose body starts
/// at `pos`.
fn string_end(frame: &[u8], mut pos: usize) -> Result<usize, DecodeError> {
    while let Some(&byte) = frame.get(pos) {
        match byte {
            b'"' => return Ok(pos + 1),
            // A backslash escapes the next byte, whatever it is.
            b'\\' => pos += 2,
            _ => pos += 1,
        }
    }
    Err(DecodeError::Truncated)
}

/// Walks MessagePack fully: every marker, every declared length checked
/// against the bytes left, strings checked for UTF-8, extension types refused,
/// exactly one value in the frame, map keys `str`; returns the depth.
pub(crate) fn msgpack(frame: &[u8], limits: &Limits) -> Result<usize, DecodeError> {
    let mut walk = MsgPack {
        buf: frame,
        pos: 0,
        bounds: Bounds { limits, deepest: 0 },
    };
    walk.value(0)?;
    if walk.pos != frame.len() {
        return Err(DecodeError::invalid("bytes after the frame's value"));
    }
    Ok(walk.bounds.deepest)
}

struct MsgPack<'a> {
    buf: &'a [u8],
    pos: usize,
    bounds: Bounds<'a>,
}

impl<'a> MsgPack<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let end = end.ok_or(DecodeError::Truncated)?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A big-endian length of `width` bytes (1, 2 or 4).
    fn len(&mut self, width: usize) -> Result<usize, DecodeError> {
        let bytes = self.take(width)?;
        let len = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        usize::try_from(len).map_err(|_| DecodeError::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<(), DecodeError> {
        let marker = Marker::from_u8(self.take(1)?[0]);
        match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                Ok(())
            }
            Marker::U8 | Marker::I8 => self.skip(1),
            Marker::U16 | Marker::I16 => self.skip(2),
            Marker::U32 | Marker::I32 | Marker::F32 => self.skip(4),
            Marker::U64 | Marker::I64 | Marker::F64 => self.skip(8),
            Marker::FixStr(len) => self.string(usize::from(len)),
            Marker::Str8 => self.len(1).and_then(|len| self.string(len)),
            Marker::Str16 => self.len(2).and_then(|len| self.string(len)),
            Marker::Str32 => self.len(4).and_then(|len| self.string(len)),
            Marker::Bin8 => self.len(1).and_then(|len| self.skip(len)),
            Marker::Bin16 => self.len(2).and_then(|len| self.skip(len)),
            Marker::Bin32 => self.len(4).and_then(|len| self.skip(len)),
            Marker::FixArray(len) => self.container(usize::from(len), 1, depth),
            Marker::Array16 => self.len(2).and_then(|len| self.container(len, 1, depth)),
            Marker::Array32 => self.len(4).and_then(|len| self.container(len, 1, depth)),
            Marker::FixMap(len) => self.container(usize::from(len), 2, depth),
            Marker::Map16 => self.len(2).and_then(|len| self.container(len, 2, depth)),
            Marker::Map32 => self.len(4).and_then(|len| self.container(len, 2, depth)),
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => Err(DecodeError::invalid(
                "MessagePack extension types are not part of the protocol",
            )),
            Marker::Reserved => Err(DecodeError::invalid("reserved MessagePack marker 0xc1")),
        }
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(drop)
    }

    /// rmp-serde would hand an invalid-UTF-8 `str` to a `Value` as bytes, so
    /// the check happens here; `is_ascii` first, since protocol strings
    /// nearly always are and it is several times cheaper than `from_utf8`.
    fn string(&mut self, len: usize) -> Result<(), DecodeError> {
        let bytes = self.take(len)?;
        if bytes.is_ascii() {
            return Ok(());
        }
        std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::invalid("invalid UTF-8 in a MessagePack string"))?;
        Ok(())
    }

    /// A container of `len` entries of `items_per_entry` values (1 for arrays,
    /// 2 for maps). Every value takes at least one byte, so a declared length
    /// beyond the bytes left is refused before anything is read or allocated.
    fn container(
        &mut self,
        len: usize,
        items_per_entry: usize,
        depth: usize,
    ) -> Result<(), DecodeError> {
        let depth = depth + 1;
        self.bounds.open(depth)?;
        if depth == 1 && items_per_entry == 1 {
            if len == 0 {
                return Err(DecodeError::EmptyBatch);
            }
            self.bounds.batch(len)?;
        }
        let items = len
            .checked_mul(items_per_entry)
            .ok_or(DecodeError::Truncated)?;
        if items > self.buf.len() - self.pos {
            return Err(DecodeError::Truncated);
        }
        for item in 0..items {
            if items_per_entry == 2 && item % 2 == 0 {
                self.key()?;
            }
            self.value(depth)?;
        }
        Ok(())
    }

    /// Every map key of the protocol is a string: a `str`, never a `bin` or
    /// a number (the value walk that follows reads the key itself).
    fn key(&self) -> Result<(), DecodeError> {
        let marker = Marker::from_u8(*self.buf.get(self.pos).ok_or(DecodeError::Truncated)?);
        match marker {
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => Ok(()),
            _ => Err(DecodeError::invalid("a map key that is not a string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_depth: 4,
            max_batch: 2,
            ..Limits::default()
        }
    }

    #[test]
    fn json_depth_counts_containers_outside_strings() {
        assert_eq!(json(br#"{"a":[[{}]]}"#, &limits()), Ok(4));
        assert_eq!(
            json(br#"{"a":[[{"b":[]}]]}"#, &limits()),
            Err(DecodeError::TooDeep { max: 4 })
        );
        assert_eq!(json(br#"{"a":"[[[[[[\"[[["}"#, &limits()), Ok(1));
    }

    #[test]
    fn json_batches_are_counted_and_must_not_be_empty() {
        assert_eq!(json(br#"[{"a":[1,2,3]}, {"b":","}]"#, &limits()), Ok(3));
        assert_eq!(
            json(b"[{},{},{}]", &limits()),
            Err(DecodeError::BatchTooLong { max: 2 })
        );
        assert_eq!(json(b" [ ] ", &limits()), Err(DecodeError::EmptyBatch));
    }

    #[test]
    fn json_integers_must_fit_64_bits() {
        let ok = [
            &b"[18446744073709551615]"[..],
            b"[-9223372036854775808]",
            b"[1e400]",
            b"[123456789012345678901234.5]",
        ];
        for frame in ok {
            assert_eq!(json(frame, &limits()), Ok(1), "{frame:?}");
        }
        for frame in [&b"[18446744073709551616]"[..], b"[-9223372036854775809]"] {
            assert!(
                matches!(json(frame, &limits()), Err(DecodeError::Invalid(_))),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn msgpack_map_keys_must_be_strings() {
        // {bin "a": 1} and {1: 1}
        for frame in [&[0x81, 0xc4, 1, b'a', 0x01][..], &[0x81, 0x01, 0x01]] {
            assert!(
                matches!(msgpack(frame, &limits()), Err(DecodeError::Invalid(_))),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn json_unterminated_values_are_truncated() {
        assert_eq!(json(br#"{"id":1"#, &limits()), Err(DecodeError::Truncated));
        assert_eq!(json(br#"{"id":"1"#, &limits()), Err(DecodeError::Truncated));
        assert_eq!(
            json(br#"{"id":"\"}"#, &limits()),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn msgpack_declared_lengths_must_fit_the_frame() {
        // array32 declaring 2^32-1 elements, then nothing.
        assert_eq!(
            msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff], &limits()),
            Err(DecodeError::BatchTooLong { max: 2 })
        );
        // map32 declaring 2^32-1 entries inside a one-message frame.
        assert_eq!(
            msgpack(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01], &limits()),
            Err(DecodeError::Truncated)
        );
        // str32 / bin32 declaring 4 GiB.
        assert_eq!(
            msgpack(&[0x81, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61], &limits()),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            msgpack(&[0x81, 0xa1, 0x61, 0xc6, 0xff, 0xff, 0xff, 0xff], &limits()),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn msgpack_refuses_ext_reserved_invalid_utf8_and_trailing_bytes() {
        assert!(matches!(
            msgpack(&[0x81, 0xa1, 0x61, 0xd4, 0x01, 0x00], &limits()),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            msgpack(&[0xc1], &limits()),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            msgpack(&[0x81, 0xa1, 0xff, 0xc0], &limits()),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            msgpack(&[0x80, 0xc0], &limits()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn msgpack_depth_and_empty_batch() {
        assert_eq!(
            msgpack(&[0x81, 0xa1, 0x61, 0x91, 0x91, 0x80], &limits()),
            Ok(4)
        );
        assert_eq!(
            msgpack(&[0x81, 0xa1, 0x61, 0x91, 0x91, 0x91, 0x80], &limits()),
            Err(DecodeError::TooDeep { max: 4 })
        );
        assert_eq!(msgpack(&[0x90], &limits()), Err(DecodeError::EmptyBatch));
        assert_eq!(msgpack(&[], &limits()), Err(DecodeError::Truncated));
    }
}
