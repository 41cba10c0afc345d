//! The session core case by case, in virtual time: the test plays the server
//! and the transport, so every timer and every frame is under its control.

use std::time::Duration;

use sacred_client::{Action, Backoff, Event, RequestError, Session, SessionConfig, State};
use sacred_proto::*;

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

struct Harness {
    session: Session,
    now: Duration,
}

impl Harness {
    fn new() -> Harness {
        let mut config = SessionConfig::default();
        config.seed = 42;
        config.offline_queue = 3;
        Harness::with(config)
    }

    fn with(config: SessionConfig) -> Harness {
        Harness {
            session: Session::new(config),
            now: Duration::ZERO,
        }
    }

    /// Connects: open, connect command, connect reply.
    fn connected() -> Harness {
        let mut h = Harness::new();
        h.session.connect(h.now);
        assert_eq!(h.session.poll_action(), Some(Action::Open { url: None }));
        h.open_and_answer();
        h
    }

    /// The socket opens; the server answers the connect and every subscribe.
    fn open_and_answer(&mut self) -> Vec<ClientMessage> {
        self.session.handle_open(self.now);
        let sent = self.sent();
        let mut replies = Vec::new();
        for message in &sent {
            match &message.command {
                Command::Connect(_) => replies.push(ServerMessage::reply(
                    message.id,
                    ConnectReply::new("c1", 5000, 10_000, 1_000_000),
                )),
                Command::Subscribe(sub) => {
                    replies.push(ServerMessage::reply(message.id, self.subscribe_reply(sub)))
                }
                Command::Publish(_) => {
                    replies.push(ServerMessage::reply(message.id, PublishReply::default()))
                }
                _ => {}
            }
        }
        self.session.handle_frame(self.now, replies);
        assert_eq!(self.session.state(), State::Connected);
        sent
    }

    /// The server's answer: recovered if asked from offset >= 5 of epoch "e".
    fn subscribe_reply(&self, request: &SubscribeRequest) -> SubscribeReply {
        let mut reply = SubscribeReply::default();
        reply.offset = Some(9);
        reply.epoch = Some("e".into());
        if let Some(since) = &request.recover
            && since.epoch == "e"
            && since.offset >= 5
        {
            reply.recovered = true;
            reply.publications = (since.offset + 1..=9)
                .map(|o| publication(&request.channel, o, "e"))
                .collect();
        }
        reply
    }

    /// Every frame the session has ready, decoded.
    fn frames(&mut self) -> Vec<Vec<ClientMessage>> {
        std::iter::from_fn(|| self.session.poll_transmit())
            .map(|frame| decode(&frame))
            .collect()
    }

    fn sent(&mut self) -> Vec<ClientMessage> {
        self.frames().into_iter().flatten().collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    fn publications(&mut self) -> Vec<u64> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Publication(p) => p.offset,
                _ => None,
            })
            .collect()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
    }

    /// Subscribes to `channel`; the server answers with position `offset`/`epoch`.
    fn subscribed_at(&mut self, channel: &str, offset: u64, epoch: &str) {
        self.session.subscribe(self.now, channel, false).unwrap();
        let sent = self.sent();
        let mut reply = SubscribeReply::default();
        reply.offset = Some(offset);
        reply.epoch = Some(epoch.into());
        self.session
            .handle_frame(self.now, vec![ServerMessage::reply(sent[0].id, reply)]);
    }

    /// The socket drops; the session reconnects and the server answers.
    fn reconnect(&mut self) {
        self.session.handle_close(self.now, None);
        self.advance(SEC);
        let _ = self.session.poll_action();
        self.open_and_answer();
    }

    fn push(&mut self, push: impl Into<Push>) {
        self.session
            .handle_frame(self.now, vec![ServerMessage::push(push)]);
    }
}

/// A frame as the server reads it (with room for any test's frames).
fn decode(frame: &[u8]) -> Vec<ClientMessage> {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 1 << 20;
    Codec::Json
        .decode(frame, &limits)
        .expect("the session sends valid frames")
}

fn disconnected(events: &[Event], code: u16, reconnect: bool) -> bool {
    events.iter().any(|e| {
        matches!(e, Event::Disconnected { code: c, reconnect: r, .. } if *c == code && *r == reconnect)
    })
}

fn publication(channel: &str, offset: u64, epoch: &str) -> Publication {
    let mut publication = Publication::new(channel, Value::from(offset), 0);
    publication.offset = Some(offset);
    publication.epoch = Some(epoch.into());
    publication
}

#[test]
fn connecting_walks_the_states_and_announces_the_connection() {
    let mut h = Harness::connected();
    let events = h.events();
    assert_eq!(events[0], Event::State(State::Connecting));
    assert!(matches!(&events[1], Event::Connected(reply) if reply.client == "c1"));
    assert_eq!(events[2], Event::State(State::Connected));
    assert_eq!(h.session.server_time(h.now), Some(1_000_000));
}

#[test]
fn the_first_connect_is_retried_with_growing_jittered_delays_reset_by_success() {
    let mut h = Harness::new();
    h.session.connect(h.now);
    let mut delays = Vec::new();
    for attempt in 0..6u32 {
        assert!(
            matches!(h.session.poll_action(), Some(Action::Open { .. })),
            "attempt {attempt}"
        );
        h.session.handle_close(h.now, None);
        let at = h.session.poll_timeout().expect("a reconnect is scheduled");
        let delay = at - h.now;
        let spread = (500u64 << attempt).min(20_000);
        let most = Duration::from_millis((500 + spread).min(20_000));
        assert!(
            delay >= 500 * MS && delay <= most,
            "attempt {attempt}: {delay:?}"
        );
        delays.push(delay);
        h.advance(delay - MS);
        assert_eq!(h.session.poll_action(), None, "not before its time");
        h.advance(MS);
    }
    assert!(delays.last() > delays.first());
    assert!(disconnected(&h.events(), 1006, true));
    // Success resets the schedule: the next failure waits 0.5-1 s again.
    let _ = h.session.poll_action();
    h.open_and_answer();
    h.session
        .handle_close(h.now, Some((1001, "going away".into())));
    let delay = h.session.poll_timeout().unwrap() - h.now;
    assert!(delay >= 500 * MS && delay <= SEC, "{delay:?}");
}

#[test]
fn a_terminal_code_stops_reconnecting_and_fails_everything() {
    let mut h = Harness::connected();
    let rpc = h
        .session
        .request(h.now, RpcRequest::new("slow", Value::Null).into())
        .unwrap();
    h.events();
    // The disconnect push's code wins over whatever the close frame says.
    h.push(Disconnect::from(DisconnectCode::BAD_REQUEST));
    h.session.handle_close(h.now, None);
    let events = h.events();
    assert!(events.contains(&Event::Disconnected {
        code: 3501,
        reason: "bad request".into(),
        reconnect: false
    }));
    assert!(events.contains(&Event::Reply {
        request: rpc,
        result: Err(RequestError::Disconnected)
    }));
    assert_eq!(h.session.state(), State::Closed);
    assert_eq!(h.session.poll_timeout(), None, "nothing scheduled");
    assert_eq!(
        h.session.publish(h.now, "c", Value::Null),
        Err(RequestError::Closed)
    );
}

#[test]
fn replies_time_out_after_the_request_timeout() {
    let mut h = Harness::connected();
    let rpc = h
        .session
        .request(h.now, RpcRequest::new("m", Value::Null).into())
        .unwrap();
    h.advance(5 * SEC - MS);
    assert!(!h.events().iter().any(|e| matches!(e, Event::Reply { .. })));
    h.advance(MS);
    assert_eq!(
        h.events(),
        [Event::Reply {
            request: rpc,
            result: Err(RequestError::Timeout)
        }]
    );
}

#[test]
fn resubscribes_with_positions_in_the_connect_frame_and_sends_queued_commands_once_connected() {
    let mut h = Harness::connected();
    h.session.subscribe(h.now, "chat:a", false).unwrap();
    h.session.subscribe(h.now, "chat:b", true).unwrap();
    let sent = h.sent();
    let mut replies = Vec::new();
    for message in &sent {
        assert!(matches!(message.command, Command::Subscribe(_)));
        let mut reply = SubscribeReply::default();
        reply.offset = Some(4);
        reply.epoch = Some("e".into());
        replies.push(ServerMessage::reply(message.id, reply));
    }
    h.session.handle_frame(h.now, replies);
    h.push(publication("chat:a", 5, "e"));
    h.push(publication("chat:a", 6, "e"));
    assert_eq!(h.publications(), [5, 6]);

    h.session.handle_close(h.now, None);
    let queued = h
        .session
        .publish(h.now, "chat:a", Value::from("while away"))
        .unwrap();
    h.advance(SEC);
    assert!(matches!(
        h.session.poll_action(),
        Some(Action::Open { url: None })
    ));
    h.session.handle_open(h.now);
    let frames = h.frames();
    assert_eq!(frames.len(), 1, "connect and resubscribes in one frame");
    let frame = &frames[0];
    assert!(matches!(frame[0].command, Command::Connect(_)));
    let recover = |channel: &str| {
        frame.iter().find_map(|m| match &m.command {
            Command::Subscribe(s) if s.channel == channel => Some(s.recover.clone()),
            _ => None,
        })
    };
    assert_eq!(recover("chat:a"), Some(Some(StreamPosition::new(6, "e"))));
    assert_eq!(recover("chat:b"), Some(Some(StreamPosition::new(4, "e"))));
    assert!(
        !frame
            .iter()
            .any(|m| matches!(m.command, Command::Publish(_))),
        "the queued publish waits until the connect is accepted"
    );
    let reply = ConnectReply::new("c2", 5000, 10_000, 1_000_000);
    h.session
        .handle_frame(h.now, vec![ServerMessage::reply(frame[0].id, reply)]);
    let after = h.sent();
    let publish = after
        .iter()
        .find(|m| matches!(m.command, Command::Publish(_)))
        .expect("the queued publish, right after the connect reply");
    h.session.handle_frame(
        h.now,
        vec![ServerMessage::reply(publish.id, PublishReply::default())],
    );
    assert!(h.events().contains(&Event::Reply {
        request: queued,
        result: Ok(PublishReply::default().into())
    }));
}

#[test]
fn recovery_replays_in_order_and_duplicates_are_dropped() {
    let mut h = Harness::connected();
    h.subscribed_at("c", 5, "e");
    h.reconnect();
    let events = h.events();
    let replayed: Vec<u64> = events
        .iter()
        .filter_map(|e| {
            if let Event::Publication(p) = e {
                p.offset
            } else {
                None
            }
        })
        .collect();
    assert_eq!(replayed, [6, 7, 8, 9]);
    assert!(events.contains(&Event::Subscribed {
        channel: "c".into(),
        recovered: true
    }));
    // A live duplicate of something replayed is dropped; the next one passes.
    h.push(publication("c", 9, "e"));
    h.push(publication("c", 10, "e"));
    assert_eq!(h.publications(), [10]);
    // A new epoch means the stream restarted: the app is told continuity
    // broke (an unrecovered resubscription), and the publications are taken.
    h.push(publication("c", 1, "f"));
    let events = h.events();
    assert_eq!(
        events[0],
        Event::Subscribed {
            channel: "c".into(),
            recovered: false
        }
    );
    assert!(matches!(&events[1], Event::Publication(p) if p.offset == Some(1)));
}

#[test]
fn unrecoverable_gaps_are_reported_so_the_app_reloads() {
    let mut h = Harness::connected();
    h.subscribed_at("c", 2, "old");
    h.reconnect();
    let events = h.events();
    assert!(events.contains(&Event::Subscribed {
        channel: "c".into(),
        recovered: false
    }));
    assert!(
        !events.iter().any(|e| matches!(e, Event::Publication(_))),
        "nothing, never part of the gap"
    );
    h.push(publication("c", 10, "e"));
    assert_eq!(
        h.publications(),
        [10],
        "continues from the stream's current position"
    );
}

#[test]
fn the_offline_queue_is_bounded_in_count_and_time() {
    let mut h = Harness::new();
    h.session.connect(h.now);
    let first = h.session.publish(h.now, "c", Value::from(1u64)).unwrap();
    h.advance(2 * SEC);
    let _ = h.session.publish(h.now, "c", Value::from(2u64)).unwrap();
    let _ = h.session.publish(h.now, "c", Value::from(3u64)).unwrap();
    assert_eq!(
        h.session.publish(h.now, "c", Value::from(4u64)),
        Err(RequestError::QueueFull)
    );
    h.events();
    h.advance(8 * SEC);
    assert_eq!(
        h.events(),
        [Event::Reply {
            request: first,
            result: Err(RequestError::Expired)
        }]
    );
    // Any command waits for the connection, in the same bounded queue.
    assert!(
        h.session
            .request(h.now, PresenceRequest::new("c").into())
            .is_ok()
    );
    assert_eq!(
        h.session.request(h.now, PresenceRequest::new("c").into()),
        Err(RequestError::QueueFull)
    );
}

#[test]
fn pings_are_answered_and_feed_the_clock() {
    let mut h = Harness::connected();
    h.advance(3 * SEC);
    h.push(Ping::new(1_003_000));
    let sent = h.sent();
    assert!(matches!(
        sent[..],
        [ClientMessage {
            command: Command::Pong(_),
            ..
        }]
    ));
    h.now += 20 * MS;
    h.session.handle_frame(
        h.now,
        vec![ServerMessage::reply(sent[0].id, PongReply::new(1_003_010))],
    );
    assert_eq!(h.session.server_time(h.now), Some(1_003_020));
}

#[test]
fn silence_beyond_interval_plus_timeout_is_a_dead_link() {
    let mut h = Harness::connected();
    h.advance(14 * SEC);
    h.push(Ping::new(0));
    h.sent();
    h.advance(14 * SEC);
    assert_eq!(h.session.poll_action(), None, "something arrived 14 s ago");
    h.advance(SEC);
    assert_eq!(
        h.session.poll_action(),
        Some(Action::Close),
        "15 s of silence"
    );
    h.session.handle_close(h.now, None);
    assert!(disconnected(&h.events(), 1006, true));
}

#[test]
fn migrate_advice_moves_before_the_deadline_to_the_advised_url() {
    let mut h = Harness::connected();
    h.push(Migrate::new(Some("ws://elsewhere/ws".into()), 1_010_000));
    let move_at = h.session.poll_timeout().unwrap();
    assert!(move_at <= 10 * SEC, "{move_at:?}");
    h.advance(move_at);
    assert_eq!(h.session.poll_action(), Some(Action::Close));
    h.session.handle_close(h.now, None);
    h.session.handle_timeout(h.now);
    assert_eq!(
        h.session.poll_action(),
        Some(Action::Open {
            url: Some("ws://elsewhere/ws".into())
        }),
        "at once"
    );
}

#[test]
fn commands_queued_together_leave_together_up_to_the_batch_limit() {
    let mut config = SessionConfig::default();
    config.max_batch = 4;
    let mut h = Harness::with(config);
    h.session.connect(h.now);
    let _ = h.session.poll_action();
    h.open_and_answer();
    for n in 0..10u64 {
        h.session.publish(h.now, "c", Value::from(n)).unwrap();
    }
    let frames: Vec<usize> = h.frames().iter().map(Vec::len).collect();
    assert_eq!(frames, [4, 4, 2]);
}

#[test]
fn close_fails_pending_work_and_refuses_more() {
    let mut h = Harness::connected();
    let rpc = h
        .session
        .request(h.now, RpcRequest::new("m", Value::Null).into())
        .unwrap();
    h.events();
    h.session.close(h.now);
    assert_eq!(h.session.poll_action(), Some(Action::Close));
    assert!(h.events().contains(&Event::Reply {
        request: rpc,
        result: Err(RequestError::Closed)
    }));
    h.session.handle_close(h.now, Some((1000, String::new())));
    assert_eq!(h.session.state(), State::Closed);
    assert_eq!(
        h.session.subscribe(h.now, "c", false),
        Err(RequestError::Closed)
    );
}

#[test]
fn unsubscribe_stops_delivery() {
    let mut h = Harness::connected();
    h.session.subscribe(h.now, "c", false).unwrap();
    h.sent();
    h.session.unsubscribe(h.now, "c");
    assert!(matches!(
        h.sent()[..],
        [ClientMessage {
            command: Command::Unsubscribe(_),
            ..
        }]
    ));
    h.push(publication("c", 1, "e"));
    assert_eq!(h.publications(), Vec::<u64>::new());
}

#[test]
fn backoff_bounds_are_configurable() {
    let mut config = SessionConfig::default();
    config.backoff = Backoff::new(100 * MS, 200 * MS);
    let mut h = Harness::with(config);
    h.session.connect(h.now);
    for _ in 0..10 {
        let _ = h.session.poll_action();
        h.session.handle_close(h.now, None);
        let delay = h.session.poll_timeout().unwrap() - h.now;
        assert!(delay >= 100 * MS && delay <= 200 * MS, "{delay:?}");
        h.advance(delay);
    }
}

#[test]
fn nothing_queued_for_a_lost_connection_precedes_the_next_connect() {
    let mut h = Harness::connected();
    h.push(Ping::new(0));
    // The pong is queued, but the socket drops before it is written.
    h.session.handle_close(h.now, None);
    h.advance(SEC);
    let _ = h.session.poll_action();
    h.session.handle_open(h.now);
    let frame = decode(&h.session.poll_transmit().unwrap());
    assert!(matches!(frame[0].command, Command::Connect(_)), "{frame:?}");
    assert!(!frame.iter().any(|m| matches!(m.command, Command::Pong(_))));
}

#[test]
fn tokens_are_refreshed_before_they_expire_and_reused_on_reconnect() {
    let mut config = SessionConfig::default();
    config.refresh_tokens = true;
    config.token = Some("t1".into());
    let mut h = Harness::with(config);
    h.session.connect(h.now);
    let _ = h.session.poll_action();
    h.session.handle_open(h.now);
    let sent = h.sent();
    let mut reply = ConnectReply::new("c1", 5000, 10_000, 1_000_000);
    reply.expires = Some(1_010_000); // 10 s from now
    h.session
        .handle_frame(h.now, vec![ServerMessage::reply(sent[0].id, reply)]);
    h.advance(9 * SEC - MS);
    assert_eq!(h.session.poll_action(), None);
    h.advance(MS);
    assert_eq!(
        h.session.poll_action(),
        Some(Action::FetchToken),
        "at 90% of the token's life"
    );
    h.session.refresh(h.now, "t2".into());
    let refresh = h.sent();
    let Command::Refresh(request) = &refresh[0].command else {
        panic!("{refresh:?}")
    };
    assert_eq!(request.token, "t2");
    // The next connection uses the new token.
    h.session.handle_close(h.now, None);
    h.advance(SEC);
    let _ = h.session.poll_action();
    h.session.handle_open(h.now);
    let Command::Connect(connect) = &h.sent()[0].command else {
        panic!()
    };
    assert_eq!(connect.token.as_deref(), Some("t2"));
}

/// The reply to the last subscribe in `sent` for `channel`, at `offset`/"e".
fn answer_subscribe(h: &mut Harness, sent: &[ClientMessage], channel: &str, offset: u64) {
    let id = sent
        .iter()
        .rev()
        .find(|m| matches!(&m.command, Command::Subscribe(s) if s.channel == channel))
        .expect("a subscribe")
        .id;
    let mut reply = SubscribeReply::default();
    reply.offset = Some(offset);
    reply.epoch = Some("e".into());
    h.session
        .handle_frame(h.now, vec![ServerMessage::reply(id, reply)]);
}

#[test]
fn a_second_subscribe_to_a_channel_is_refused_and_the_first_goes_on() {
    let mut h = Harness::connected();
    h.subscribed_at("c", 5, "e");
    h.events();
    assert_eq!(
        h.session.subscribe(h.now, "c", false),
        Err(RequestError::AlreadySubscribed)
    );
    assert!(h.sent().is_empty(), "nothing went to the server");
    h.push(publication("c", 6, "e"));
    assert_eq!(h.publications(), [6], "the first still delivers");
    // After a reconnect it is resubscribed once, from where it was.
    h.reconnect();
    let events = h.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Subscribed { .. }))
            .count(),
        1
    );
}

#[test]
fn unsubscribe_and_subscribe_again_before_the_first_reply_keeps_the_new_one() {
    let mut h = Harness::connected();
    h.events();
    h.session.subscribe(h.now, "c", false).unwrap();
    h.session.unsubscribe(h.now, "c");
    h.session.subscribe(h.now, "c", false).unwrap();
    let sent = h.sent();
    let kinds: Vec<&str> = sent.iter().map(|m| m.command.kind().name()).collect();
    assert_eq!(kinds, ["subscribe", "unsubscribe", "subscribe"]);
    // The first subscribe's reply arrives for a subscription that is gone: ignored.
    let mut stale = SubscribeReply::default();
    stale.offset = Some(1);
    stale.epoch = Some("e".into());
    h.session
        .handle_frame(h.now, vec![ServerMessage::reply(sent[0].id, stale)]);
    let events = h.events();
    assert!(events.is_empty(), "{events:?}");
    answer_subscribe(&mut h, &sent, "c", 3);
    assert_eq!(
        h.events(),
        [Event::Subscribed {
            channel: "c".into(),
            recovered: false
        }]
    );
    h.push(publication("c", 4, "e"));
    assert_eq!(h.publications(), [4]);
}

#[test]
fn unsubscribe_and_subscribe_again_while_reconnecting_starts_afresh() {
    let mut h = Harness::connected();
    h.subscribed_at("c", 5, "e");
    h.session.handle_close(h.now, None);
    h.session.unsubscribe(h.now, "c");
    h.session.subscribe(h.now, "c", true).unwrap();
    h.advance(SEC);
    let _ = h.session.poll_action();
    h.session.handle_open(h.now);
    let sent = h.sent();
    let subscribes: Vec<&SubscribeRequest> = sent
        .iter()
        .filter_map(|m| match &m.command {
            Command::Subscribe(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(subscribes.len(), 1, "one subscription, once");
    assert_eq!(
        subscribes[0].recover, None,
        "a new subscription recovers nothing"
    );
    assert!(subscribes[0].join_leave);
}

#[test]
fn a_subscribe_made_while_the_connect_is_in_flight_goes_once_connected() {
    let mut h = Harness::new();
    h.session.connect(h.now);
    let _ = h.session.poll_action();
    h.session.handle_open(h.now);
    let connect = h.sent();
    h.session.subscribe(h.now, "late", false).unwrap();
    let rpc = h
        .session
        .request(h.now, RpcRequest::new("m", Value::Null).into())
        .unwrap();
    assert!(h.sent().is_empty(), "nothing before the connect reply");
    h.session.handle_frame(
        h.now,
        vec![ServerMessage::reply(
            connect[0].id,
            ConnectReply::new("c1", 5000, 10_000, 1_000_000),
        )],
    );
    let sent = h.sent();
    let kinds: Vec<&str> = sent.iter().map(|m| m.command.kind().name()).collect();
    assert_eq!(kinds, ["subscribe", "rpc"]);
    h.session.handle_frame(
        h.now,
        vec![ServerMessage::reply(
            sent[1].id,
            RpcReply::new(Value::from(1u64)),
        )],
    );
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, Event::Reply { request, result: Ok(_) } if *request == rpc))
    );
}

/// Connects to a server that announces `limits`.
fn connected_with(limits: Limits) -> Harness {
    let mut h = Harness::new();
    h.session.connect(h.now);
    let _ = h.session.poll_action();
    h.session.handle_open(h.now);
    let connect = h.sent();
    let mut reply = ConnectReply::new("c1", 5000, 10_000, 1_000_000);
    reply.limits = Some(limits);
    h.session
        .handle_frame(h.now, vec![ServerMessage::reply(connect[0].id, reply)]);
    h.events();
    h
}

#[test]
fn a_command_beyond_the_announced_limits_is_refused_locally_and_the_session_goes_on() {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 100;
    limits.max_depth = 6;
    let mut h = connected_with(limits.clone());
    assert_eq!(h.session.limits(), &limits);
    let big = h.session.publish(h.now, "c", Value::from("x".repeat(100)));
    assert!(
        matches!(big, Err(RequestError::TooLarge { max: 100, bytes }) if bytes > 100),
        "{big:?}"
    );
    let deep = (0..5).fold(Value::Null, |inner, _| Value::Array(vec![inner]));
    assert!(matches!(
        h.session.publish(h.now, "c", deep),
        Err(RequestError::Invalid(_))
    ));
    assert!(matches!(
        h.session.subscribe(h.now, "chat:$x", false),
        Err(RequestError::Invalid(_))
    ));
    assert!(h.sent().is_empty(), "nothing reached the wire");
    assert_eq!(h.session.state(), State::Connected);
    assert!(h.session.publish(h.now, "c", Value::from("fits")).is_ok());
    assert_eq!(h.sent().len(), 1);
}

#[test]
fn a_traced_publish_carries_its_traceparent_and_a_malformed_one_never_leaves() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut h = Harness::connected();
    let refused =
        h.session
            .publish_traced(h.now, "c", Value::from(1u64), &TRACEPARENT.to_uppercase());
    let expected = ValidationError::Traceparent.to_string();
    assert!(
        matches!(&refused, Err(RequestError::Invalid(text)) if *text == expected),
        "the server's 107 text: {refused:?}"
    );
    assert!(h.sent().is_empty(), "nothing reached the wire");
    h.session
        .publish_traced(h.now, "c", Value::from(2u64), TRACEPARENT)
        .unwrap();
    h.session.publish(h.now, "c", Value::from(3u64)).unwrap();
    let traceparents: Vec<Option<String>> = h
        .sent()
        .into_iter()
        .map(|message| match message.command {
            Command::Publish(publish) => publish.traceparent,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(traceparents, [Some(TRACEPARENT.to_owned()), None]);
}

#[test]
fn the_batcher_never_builds_a_frame_over_the_announced_limits() {
    let mut limits = Limits::default();
    limits.max_frame_bytes = 300;
    limits.max_batch = 3;
    let mut h = connected_with(limits);
    for n in 0..20u64 {
        h.session
            .publish(h.now, "c", Value::from(format!("{n:0>40}")))
            .unwrap();
    }
    let mut total = 0;
    while let Some(frame) = h.session.poll_transmit() {
        assert!(frame.len() <= 300, "{} bytes", frame.len());
        let messages = decode(&frame).len();
        assert!(messages <= 3);
        total += messages;
    }
    assert_eq!(total, 20);
}

#[test]
fn commands_queued_before_the_first_connect_are_checked_once_the_limits_are_known() {
    let mut h = Harness::new();
    h.session.connect(h.now);
    let big = h
        .session
        .publish(h.now, "c", Value::from("x".repeat(500)))
        .expect("queued: the server's limits are not known yet");
    let _ = h.session.poll_action();
    h.session.handle_open(h.now);
    let connect = h.sent();
    let mut reply = ConnectReply::new("c1", 5000, 10_000, 1_000_000);
    let mut limits = Limits::default();
    limits.max_frame_bytes = 200;
    reply.limits = Some(limits);
    h.session
        .handle_frame(h.now, vec![ServerMessage::reply(connect[0].id, reply)]);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Reply { request, result: Err(RequestError::TooLarge { max: 200, .. }) } if *request == big
    )));
    assert!(h.sent().is_empty());
}

#[test]
fn a_paused_subscription_stops_the_flow_and_resumes_from_what_was_delivered() {
    let mut h = Harness::connected();
    h.subscribed_at("c", 5, "e");
    h.push(publication("c", 6, "e"));
    h.push(publication("c", 7, "e"));
    h.events();
    // The application only took offset 6 when its buffer filled up.
    h.session
        .pause(h.now, "c", Some(StreamPosition::new(6, "e")));
    assert!(matches!(
        h.sent()[..],
        [ClientMessage {
            command: Command::Unsubscribe(_),
            ..
        }]
    ));
    h.push(publication("c", 8, "e"));
    assert_eq!(h.publications(), Vec::<u64>::new(), "nothing while paused");
    // A reconnect meanwhile does not resubscribe it.
    h.reconnect();
    h.events();
    h.session.resume(h.now, "c");
    let sent = h.sent();
    let Command::Subscribe(subscribe) = &sent[0].command else {
        panic!("{sent:?}")
    };
    assert_eq!(subscribe.recover, Some(StreamPosition::new(6, "e")));
}

#[test]
fn pushes_of_an_old_subscription_before_the_new_reply_are_dropped_then_recovered() {
    let mut h = Harness::connected();
    h.subscribed_at("c", 5, "e");
    h.session
        .pause(h.now, "c", Some(StreamPosition::new(5, "e")));
    h.session.resume(h.now, "c");
    let sent = h.sent();
    h.events();
    // Still in flight from before the unsubscribe: must not jump the queue.
    h.push(publication("c", 9, "e"));
    assert_eq!(h.publications(), Vec::<u64>::new());
    // The resubscribe's reply recovers 6..=9 in order.
    let id = sent
        .iter()
        .find(|m| matches!(&m.command, Command::Subscribe(s) if s.recover == Some(StreamPosition::new(5, "e"))))
        .expect("resubscribed from 5")
        .id;
    let mut reply = SubscribeReply::default();
    reply.offset = Some(9);
    reply.epoch = Some("e".into());
    reply.recovered = true;
    reply.publications = (6..=9).map(|o| publication("c", o, "e")).collect();
    h.session
        .handle_frame(h.now, vec![ServerMessage::reply(id, reply)]);
    assert_eq!(h.publications(), [6, 7, 8, 9]);
}
