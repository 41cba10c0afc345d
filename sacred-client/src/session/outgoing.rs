//! What the session has to send: each command encoded once, checked against
//! the server's limits before it is queued, and batched into frames that
//! never exceed those limits.

use std::collections::VecDeque;

use sacred_proto::{ClientMessage, Codec, Command, DecodeError, Limits};

use crate::event::RequestError;

/// A command ready for the wire.
#[derive(Debug)]
pub(crate) struct Encoded {
    bytes: Vec<u8>,
    /// Its nesting depth as a message of its own (one more inside a batch).
    depth: usize,
}

/// Encodes command `id` and checks it against `limits`: a command the server
/// would refuse by closing the connection (too big, too deep) is refused here.
pub(crate) fn encode(
    codec: Codec,
    limits: &Limits,
    id: u32,
    command: Command,
) -> Result<Encoded, RequestError> {
    let message = ClientMessage::new(id, command);
    let bytes = codec
        .encode(&message)
        .map_err(|err| RequestError::Invalid(err.to_string()))?;
    let depth = codec.check(&bytes, limits).map_err(|err| match err {
        DecodeError::TooBig { len, max } => RequestError::TooLarge { bytes: len, max },
        other => RequestError::Invalid(other.to_string()),
    })?;
    Ok(Encoded { bytes, depth })
}

/// The queue of encoded commands, in order.
#[derive(Debug)]
pub(crate) struct Outgoing {
    codec: Codec,
    queue: VecDeque<Encoded>,
}

impl Outgoing {
    pub(crate) fn new(codec: Codec) -> Outgoing {
        Outgoing {
            codec,
            queue: VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, encoded: Encoded) {
        self.queue.push_back(encoded);
    }

    /// Drops everything (the connection it was for is gone).
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }

    /// The next frame: as many queued commands as fit in one, in order, up to
    /// `max_batch` and the server's batch, size and depth limits. A command
    /// too deep to travel inside a batch goes alone.
    pub(crate) fn next_frame(&mut self, limits: &Limits, max_batch: usize) -> Option<Vec<u8>> {
        let first = self.queue.front()?;
        let max_batch = max_batch.min(limits.max_batch).max(1);
        let mut count = 1;
        let mut body = first.bytes.len();
        let mut deepest = first.depth;
        while let Some(next) = self.queue.get(count) {
            let messages = count + 1;
            let fits = messages <= max_batch
                && body + next.bytes.len() + self.codec.batch_overhead(messages)
                    <= limits.max_frame_bytes
                && deepest.max(next.depth) < limits.max_depth;
            if !fits {
                break;
            }
            count = messages;
            body += next.bytes.len();
            deepest = deepest.max(next.depth);
        }
        if count == 1 {
            return self.queue.pop_front().map(|e| e.bytes);
        }
        let batch: Vec<Encoded> = self.queue.drain(..count).collect();
        let parts: Vec<&[u8]> = batch.iter().map(|e| e.bytes.as_slice()).collect();
        Some(self.codec.join(&parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sacred_proto::{PublishRequest, Value};

    fn publish(codec: Codec, limits: &Limits, id: u32, data: Value) -> Encoded {
        encode(codec, limits, id, PublishRequest::new("c", data).into()).unwrap()
    }

    #[test]
    fn frames_never_exceed_the_limits_they_were_built_for() {
        for codec in Codec::ALL {
            let mut limits = Limits::default();
            limits.max_frame_bytes = 200;
            let mut outgoing = Outgoing::new(codec);
            for id in 1..=20 {
                outgoing.push(publish(codec, &limits, id, Value::from("x".repeat(30))));
            }
            let mut messages = 0;
            while let Some(frame) = outgoing.next_frame(&limits, 100) {
                assert!(frame.len() <= 200, "{codec}: {} bytes", frame.len());
                let decoded: Vec<ClientMessage> = codec.decode(&frame, &limits).unwrap();
                messages += decoded.len();
            }
            assert_eq!(messages, 20, "{codec}: every command went, once");
        }
    }

    #[test]
    fn what_the_server_would_close_for_is_refused_before_it_is_queued() {
        let limits = Limits::default();
        let big = Value::from("x".repeat(limits.max_frame_bytes));
        let err = encode(
            Codec::Json,
            &limits,
            1,
            PublishRequest::new("c", big).into(),
        );
        assert!(
            matches!(err, Err(RequestError::TooLarge { max: 10240, .. })),
            "{err:?}"
        );
        let deep = (0..40).fold(Value::Null, |inner, _| Value::Array(vec![inner]));
        let err = encode(
            Codec::MsgPack,
            &limits,
            1,
            PublishRequest::new("c", deep).into(),
        );
        assert!(matches!(err, Err(RequestError::Invalid(_))), "{err:?}");
    }

    #[test]
    fn a_command_at_the_depth_limit_travels_alone() {
        let limits = Limits::default();
        // Message 1, body 2, then 30 levels: exactly the limit of 32.
        let deep = (0..30).fold(Value::Null, |inner, _| Value::Array(vec![inner]));
        let mut outgoing = Outgoing::new(Codec::Json);
        outgoing.push(publish(Codec::Json, &limits, 1, Value::from(1u64)));
        outgoing.push(publish(Codec::Json, &limits, 2, deep));
        outgoing.push(publish(Codec::Json, &limits, 3, Value::from(3u64)));
        let sizes: Vec<usize> = std::iter::from_fn(|| outgoing.next_frame(&limits, 100))
            .map(|frame| {
                Codec::Json
                    .decode::<ClientMessage>(&frame, &limits)
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [1, 1, 1]);
    }
}
