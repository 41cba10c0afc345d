//! The contract of [`HistoryStore`], as tests every backend runs against a
//! fresh store of its own (`MemoryHistory`'s and `SqliteHistory`'s test
//! modules call [`run`]).

use std::time::Duration;

use sacred_proto::{Publication, StreamPosition, Value};

use super::{HistoryError, HistoryStore, Page, Query, Retention};

const KEEP: Retention = Retention {
    size: 3,
    ttl: Duration::from_secs(60),
    searchable: false,
};

/// Every check below, each on its own channels of `store`.
pub(super) async fn run(store: &dyn HistoryStore) {
    offsets_increase_from_one_and_size_bounds_the_window(store).await;
    since_is_all_or_nothing(store).await;
    a_channel_without_publications_has_a_stable_position(store).await;
    concurrent_appends_to_many_channels_keep_each_channel_s_order(store).await;
    deleting_and_forgetting_keep_the_other_offsets(store).await;
}

/// A publication of `n` by `user` (the publisher's peer names the user).
fn by(channel: &str, user: &str, n: i64) -> Publication {
    let mut peer = sacred_proto::Peer::default();
    peer.id = format!("{user}-client");
    peer.user = Some(user.to_owned());
    let mut publication = Publication::new(channel, Value::from(n), 0);
    publication.from = Some(peer);
    publication
}

/// A channel's history deleted keeps its position; a user forgotten loses
/// every publication in every channel, the others keep their offsets; an
/// export lists exactly that user's.
async fn deleting_and_forgetting_keep_the_other_offsets(store: &dyn HistoryStore) {
    let keep = Retention::new(100, Duration::from_secs(60));
    for (channel, user, n) in [
        ("gdpr:a", "ada", 1),
        ("gdpr:a", "bob", 2),
        ("gdpr:a", "ada", 3),
        ("gdpr:b", "ada", 4),
        ("gdpr:b", "bob", 5),
    ] {
        store
            .append(channel, by(channel, user, n), keep)
            .await
            .unwrap();
    }
    let exported = store.export_user("ada").await.unwrap();
    let found: Vec<_> = exported
        .iter()
        .map(|p| (p.channel.as_str(), p.offset.unwrap(), p.data.clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("gdpr:a", 1, Value::from(1)),
            ("gdpr:a", 3, Value::from(3)),
            ("gdpr:b", 1, Value::from(4)),
        ]
    );
    assert!(exported.iter().all(|p| p.epoch.is_some()));
    assert_eq!(store.forget_user("ada").await.unwrap(), 3);
    assert!(store.export_user("ada").await.unwrap().is_empty());
    let a = read(store, "gdpr:a", Query::new()).await.unwrap();
    assert_eq!(offsets(&a), [2], "bob's keeps its offset");
    assert_eq!(a.position.offset, 3, "the position stays");
    assert_eq!(
        offsets(&read(store, "gdpr:b", Query::new()).await.unwrap()),
        [2]
    );
    assert_eq!(store.remove("gdpr:b").await.unwrap(), 1);
    let b = read(store, "gdpr:b", Query::new()).await.unwrap();
    assert!(b.publications.is_empty());
    assert_eq!(b.position.offset, 2, "the position stays");
    let next = store
        .append("gdpr:b", by("gdpr:b", "bob", 6), keep)
        .await
        .unwrap();
    assert_eq!(
        (next.offset, &next.epoch),
        (Some(3), &Some(b.position.epoch))
    );
    assert_eq!(store.remove("gdpr:never").await.unwrap(), 0);
}

pub(super) async fn append(store: &dyn HistoryStore, channel: &str, n: i64) -> StreamPosition {
    let stored = store
        .append(channel, Publication::new(channel, Value::from(n), 0), KEEP)
        .await
        .expect("append");
    StreamPosition::new(stored.offset.unwrap(), stored.epoch.clone().unwrap())
}

pub(super) async fn read(
    store: &dyn HistoryStore,
    channel: &str,
    query: Query,
) -> Result<Page, HistoryError> {
    store.read(channel, query).await
}

pub(super) fn offsets(page: &Page) -> Vec<u64> {
    page.publications
        .iter()
        .map(|p| p.offset.unwrap())
        .collect()
}

async fn offsets_increase_from_one_and_size_bounds_the_window(store: &dyn HistoryStore) {
    let first = append(store, "window", 1).await;
    assert_eq!(first.offset, 1);
    for n in 2..=5 {
        append(store, "window", n).await;
    }
    let page = read(store, "window", Query::new()).await.unwrap();
    assert_eq!(page.position, StreamPosition::new(5, first.epoch.clone()));
    assert_eq!(offsets(&page), [3, 4, 5]);
    assert!(
        page.publications
            .iter()
            .all(|p| p.epoch.as_deref() == Some(&first.epoch)),
        "every publication carries the stream's epoch"
    );
    assert_eq!(page.publications[0].data, Value::from(3));
    let newest = read(store, "window", Query::new().limit(2).reverse(true))
        .await
        .unwrap();
    assert_eq!(offsets(&newest), [5, 4]);
}

async fn since_is_all_or_nothing(store: &dyn HistoryStore) {
    let mut epoch = String::new();
    for n in 1..=5 {
        epoch = append(store, "since", n).await.epoch;
    }
    let at = |offset| Query::new().since(StreamPosition::new(offset, epoch.clone()));
    assert_eq!(
        offsets(&read(store, "since", at(2)).await.unwrap()),
        [3, 4, 5]
    );
    assert!(offsets(&read(store, "since", at(5)).await.unwrap()).is_empty());
    // Offset 2 left the window: 1 cannot be recovered from.
    assert!(matches!(
        read(store, "since", at(1)).await,
        Err(HistoryError::Unrecoverable)
    ));
    // Nor a position beyond the newest offset, nor another epoch.
    assert!(matches!(
        read(store, "since", at(6)).await,
        Err(HistoryError::Unrecoverable)
    ));
    let other = Query::new().since(StreamPosition::new(4, "other"));
    assert!(matches!(
        read(store, "since", other).await,
        Err(HistoryError::Unrecoverable)
    ));
}

async fn a_channel_without_publications_has_a_stable_position(store: &dyn HistoryStore) {
    let before = read(store, "quiet", Query::new()).await.unwrap().position;
    assert_eq!(before.offset, 0);
    // Whoever read offset 0 continues seamlessly with the first publication.
    assert!(
        read(store, "quiet", Query::new().since(before.clone()))
            .await
            .is_ok()
    );
    let first = append(store, "quiet", 1).await;
    assert_eq!(first, StreamPosition::new(1, before.epoch));
}

async fn concurrent_appends_to_many_channels_keep_each_channel_s_order(store: &dyn HistoryStore) {
    // Different channels at once (the broker serialises one channel's).
    let channels: Vec<String> = (0..8).map(|n| format!("many{n}")).collect();
    let writers = channels.iter().map(|channel| async move {
        for n in 1..=3 {
            let position = append(store, channel, n).await;
            assert_eq!(position.offset, n as u64, "{channel}");
        }
    });
    futures_util::future::join_all(writers).await;
    for channel in &channels {
        let page = read(store, channel, Query::new()).await.unwrap();
        assert_eq!(offsets(&page), [1, 2, 3], "{channel}");
        let data: Vec<Value> = page.publications.iter().map(|p| p.data.clone()).collect();
        assert_eq!(data, [Value::from(1), Value::from(2), Value::from(3)]);
    }
}
