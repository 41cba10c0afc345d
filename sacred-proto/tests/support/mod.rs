//! Proptest strategies for every message of the protocol, shared by the tests.

#![allow(dead_code, unreachable_pub)]

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use sacred_proto::*;

/// Payloads; `bytes` says whether [`Value::Bytes`] may appear (it does not
/// survive JSON as bytes, by design: JSON carries it as a base64 string).
pub fn value(bytes: bool) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        (i64::MIN..0).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
    ]
    .prop_filter("bytes only when allowed", move |v| {
        bytes || !matches!(v, Value::Bytes(_))
    });
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("\\PC{0,8}", inner, 0..4).prop_map(Value::Object),
        ]
    })
    .boxed()
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    option::of(text())
}

pub fn client_info() -> impl Strategy<Value = ClientInfo> {
    (text(), text(), text(), text()).prop_map(|(n, k, r, v)| ClientInfo::new(n, k, r, v))
}

pub fn peer() -> impl Strategy<Value = Peer> {
    (text(), opt_text(), client_info()).prop_map(|(id, user, info)| Peer::new(id, user, info))
}

pub fn position() -> impl Strategy<Value = StreamPosition> {
    (any::<u64>(), text()).prop_map(|(offset, epoch)| StreamPosition::new(offset, epoch))
}

fn subscribe_request() -> impl Strategy<Value = SubscribeRequest> {
    (text(), option::of(position()), any::<bool>()).prop_map(|(channel, recover, join_leave)| {
        let mut sub = SubscribeRequest::new(channel);
        sub.recover = recover;
        sub.join_leave = join_leave;
        sub
    })
}

pub fn command(bytes: bool) -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            opt_text(),
            client_info(),
            value(bytes),
            vec(subscribe_request(), 0..3)
        )
            .prop_map(|(token, client, data, subs)| {
                let mut connect = ConnectRequest::new(token, client);
                connect.data = data;
                connect.subs = subs;
                Command::from(connect)
            }),
        subscribe_request().prop_map(Command::from),
        text().prop_map(|c| UnsubscribeRequest::new(c).into()),
        (text(), value(bytes)).prop_map(|(c, d)| PublishRequest::new(c, d).into()),
        (text(), value(bytes)).prop_map(|(to, d)| SendRequest::new(to, d).into()),
        text().prop_map(|c| PresenceRequest::new(c).into()),
        (
            text(),
            option::of(position()),
            option::of(any::<u32>()),
            any::<bool>()
        )
            .prop_map(|(channel, since, limit, reverse)| {
                let mut history = HistoryRequest::new(channel);
                history.since = since;
                history.limit = limit;
                history.reverse = reverse;
                history.into()
            }),
        (text(), value(bytes)).prop_map(|(m, d)| RpcRequest::new(m, d).into()),
        Just(PongRequest::new().into()),
        text().prop_map(|t| RefreshRequest::new(t).into()),
        (
            text(),
            text(),
            option::of(any::<u32>()),
            option::of(any::<u32>())
        )
            .prop_map(|(channel, text, limit, skip)| {
                let mut search = SearchRequest::new(channel, text);
                search.limit = limit;
                search.skip = skip;
                search.into()
            }),
    ]
}

pub fn client_message(bytes: bool) -> impl Strategy<Value = ClientMessage> {
    (1..=u32::MAX, command(bytes)).prop_map(|(id, command)| ClientMessage::new(id, command))
}

pub fn publication(bytes: bool) -> impl Strategy<Value = Publication> {
    (
        text(),
        option::of(position()),
        value(bytes),
        option::of(peer()),
        any::<u64>(),
    )
        .prop_map(|(channel, position, data, from, time)| {
            let mut publication = Publication::new(channel, data, time);
            if let Some(position) = position {
                publication.offset = Some(position.offset);
                publication.epoch = Some(position.epoch);
            }
            publication.from = from;
            publication
        })
}

fn subscribe_reply(bytes: bool) -> impl Strategy<Value = SubscribeReply> {
    (
        option::of(position()),
        any::<bool>(),
        vec(publication(bytes), 0..3),
    )
        .prop_map(|(position, recovered, publications)| {
            let mut reply = SubscribeReply::default();
            reply.offset = position.as_ref().map(|p| p.offset);
            reply.epoch = position.map(|p| p.epoch);
            reply.recovered = recovered;
            reply.publications = publications;
            reply
        })
}

pub fn reply(bytes: bool) -> impl Strategy<Value = Reply> {
    prop_oneof![
        (
            text(),
            text(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            option::of(any::<u64>()),
            btree_map(text(), subscribe_reply(bytes), 0..2),
            value(bytes)
        )
            .prop_map(|(client, version, ping, pong, time, expires, subs, data)| {
                let mut reply = ConnectReply::new(client, ping, pong, time);
                reply.version = version;
                reply.expires = expires;
                reply.subs = subs;
                reply.data = data;
                Reply::from(reply)
            }),
        subscribe_reply(bytes).prop_map(Reply::from),
        Just(UnsubscribeReply::default().into()),
        option::of(position()).prop_map(|position| {
            let mut reply = PublishReply::default();
            reply.offset = position.as_ref().map(|p| p.offset);
            reply.epoch = position.map(|p| p.epoch);
            reply.into()
        }),
        Just(SendReply::default().into()),
        vec(peer(), 0..3).prop_map(|clients| {
            let mut reply = PresenceReply::default();
            reply.clients = clients;
            reply.into()
        }),
        (position(), vec(publication(bytes), 0..3)).prop_map(|(position, publications)| {
            let mut reply = HistoryReply::default();
            reply.offset = position.offset;
            reply.epoch = position.epoch;
            reply.publications = publications;
            reply.into()
        }),
        value(bytes).prop_map(|d| RpcReply::new(d).into()),
        any::<u64>().prop_map(|t| PongReply::new(t).into()),
        option::of(any::<u64>()).prop_map(|expires| {
            let mut reply = RefreshReply::default();
            reply.expires = expires;
            reply.into()
        }),
        (any::<u64>(), vec(publication(bytes), 0..3)).prop_map(|(total, publications)| {
            let mut reply = SearchReply::default();
            reply.total = total;
            reply.publications = publications;
            reply.into()
        }),
    ]
}

pub fn reply_error() -> impl Strategy<Value = ReplyError> {
    (any::<u32>(), text(), any::<bool>()).prop_map(|(code, message, temporary)| {
        let mut err = ReplyError::new(ErrorCode::from_u32(code), message);
        err.temporary = temporary;
        err
    })
}

pub fn push(bytes: bool) -> impl Strategy<Value = Push> {
    prop_oneof![
        publication(bytes).prop_map(Push::from),
        (text(), peer()).prop_map(|(c, p)| Join::new(c, p).into()),
        (text(), peer()).prop_map(|(c, p)| Leave::new(c, p).into()),
        (option::of(peer()), value(bytes)).prop_map(|(from, d)| DirectMessage::new(from, d).into()),
        (text(), any::<u32>(), text()).prop_map(|(c, code, r)| Unsubscribed::new(
            c,
            ErrorCode::from_u32(code),
            r
        )
        .into()),
        any::<u16>().prop_map(|code| Disconnect::from(DisconnectCode::from_u16(code)).into()),
        (opt_text(), any::<u64>()).prop_map(|(url, at)| Migrate::new(url, at).into()),
        any::<u64>().prop_map(|t| Ping::new(t).into()),
    ]
}

pub fn server_message(bytes: bool) -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (1..=u32::MAX, reply(bytes)).prop_map(|(id, r)| ServerMessage::reply(id, r)),
        (1..=u32::MAX, reply_error()).prop_map(|(id, e)| ServerMessage::error(id, e)),
        push(bytes).prop_map(ServerMessage::Push),
    ]
}

/// Limits loose enough for any generated message.
pub fn roomy() -> Limits {
    let mut limits = Limits::default();
    limits.max_frame_bytes = usize::MAX;
    limits.max_depth = 64;
    limits
}

/// Both codecs with whether each carries bytes as bytes.
pub const CODECS: [(Codec, bool); 2] = [(Codec::Json, false), (Codec::MsgPack, true)];
