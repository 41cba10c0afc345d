//! Fuzzes the msgpack decoder: run with `cargo fuzz run decode_msgpack` in sacred-proto/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sacred_proto::Codec;

mod check;

fuzz_target!(|data: &[u8]| check::frame(Codec::MsgPack, data));
