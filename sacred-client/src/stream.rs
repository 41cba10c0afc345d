//! What the client hands out to read from: a [`Subscription`] per channel,
//! [`Events`] about the connection, [`Messages`] sent to this client, and the
//! bounded outlet the connection task feeds each of them through.
//!
//! The delivery policy is in the crate documentation ("Streams").

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use sacred_proto::{DirectMessage, Peer, Publication};
use tokio::sync::mpsc;

use crate::op::Op;
use crate::platform::{BoxedFuture, SendOutsideWasm};

/// Something that happened to the connection as a whole.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection attempt started (the first, or a reconnect).
    Connecting,
    /// Connected (again) with this client id.
    Connected {
        /// The id the server assigned to this connection.
        client: String,
    },
    /// The connection ended, or an attempt failed; `reconnect` says whether
    /// the client tries again.
    Disconnected {
        /// The close code (1006 when the socket dropped or never opened).
        code: u16,
        /// Why, in the server's or the socket's words.
        reason: String,
        /// Whether a reconnect is scheduled.
        reconnect: bool,
    },
    /// Why an attempt failed, before its `Disconnected`: the socket could not
    /// be opened (refused, DNS, TLS, an HTTP error such as 404), the token
    /// provider failed, or the server sent something unreadable.
    Error(crate::Error),
    /// This many events did not fit this listener's buffer and were dropped.
    Lagged {
        /// How many.
        skipped: u64,
    },
}

/// Something that happened in a subscribed channel.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// A publication, in offset order, duplicates removed.
    Publication(Publication),
    /// A client joined (if the subscription opted in).
    Join(Peer),
    /// A client left (if the subscription opted in).
    Leave(Peer),
    /// The subscription is active again, after a reconnect or after it caught
    /// up; if `recovered` is false some publications were missed: reload what
    /// depends on them.
    Resubscribed {
        /// Whether every missed publication was replayed.
        recovered: bool,
    },
    /// The server ended the subscription with this error code; no more events follow.
    Unsubscribed {
        /// Why, as an error code.
        code: u32,
        /// Why, in the server's words.
        reason: String,
    },
    /// This many events did not fit the buffer and were dropped (a channel
    /// without history, or join and leave events; see the module docs).
    Lagged {
        /// How many.
        skipped: u64,
    },
}

/// A direct message, or how many did not fit.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum MessageEvent {
    /// Data sent to this client (`send` from another client, or the host).
    Message(DirectMessage),
    /// This many messages did not fit the buffer and were dropped.
    Lagged {
        /// How many.
        skipped: u64,
    },
}

/// Defines a stream type over a bounded receiver.
macro_rules! receiver_stream {
    ($(#[$meta:meta])* $name:ident: $item:ty) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name {
            events: mpsc::Receiver<$item>,
        }

        impl $name {
            pub(crate) fn new(events: mpsc::Receiver<$item>) -> $name {
                $name { events }
            }

            /// The next item; `None` once the client is gone.
            pub async fn recv(&mut self) -> Option<$item> {
                self.events.recv().await
            }

            /// The next item if one is waiting, without waiting.
            pub fn try_recv(&mut self) -> Option<$item> {
                self.events.try_recv().ok()
            }
        }

        impl Stream for $name {
            type Item = $item;

            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<$item>> {
                self.events.poll_recv(cx)
            }
        }
    };
}

receiver_stream! {
    /// Connection events from the moment [`Client::events`](crate::Client::events)
    /// was called: a [`Stream`] of [`ClientEvent`]s. Each listener has its own buffer.
    Events: ClientEvent
}

receiver_stream! {
    /// Direct messages: a [`Stream`] of [`MessageEvent`]s. Every reader gets
    /// every message; the first one also gets those that arrived before it.
    Messages: MessageEvent
}

/// One subscribed channel: a [`Stream`] of its events. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    events: mpsc::Receiver<SubscriptionEvent>,
    ops: mpsc::UnboundedSender<Op>,
}

impl Subscription {
    pub(crate) fn new(
        channel: String,
        events: mpsc::Receiver<SubscriptionEvent>,
        ops: mpsc::UnboundedSender<Op>,
    ) -> Subscription {
        Subscription {
            channel,
            events,
            ops,
        }
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next event; `None` once the subscription ended.
    pub async fn recv(&mut self) -> Option<SubscriptionEvent> {
        self.events.recv().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<SubscriptionEvent> {
        self.events.try_recv().ok()
    }

    /// The next publication, skipping other events; `None` once it ended.
    pub async fn next_publication(&mut self) -> Option<Publication> {
        loop {
            match self.events.recv().await? {
                SubscriptionEvent::Publication(publication) => return Some(publication),
                SubscriptionEvent::Unsubscribed { .. } => return None,
                _ => continue,
            }
        }
    }
}

impl Stream for Subscription {
    type Item = SubscriptionEvent;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<SubscriptionEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self
            .ops
            .send(Op::Unsubscribe(std::mem::take(&mut self.channel)));
    }
}

/// What offering an item to an outlet did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// It is in the reader's buffer.
    Taken,
    /// The buffer is full: it was not taken (and is counted as skipped
    /// unless the caller recovers it otherwise).
    Full,
    /// The reader is gone.
    Gone,
}

/// The connection task's end of a stream: a bounded sender that counts what
/// did not fit and reports the count ahead of the next item it can deliver.
#[derive(Debug)]
pub(crate) struct Outlet<T> {
    tx: mpsc::Sender<T>,
    skipped: u64,
    /// Whether a wait for room is under way (see [`Outlet::room`]).
    waiting: bool,
}

impl<T: SendOutsideWasm + 'static> Outlet<T> {
    pub(crate) fn new(tx: mpsc::Sender<T>) -> Outlet<T> {
        Outlet {
            tx,
            skipped: 0,
            waiting: false,
        }
    }

    /// Offers `item`, after the report of anything skipped (`lag`).
    pub(crate) fn offer(&mut self, item: T, lag: impl Fn(u64) -> T) -> Offer {
        match self.report(lag) {
            Offer::Taken => {}
            other => return other,
        }
        match self.tx.try_send(item) {
            Ok(()) => Offer::Taken,
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }

    /// Counts one item that did not fit.
    pub(crate) fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Delivers the count of skipped items, if any.
    pub(crate) fn report(&mut self, lag: impl Fn(u64) -> T) -> Offer {
        if self.skipped == 0 {
            return if self.tx.is_closed() {
                Offer::Gone
            } else {
                Offer::Taken
            };
        }
        match self.tx.try_send(lag(self.skipped)) {
            Ok(()) => {
                self.skipped = 0;
                Offer::Taken
            }
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }

    /// A future that resolves once half the buffer is free again (or the
    /// reader is gone), the first time it is asked for since the last one
    /// resolved; `None` while one is under way.
    pub(crate) fn room(&mut self) -> Option<BoxedFuture<()>> {
        if std::mem::replace(&mut self.waiting, true) {
            return None;
        }
        let tx = self.tx.clone();
        let half = (tx.max_capacity() / 2).max(1);
        Some(Box::pin(async move {
            // The permits are given back at once: this only waits for room.
            let _ = tx.reserve_many(half).await;
        }))
    }

    /// The wait for room is over.
    pub(crate) fn roomy(&mut self) {
        self.waiting = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn what_does_not_fit_is_counted_and_reported_before_the_next_item() {
        let (tx, mut rx) = mpsc::channel::<i64>(2);
        let mut outlet = Outlet::new(tx);
        let lag = |n: u64| -(n as i64);
        assert_eq!(outlet.offer(1, lag), Offer::Taken);
        assert_eq!(outlet.offer(2, lag), Offer::Taken);
        assert_eq!(outlet.offer(3, lag), Offer::Full);
        outlet.skip();
        assert_eq!(outlet.offer(4, lag), Offer::Full);
        outlet.skip();
        let room = outlet.room().expect("a wait for room");
        assert!(outlet.room().is_none(), "one wait at a time");
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(room.now_or_never().is_some(), "half the buffer is free");
        outlet.roomy();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(outlet.offer(5, lag), Offer::Taken);
        assert_eq!(
            rx.try_recv(),
            Ok(-2),
            "two skipped, said before the next item"
        );
        assert_eq!(rx.try_recv(), Ok(5));
        drop(rx);
        assert_eq!(outlet.offer(6, lag), Offer::Gone);
    }
}
