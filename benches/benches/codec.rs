//! Encode and decode of typical frames in both codecs, against a baseline.
//!
//! Run with: cargo bench -p sacred-benches --bench codec
//!
//! The frames: one publication push of about 200 bytes (JSON), and a batch of
//! 16 of them. The baseline encodes and decodes the same shape with plain
//! `#[derive(Serialize, Deserialize)]` structs and `serde_json::Value` through
//! the same serde libraries: the floor Sacred's envelope, structural scan and
//! `Value` type are measured against.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sacred_proto::{ClientInfo, Codec, Limits, Peer, Publication, ServerMessage, Value};
use serde::{Deserialize, Serialize};

fn publication(offset: u64) -> Publication {
    let data = serde_json::json!({
        "text": "Has anyone tried the new build on arm64 yet?",
        "thread": 1842,
        "mentions": ["ada", "lin"],
    });
    let mut publication =
        Publication::new("chat:lobby", Value::from(data), 1_763_800_000_000 + offset);
    publication.offset = Some(offset);
    publication.epoch = Some("x7Kp".into());
    publication.from = Some(Peer::new(
        "c-2f9a",
        Some("ada".into()),
        ClientInfo::new("Ada", "app", "browser", ""),
    ));
    publication
}

#[derive(Serialize, Deserialize)]
struct PlainInfo {
    name: String,
    kind: String,
    runtime: String,
}

#[derive(Serialize, Deserialize)]
struct PlainPeer {
    id: String,
    user: String,
    info: PlainInfo,
}

#[derive(Serialize, Deserialize)]
struct PlainPublication {
    channel: String,
    offset: u64,
    epoch: String,
    data: serde_json::Value,
    from: PlainPeer,
    time: u64,
}

/// `{"publication": {...}}` with a derived struct instead of Sacred's envelope.
#[derive(Serialize, Deserialize)]
struct PlainPush {
    publication: PlainPublication,
}

fn plain(offset: u64) -> PlainPush {
    let publication = publication(offset);
    PlainPush {
        publication: PlainPublication {
            channel: publication.channel,
            offset,
            epoch: "x7Kp".into(),
            data: publication.data.into_json(),
            from: PlainPeer {
                id: "c-2f9a".into(),
                user: "ada".into(),
                info: PlainInfo {
                    name: "Ada".into(),
                    kind: "app".into(),
                    runtime: "browser".into(),
                },
            },
            time: publication.time,
        },
    }
}

// Each measured operation is a non-inlined function, so that callgrind can
// count it per call (benches/callgrind.sh) for Sacred and the baseline alike.

#[inline(never)]
fn sacred_encode(codec: Codec, messages: &[ServerMessage]) -> Vec<u8> {
    if messages.len() == 1 {
        codec.encode(&messages[0])
    } else {
        codec.encode_batch(messages)
    }
    .unwrap()
}

#[inline(never)]
fn sacred_decode(codec: Codec, frame: &[u8], limits: &Limits) -> Vec<ServerMessage> {
    codec.decode(frame, limits).unwrap()
}

#[inline(never)]
fn plain_encode(codec: Codec, messages: &[PlainPush]) -> Vec<u8> {
    fn encode<T: Serialize + ?Sized>(codec: Codec, value: &T) -> Vec<u8> {
        match codec {
            Codec::Json => serde_json::to_vec(value).unwrap(),
            Codec::MsgPack => rmp_serde::to_vec_named(value).unwrap(),
        }
    }
    if messages.len() == 1 {
        encode(codec, &messages[0])
    } else {
        encode(codec, messages)
    }
}

#[inline(never)]
fn plain_decode(codec: Codec, frame: &[u8], batch: bool) -> Vec<PlainPush> {
    fn decode<T: for<'de> Deserialize<'de>>(codec: Codec, frame: &[u8]) -> T {
        match codec {
            Codec::Json => serde_json::from_slice(frame).unwrap(),
            Codec::MsgPack => rmp_serde::from_slice(frame).unwrap(),
        }
    }
    if batch {
        decode(codec, frame)
    } else {
        vec![decode(codec, frame)]
    }
}

fn codec(c: &mut Criterion) {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 1 << 20;
    let single = vec![ServerMessage::push(publication(42))];
    let batch: Vec<ServerMessage> = (0..16)
        .map(|i| ServerMessage::push(publication(42 + i)))
        .collect();
    let plain_single = vec![plain(42)];
    let plain_batch: Vec<PlainPush> = (0..16).map(|i| plain(42 + i)).collect();

    for codec in Codec::ALL {
        let name = if codec.is_binary() { "msgpack" } else { "json" };
        for (shape, messages, plain) in [
            ("publication", &single, &plain_single),
            ("batch16", &batch, &plain_batch),
        ] {
            let frame = sacred_encode(codec, messages);
            let plain_frame = plain_encode(codec, plain);
            let batch = messages.len() > 1;

            let mut group = c.benchmark_group(format!("{name}/{shape}"));
            group.throughput(Throughput::Bytes(frame.len() as u64));
            group.bench_function(BenchmarkId::new("encode", "sacred"), |b| {
                b.iter(|| sacred_encode(codec, black_box(messages)))
            });
            group.bench_function(BenchmarkId::new("encode", "baseline"), |b| {
                b.iter(|| plain_encode(codec, black_box(plain)))
            });
            group.bench_function(BenchmarkId::new("decode", "sacred"), |b| {
                b.iter(|| sacred_decode(codec, black_box(&frame), &limits))
            });
            group.bench_function(BenchmarkId::new("decode", "baseline"), |b| {
                b.iter(|| plain_decode(codec, black_box(&plain_frame), batch))
            });
            group.finish();
            println!(
                "frame size {name}/{shape}: sacred {} bytes, baseline {} bytes",
                frame.len(),
                plain_frame.len()
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = codec
}
criterion_main!(benches);
