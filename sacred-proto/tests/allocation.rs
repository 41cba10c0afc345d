//! Decoding allocates in proportion to the frame, whatever the frame claims.
//!
//! Its own test binary because it installs a counting global allocator; one
//! test function so that nothing else allocates while it measures.

use std::alloc::System;

use sacred_proto::{ClientMessage, Codec, Limits, ServerMessage};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes a decode may allocate per byte of frame, plus a fixed allowance.
/// The densest case is MessagePack nil: 1 byte of frame becomes one `Value`
/// (32 bytes) in a vector that may double while growing.
const PER_BYTE: usize = 96;
const FIXED: usize = 16 * 1024;

fn allocated_by(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    region.change().bytes_allocated
}

fn frames() -> Vec<(&'static str, Codec, Vec<u8>)> {
    let mut frames = Vec::new();
    let publish = |data: &[u8]| {
        // {"id":1,"publish":{"channel":"c","data":<data>}} in MessagePack.
        let mut frame = vec![0x82, 0xa2, b'i', b'd', 0x01, 0xa7];
        frame.extend_from_slice(b"publish");
        frame.extend_from_slice(&[0x82, 0xa7]);
        frame.extend_from_slice(b"channel");
        frame.extend_from_slice(&[0xa1, b'c', 0xa4]);
        frame.extend_from_slice(b"data");
        frame.extend_from_slice(data);
        frame
    };
    // 10,000 nils in one array16: the densest payload.
    let mut nils = vec![0xdc, 0x27, 0x10];
    nils.extend(std::iter::repeat_n(0xc0, 10_000));
    frames.push(("msgpack array of nils", Codec::MsgPack, publish(&nils)));
    // A map of many one-letter keys.
    let mut map = vec![0xde, 0x0b, 0xb8];
    for i in 0..3000u32 {
        map.extend_from_slice(&[
            0xa2,
            b'a' + (i % 26) as u8,
            b'a' + (i / 26 % 26) as u8,
            0xc0,
        ]);
    }
    frames.push(("msgpack wide map", Codec::MsgPack, publish(&map)));
    // Length lies of every container kind.
    frames.push((
        "msgpack array32 lie",
        Codec::MsgPack,
        publish(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
    ));
    frames.push((
        "msgpack map32 lie",
        Codec::MsgPack,
        publish(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
    ));
    frames.push((
        "msgpack bin32 lie",
        Codec::MsgPack,
        publish(&[0xc6, 0xff, 0xff, 0xff, 0xff]),
    ));
    // JSON: many empty arrays, many small strings.
    let arrays = format!(
        r#"{{"id":1,"publish":{{"channel":"c","data":[{}[]]}}}}"#,
        "[],".repeat(3000)
    );
    frames.push(("json many arrays", Codec::Json, arrays.into_bytes()));
    let strings = format!(
        r#"{{"id":1,"publish":{{"channel":"c","data":[{}""]}}}}"#,
        r#""","#.repeat(3000)
    );
    frames.push(("json many strings", Codec::Json, strings.into_bytes()));
    frames
}

#[test]
fn decoding_allocates_in_proportion_to_the_frame() {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 64 * 1024;
    for (name, codec, frame) in frames() {
        let bound = PER_BYTE * frame.len() + FIXED;
        let client = allocated_by(|| drop(codec.decode::<ClientMessage>(&frame, &limits)));
        let server = allocated_by(|| drop(codec.decode::<ServerMessage>(&frame, &limits)));
        for (side, allocated) in [("client", client), ("server", server)] {
            assert!(
                allocated <= bound,
                "{name} ({side} side): {allocated} bytes allocated for a {}-byte frame (bound {bound})",
                frame.len()
            );
        }
    }
}
