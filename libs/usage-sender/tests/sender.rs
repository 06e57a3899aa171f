//! The sender against an in-test usage service: outages, restarts, a full
//! queue, a full spool, rejected events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use gateway_usage_sender::UsageSender;
use support::{FakeServer, config, event, eventually, free_port, start_after_crash};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_across_a_server_restart() {
    // A small ack delay keeps batches in flight when the server goes away.
    let mut server = FakeServer::start(Duration::from_millis(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let (sender, task) =
        UsageSender::start(config(server.port, dir.path()), shutdown.clone()).unwrap();
    let events: Vec<_> = (0..10_000).map(event).collect();
    let expected: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();

    // The first half arrives paced, like requests do.
    let first_half = events[..5_000].to_vec();
    let producer = {
        let sender = sender.clone();
        tokio::spawn(async move {
            for chunk in first_half.chunks(100) {
                for event in chunk {
                    sender.send(event.clone());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    eventually("3,000 acked", WAIT, || sender.stats().acked >= 3_000).await;
    assert!(sender.stats().connected);
    server.stop().await;
    producer.await.unwrap();

    // The second half is sent while the service is down: all of it spools.
    let spooled_before = sender.stats().spooled;
    for event in &events[5_000..] {
        sender.send(event.clone());
    }
    eventually("the outage's events spooled", WAIT, || {
        sender.stats().spooled >= spooled_before + 5_000
    })
    .await;
    assert!(!sender.stats().connected);
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;

    eventually("every event stored", Duration::from_secs(60), || {
        server.stored() >= 10_000
    })
    .await;
    assert_eq!(server.ids(), expected, "exactly the sent ids, none missing");
    assert_eq!(server.violations(), Vec::<String>::new());
    eventually("every event acked", WAIT, || sender.stats().acked >= 10_000).await;
    let stats = sender.stats();
    assert_eq!(stats.dropped, 0);
    assert!(stats.acked >= 10_000, "{stats:?}");

    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sender_replays_what_an_old_one_spooled() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<_> = (0..2_000).map(event).collect();
    let expected: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();

    // The service is down: everything ends up in the spool on shutdown.
    let shutdown = CancellationToken::new();
    let (sender, task) = UsageSender::start(config(port, dir.path()), shutdown.clone()).unwrap();
    for event in &events {
        sender.send(event.clone());
    }
    shutdown.cancel();
    task.await.unwrap();
    let stats = sender.stats();
    assert_eq!((stats.spooled, stats.dropped, stats.acked), (2_000, 0, 0));
    assert!(stats.spooled_bytes > 0);
    drop(sender);

    // A new sender on the same spool, with the service up, delivers them.
    let server = FakeServer::start_on(port, Duration::ZERO).await;
    let shutdown = CancellationToken::new();
    let (sender, task) = UsageSender::start(config(port, dir.path()), shutdown.clone()).unwrap();
    eventually("all 2,000 stored", WAIT, || server.stored() >= 2_000).await;
    assert_eq!(server.ids(), expected);
    eventually("all acked", WAIT, || sender.stats().acked >= 2_000).await;
    shutdown.cancel();
    task.await.unwrap();
    drop(sender);

    // Acked records are not replayed by the next sender.
    let shutdown = CancellationToken::new();
    let (sender, task) = UsageSender::start(config(port, dir.path()), shutdown.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((sender.stats().sent, server.duplicates()), (0, 0));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_never_blocks_with_no_server() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = config(port, dir.path());
    let shutdown = CancellationToken::new();
    let (sender, task) = UsageSender::start(config, shutdown.clone()).unwrap();
    let events: Vec<_> = (0..1_000).map(event).collect();
    for event in &events {
        sender.send(event.clone());
    }
    eventually("all 1,000 spooled", WAIT, || {
        sender.stats().spooled == 1_000
    })
    .await;
    assert_eq!(sender.stats().dropped, 0);

    // And they are delivered once the service comes up.
    let server = FakeServer::start_on(port, Duration::ZERO).await;
    eventually("all 1,000 stored", WAIT, || server.stored() >= 1_000).await;
    assert_eq!(
        server.ids(),
        events
            .iter()
            .map(|e| e.event_id.clone())
            .collect::<HashSet<_>>()
    );
    shutdown.cancel();
    task.await.unwrap();
}

/// A process killed with nothing acked: no shutdown, no fsync, the task
/// gone mid-stream. Every event `send` took is in the spool, and the next
/// sender delivers each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_event_and_acked_ones_are_not_replayed() {
    // Acks so slow that none arrives before the crash.
    let server = FakeServer::start(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let (sender, task) =
        UsageSender::start(config(server.port, dir.path()), CancellationToken::new()).unwrap();
    let events: Vec<_> = (0..3_000).map(event).collect();
    for event in &events {
        sender.send(event.clone());
    }
    assert_eq!(
        sender.stats().spooled,
        3_000,
        "in the spool as send returns"
    );
    task.abort();
    let _ = task.await;
    drop(sender);

    let server = FakeServer::start(Duration::ZERO).await;
    let shutdown = CancellationToken::new();
    let (sender, task) = start_after_crash(config(server.port, dir.path()), shutdown.clone()).await;
    eventually("all 3,000 stored", WAIT, || server.stored() >= 3_000).await;
    let expected: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(server.ids(), expected);
    eventually("acked", WAIT, || sender.stats().acked >= 3_000).await;

    // Acked: the cursor moved, so a crash now replays none of them.
    task.abort();
    let _ = task.await;
    drop(sender);
    let again = FakeServer::start(Duration::ZERO).await;
    let shutdown = CancellationToken::new();
    let (sender, task) = start_after_crash(config(again.port, dir.path()), shutdown.clone()).await;
    sender.send(event(3_000));
    eventually("the new event stored", WAIT, || again.stored() >= 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        again.stored(),
        1,
        "nothing acked before the crash came back"
    );
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_events_are_dropped_and_the_stream_goes_on() {
    let server = FakeServer::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let (sender, task) =
        UsageSender::start(config(server.port, dir.path()), shutdown.clone()).unwrap();
    for index in 0..10 {
        let mut event = event(index);
        if index % 3 == 0 {
            event.tenant_id.clear();
        }
        sender.send(event);
    }
    eventually("10 acked", WAIT, || sender.stats().acked == 10).await;
    sender.send(event(10));
    eventually("the later event stored", WAIT, || server.stored() == 7).await;
    let stats = sender.stats();
    assert_eq!((stats.rejected, stats.dropped, stats.spooled), (4, 0, 11));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_and_counts() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(port, dir.path());
    config.spool_max_bytes = 4_096;
    let shutdown = CancellationToken::new();
    let (sender, task) = UsageSender::start(config, shutdown.clone()).unwrap();
    for index in 0..200 {
        sender.send(event(index));
    }
    shutdown.cancel();
    task.await.unwrap();
    let stats = sender.stats();
    assert_eq!(stats.spooled + stats.dropped, 200, "{stats:?}");
    assert!(stats.dropped > 0 && stats.spooled > 0, "{stats:?}");
    assert!(stats.spooled_bytes <= 4_096);
}

#[tokio::test]
async fn start_rejects_a_bad_config_and_a_busy_spool() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut bad = config(free_port(), dir.path());
    bad.batch_max_events = 0;
    assert!(UsageSender::start(bad, shutdown.clone()).is_err());
    let mut bad = config(free_port(), dir.path());
    bad.credential.1 = "line\nbreak".to_owned();
    assert!(UsageSender::start(bad, shutdown.clone()).is_err());

    let (_sender, task) =
        UsageSender::start(config(free_port(), dir.path()), shutdown.clone()).unwrap();
    let busy = UsageSender::start(config(free_port(), dir.path()), shutdown.clone());
    assert!(busy.is_err(), "one sender per spool dir");
    shutdown.cancel();
    task.await.unwrap();
}
