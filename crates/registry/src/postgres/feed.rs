//! The PostgreSQL change feed: one connection of its own, `LISTEN`ing on
//! `longhaul_entries`, turned into [`StoreEvent`]s.
//!
//! A notification carries the changed entry's id (`*` after a `TRUNCATE`). PostgreSQL
//! delivers notifications only to connections listening when the change commits, so
//! after every (re)connect the feed says [`StoreEvent::Resync`] and the node reads the
//! whole table again. A database that goes away without closing the socket (a host
//! that vanished, a partition) is noticed by a heartbeat query every
//! [`HEARTBEAT_INTERVAL`]; TCP keep-alives back it up.

use std::time::Duration;
use tracing::Instrument;

use tokio::sync::mpsc;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket};

use super::tls::Transport;

use crate::store::StoreEvent;

/// The channel the migrations' trigger notifies.
pub const CHANNEL: &str = "longhaul_entries";

/// How often the listening connection is asked `SELECT 1`. Changes arrive without it;
/// it bounds how long a silently dead connection goes unnoticed (about 5 s plus
/// [`HEARTBEAT_TIMEOUT`]), and so how long before the node says the database is
/// unreachable. An idle query every 5 s costs the database nothing.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// How long the heartbeat may wait for its answer: many round trips between data
/// centres, far beyond a healthy server's answer in under a millisecond.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// First wait before reconnecting, doubled on every failure up to [`RECONNECT_MAX`].
/// A restarting PostgreSQL is back in about a second: 250 ms catches it early without
/// hammering one that is down for longer.
pub const RECONNECT_INITIAL: Duration = Duration::from_millis(250);
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Notifications the connection's task may hold for the listening loop. The task never
/// waits for room (while it waited it would not read the socket, and the heartbeat's
/// answer queued behind the notifications would never come): past this many it drops
/// them and asks for a resync instead, which reads everything anyway.
const NOTES_QUEUE: usize = 4096;

/// Longest a (re)connection may take, authentication and `LISTEN` included (the
/// driver's own timeout covers the TCP connect only): a server that accepts and then
/// hangs must not stall the feed for good.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// Runs the feed until `events`' receiver is dropped.
pub async fn run(
    config: tokio_postgres::Config,
    transport: Transport,
    location: String,
    events: mpsc::Sender<StoreEvent>,
) {
    let mut delay = RECONNECT_INITIAL;
    // A loss was reported and no connection has been up since: say it once per outage.
    let mut down = false;
    loop {
        let listened = match &transport {
            Transport::Plain => listen(&config, NoTls, &events).await,
            Transport::Tls(connector) => listen(&config, connector.clone(), &events).await,
        };
        let (reason, was_up) = match listened {
            Listened::ReceiverGone => return,
            Listened::Lost { reason, was_up } => (reason, was_up),
        };
        if was_up {
            delay = RECONNECT_INITIAL;
            down = false;
        }
        if !down {
            tracing::warn!(registry = %location, %reason,
                "registry change feed lost the database; serving entries from memory");
            if events.send(StoreEvent::Lost { reason }).await.is_err() {
                return;
            }
            down = true;
        } else {
            tracing::debug!(registry = %location, %reason, ?delay, "registry still unreachable");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = events.closed() => return,
        }
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

enum Listened {
    ReceiverGone,
    Lost { reason: String, was_up: bool },
}

async fn listen<T>(
    config: &tokio_postgres::Config,
    tls: T,
    events: &mpsc::Sender<StoreEvent>,
) -> Listened
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let lost = |reason: String, was_up| Listened::Lost { reason, was_up };
    let overflowed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (notes_tx, mut notes) = mpsc::channel::<Result<String, String>>(NOTES_QUEUE);
    let connected = tokio::time::timeout(CONNECT_LIMIT, async {
        let (client, mut connection) = config
            .connect(tls)
            .await
            .map_err(|e| super::with_causes(&e))?;
        // The connection must be polled for the client's queries to progress, and its
        // messages include the notifications: a task forwards them, never waiting. It
        // ends (closing `notes`) when the connection does.
        let overflow = overflowed.clone();
        let driver = tokio::spawn(
            async move {
                loop {
                    let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                    let forward = match message {
                        Some(Ok(AsyncMessage::Notification(n))) => Ok(n.payload().to_owned()),
                        Some(Ok(_)) => continue, // notices, parameter changes
                        Some(Err(e)) => Err(e.to_string()),
                        None => Err("the server closed the connection".to_owned()),
                    };
                    let end = forward.is_err();
                    match notes_tx.try_send(forward) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            overflow.store(true, std::sync::atomic::Ordering::Release);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                    if end {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        let abort = AbortOnDrop(driver);
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| format!("LISTEN failed: {e}"))?;
        Ok::<_, String>((client, abort))
    })
    .await;
    let (client, _abort) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(reason)) => return lost(reason, false),
        Err(_) => return lost(format!("no connection within {CONNECT_LIMIT:?}"), false),
    };
    if events.send(StoreEvent::Resync).await.is_err() {
        return Listened::ReceiverGone;
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            note = notes.recv() => {
                // Notifications were dropped for want of room: read everything again.
                let event = match note {
                    Some(Ok(_)) if overflowed.swap(false, std::sync::atomic::Ordering::AcqRel) => {
                        StoreEvent::Resync
                    }
                    Some(Ok(id)) if id == "*" => StoreEvent::Resync,
                    Some(Ok(entry_id)) => StoreEvent::Changed { entry_id },
                    Some(Err(reason)) => return lost(reason, true),
                    None => return lost("the connection ended".into(), true),
                };
                if events.send(event).await.is_err() {
                    return Listened::ReceiverGone;
                }
            }
            _ = heartbeat.tick() => {
                match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {
                        if overflowed.swap(false, std::sync::atomic::Ordering::AcqRel)
                            && events.send(StoreEvent::Resync).await.is_err()
                        {
                            return Listened::ReceiverGone;
                        }
                    }
                    Ok(Err(e)) => return lost(e.to_string(), true),
                    Err(_) => return lost(format!("no answer to a heartbeat within {HEARTBEAT_TIMEOUT:?}"), true),
                }
            }
            _ = events.closed() => return Listened::ReceiverGone,
        }
    }
}

/// Stops the connection's task when the listener gives the connection up.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
