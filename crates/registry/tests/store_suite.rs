//! The entry store's suite, run against both back ends: a real SQLite file in a
//! temporary directory, and a real PostgreSQL server (the one `.ci/run` starts, or a
//! private one). Each test is written once, over a [`Fixture`] that opens as many
//! independent stores ("origins") on the same database as it needs; `suite!` runs it
//! once per back end.
//!
//! What only a server can show (a restart, an outage) is at the end, PostgreSQL only:
//! an SQLite file does not go away while a process holds it open.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use longhaul_registry::sqlite::SqliteStore;
use longhaul_registry::{
    EntryStore, LiveStream, PresenceOrigin, Registry, RegistryChange, RegistryError, StoreState,
    TokenCheck,
};

mod fixture;
use fixture::Fixture;

/// Runs each named test against SQLite and against PostgreSQL.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::postgres().await).await
                }
            )*
        }
    };
}

suite!(
    create_get_list_rename_delete,
    names_are_validated,
    ids_and_tokens_have_the_right_form_and_are_distinct,
    token_checks,
    regenerating_refuses_the_old_token,
    a_regeneration_can_insist_on_the_generation_it_saw,
    data_persists_across_reopening,
    a_change_through_one_origin_is_pushed_to_another,
    concurrent_writers_do_not_fail_or_lose_writes,
    concurrent_regenerations_hand_out_one_token,
    listeners_hear_changes_made_elsewhere,
    a_hand_written_token_change_revokes_like_a_regeneration,
    a_token_from_a_moment_ago_is_looked_up_before_refusal,
    entries_round_trip_as_json_and_debug_hides_the_token,
    a_bulk_change_is_taken_without_an_outage,
    a_panicking_listener_does_not_stop_the_copy,
    presence_names_every_origin_where_a_stream_is_live,
    presence_is_replaced_by_each_write_and_cleared_by_an_empty_one,
    presence_expires_and_long_expired_rows_are_forgotten,
    presence_writes_do_not_make_origins_reread_the_entries,
);

/// Waits (bounded) until `ready` holds; returns how long it took.
async fn eventually(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if ready() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually`] for a condition that needs the store.
async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !ready().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A change made through one origin must reach another within this: the issue's
/// "seen by every origin within a second".
const PUSH_LIMIT: Duration = Duration::from_secs(1);

async fn create_get_list_rename_delete(f: Fixture) {
    let store = f.store().await;
    assert!(store.list().await.unwrap().is_empty());

    let first = store.create(Some("Morning show")).await.unwrap();
    let second = store.create(None).await.unwrap();
    assert_eq!(first.name, "Morning show");
    assert_eq!(second.name, second.id, "the name defaults to the id");
    assert_eq!(first.token_generation, 1);
    assert!(first.created_at > 1_700_000_000);

    assert_eq!(store.get(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get("1_nosuchid").await.unwrap(), None);
    let listed = store.list().await.unwrap();
    assert_eq!(
        listed.iter().map(|e| &e.id).collect::<HashSet<_>>(),
        [&first.id, &second.id].into_iter().collect()
    );

    let renamed = store.rename(&first.id, "Evening show").await.unwrap();
    assert_eq!(renamed.name, "Evening show");
    assert_eq!(store.get(&first.id).await.unwrap(), Some(renamed));
    assert!(matches!(
        store.rename("1_nosuchid", "x").await,
        Err(RegistryError::NotFound(id)) if id == "1_nosuchid"
    ));

    assert!(store.delete(&first.id).await.unwrap());
    assert!(!store.delete(&first.id).await.unwrap());
    assert_eq!(store.get(&first.id).await.unwrap(), None);
    assert_eq!(store.list().await.unwrap(), vec![second]);
}

async fn names_are_validated(f: Fixture) {
    let store = f.store().await;
    assert!(matches!(
        store.create(Some("two\nlines")).await,
        Err(RegistryError::InvalidName(_))
    ));
    let long = "é".repeat(257);
    assert!(matches!(
        store.create(Some(&long)).await,
        Err(RegistryError::InvalidName(_))
    ));
    assert!(store.create(Some(&"é".repeat(256))).await.is_ok());
    let entry = store.create(None).await.unwrap();
    assert!(matches!(
        store.rename(&entry.id, "tab\there").await,
        Err(RegistryError::InvalidName(_))
    ));
}

async fn ids_and_tokens_have_the_right_form_and_are_distinct(f: Fixture) {
    let store = f.store().await;
    let mut ids = HashSet::new();
    let mut tokens = HashSet::new();
    for _ in 0..300 {
        let entry = store.create(None).await.unwrap();
        let suffix = entry.id.strip_prefix("1_").expect("id starts with 1_");
        assert_eq!(suffix.len(), 8, "{}", entry.id);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(entry.token.len(), 16);
        assert!(entry
            .token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        assert!(ids.insert(entry.id));
        assert!(tokens.insert(entry.token));
    }
    assert_eq!(store.list().await.unwrap().len(), 300);
}

async fn token_checks(f: Fixture) {
    let registry = f.registry().await;
    let entry = registry.create_entry(None).await.unwrap();
    for (token, expected) in [
        (
            Some(entry.token.clone()),
            TokenCheck::Valid { generation: 1 },
        ),
        (None, TokenCheck::Missing),
        (Some(String::new()), TokenCheck::Missing),
        (Some("aaaaaaaaaaaaaaaa".into()), TokenCheck::Wrong),
        (Some(entry.token[..15].to_string()), TokenCheck::Wrong),
        (Some(format!("{}a", entry.token)), TokenCheck::Wrong),
        (Some(entry.token.to_uppercase()), TokenCheck::Wrong),
    ] {
        assert_eq!(
            registry.check_token(&entry.id, token.as_deref()).await,
            expected,
            "{token:?}"
        );
    }
    assert_eq!(
        registry.check_token("1_nosuchid", Some(&entry.token)).await,
        TokenCheck::UnknownEntry
    );
}

async fn regenerating_refuses_the_old_token(f: Fixture) {
    let registry = f.registry().await;
    let entry = registry.create_entry(None).await.unwrap();
    let renewed = registry.regenerate_token(&entry.id, None).await.unwrap();
    assert_eq!(renewed.id, entry.id);
    assert_eq!(renewed.token_generation, 2);
    assert_ne!(renewed.token, entry.token);
    assert_eq!(
        registry.check_token(&entry.id, Some(&entry.token)).await,
        TokenCheck::Wrong
    );
    assert_eq!(
        registry.check_token(&entry.id, Some(&renewed.token)).await,
        TokenCheck::Valid { generation: 2 }
    );
    let again = registry.regenerate_token(&entry.id, None).await.unwrap();
    assert_eq!(again.token_generation, 3);
    assert_eq!(
        registry.check_token(&entry.id, Some(&renewed.token)).await,
        TokenCheck::Wrong
    );
    assert!(matches!(
        registry.regenerate_token("1_nosuchid", None).await,
        Err(RegistryError::NotFound(_))
    ));
}

async fn a_regeneration_can_insist_on_the_generation_it_saw(f: Fixture) {
    let store = f.store().await;
    let entry = store.create(None).await.unwrap();
    let renewed = store.regenerate_token(&entry.id, Some(1)).await.unwrap();
    assert_eq!(renewed.token_generation, 2);
    match store.regenerate_token(&entry.id, Some(1)).await {
        Err(RegistryError::Conflict {
            expected: 1,
            found: 2,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        store.regenerate_token("1_nosuchid", Some(1)).await,
        Err(RegistryError::NotFound(_))
    ));
    assert_eq!(store.get(&entry.id).await.unwrap(), Some(renewed));
}

async fn data_persists_across_reopening(f: Fixture) {
    let (entry, renewed) = {
        let store = f.store().await;
        let entry = store.create(Some("kept")).await.unwrap();
        let renewed = store.regenerate_token(&entry.id, None).await.unwrap();
        (entry, renewed)
    };
    let registry = f.registry().await;
    assert_eq!(registry.get(&entry.id), Some(renewed.clone()));
    assert_eq!(
        registry.check_token(&entry.id, Some(&renewed.token)).await,
        TokenCheck::Valid { generation: 2 }
    );
}

/// Two origins, each with its own store and copy: what one writes reaches the other's
/// copy by the feed (not by a lookup: only memory is read here) within a second.
async fn a_change_through_one_origin_is_pushed_to_another(f: Fixture) {
    let nyc = f.registry().await;
    let pao = f.registry().await;

    let entry = nyc.create_entry(Some("shared")).await.unwrap();
    let took = eventually("the entry reaches pao", PUSH_LIMIT, || {
        pao.get(&entry.id).is_some()
    })
    .await;
    eprintln!("{}: create pushed in {took:?}", f.backend());

    let renewed = pao.regenerate_token(&entry.id, None).await.unwrap();
    eventually("the new token reaches nyc", PUSH_LIMIT, || {
        nyc.current_generation(&entry.id) == Some(2)
    })
    .await;
    assert_eq!(nyc.get(&entry.id).unwrap().token, renewed.token);

    pao.rename(&entry.id, "renamed").await.unwrap();
    eventually("the name reaches nyc", PUSH_LIMIT, || {
        nyc.get(&entry.id).is_some_and(|e| e.name == "renamed")
    })
    .await;

    assert!(nyc.delete(&entry.id).await.unwrap());
    eventually("the deletion reaches pao", PUSH_LIMIT, || {
        pao.get(&entry.id).is_none()
    })
    .await;
    assert_eq!(
        pao.check_token(&entry.id, Some(&renewed.token)).await,
        TokenCheck::UnknownEntry
    );
}

async fn concurrent_writers_do_not_fail_or_lose_writes(f: Fixture) {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = f.store().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                store.create(None).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(f.store().await.list().await.unwrap().len(), 100);
}

/// Operators on two consoles press "regenerate" at once, each having seen generation 1:
/// one wins, the other is told someone else changed it first.
async fn concurrent_regenerations_hand_out_one_token(f: Fixture) {
    let store = f.store().await;
    let entry = store.create(None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = f.store().await;
        let id = entry.id.clone();
        tasks.push(tokio::spawn(async move {
            store.regenerate_token(&id, Some(1)).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(e) => {
                assert_eq!(e.token_generation, 2);
                won += 1;
            }
            Err(RegistryError::Conflict { found: 2, .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, 1);
}

async fn listeners_hear_changes_made_elsewhere(f: Fixture) {
    let here = f.registry().await;
    let elsewhere = f.registry().await;
    let heard = Arc::new(Mutex::new(Vec::new()));
    let seen_generation = Arc::new(Mutex::new(None));
    let (sink, seen) = (Arc::clone(&heard), Arc::clone(&seen_generation));
    let inner = Arc::downgrade(&here);
    here.on_change(move |change| {
        // What the copy holds when a listener hears a regeneration (checked below).
        if let (RegistryChange::TokenRegenerated { entry_id, .. }, Some(r)) =
            (change, inner.upgrade())
        {
            *seen.lock().unwrap() = r.current_generation(entry_id);
        }
        sink.lock().unwrap().push(change.clone());
    });

    // Each step waits for `here` to follow, so both back ends tell the same story (the
    // SQLite feed says "something changed" and the copy diffs the table: two changes
    // inside one poll would be told as one).
    let entry = elsewhere.create_entry(None).await.unwrap();
    let id = entry.id.clone();
    eventually("the creation is heard", PUSH_LIMIT, || {
        here.get(&id).is_some()
    })
    .await;
    elsewhere.rename(&entry.id, "renamed").await.unwrap();
    eventually("the name is heard", PUSH_LIMIT, || {
        here.get(&id).is_some_and(|e| e.name == "renamed")
    })
    .await;
    elsewhere.regenerate_token(&entry.id, None).await.unwrap();
    eventually("the regeneration is heard", PUSH_LIMIT, || {
        here.current_generation(&id) == Some(2)
    })
    .await;
    elsewhere.delete(&entry.id).await.unwrap();
    eventually("the deletion is heard", PUSH_LIMIT, || {
        here.get(&id).is_none()
    })
    .await;
    let id = entry.id;
    assert_eq!(
        *heard.lock().unwrap(),
        vec![
            RegistryChange::Created {
                entry_id: id.clone()
            },
            RegistryChange::Renamed {
                entry_id: id.clone()
            },
            RegistryChange::TokenRegenerated {
                entry_id: id.clone(),
                generation: 2
            },
            RegistryChange::Deleted { entry_id: id },
        ]
    );
    assert_eq!(
        *seen_generation.lock().unwrap(),
        Some(2),
        "the copy already holds a change when a listener hears it"
    );
}

/// An operator rotates every token at once (6,000 entries, more notifications than the
/// feed holds at a time): every origin's copy takes all of it, in batches or a resync,
/// without counting an outage.
async fn a_bulk_change_is_taken_without_an_outage(f: Fixture) {
    const N: usize = 6000;
    let registry = f.registry().await;
    let insert = match f.backend() {
        "postgres" => format!(
            "INSERT INTO {} (id, name, token, created_at, token_generation)
             SELECT '1_' || lpad(n::text, 8, '0'), 'bulk', 'aaaaaaaaaaaaaaaa', 1700000000, 1
             FROM generate_series(1, {N}) AS n",
            f.table()
        ),
        _ => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N})
             INSERT INTO {} (id, name, token, created_at, token_generation)
             SELECT '1_' || substr('00000000' || i, -8), 'bulk', 'aaaaaaaaaaaaaaaa', 1700000000, 1
             FROM n",
            f.table()
        ),
    };
    f.execute_sql(&insert).await;
    eventually(
        "every new entry is in the copy",
        Duration::from_secs(20),
        || registry.list().len() == N,
    )
    .await;
    f.execute_sql(&format!(
        "UPDATE {} SET token = 'bbbbbbbbbbbbbbbb'",
        f.table()
    ))
    .await;
    let took = eventually(
        "every new token is in the copy",
        Duration::from_secs(20),
        || registry.list().iter().all(|e| e.token_generation == 2),
    )
    .await;
    eprintln!("{}: {N} token changes taken in {took:?}", f.backend());
    let status = registry.status();
    assert_eq!(status.outages, 0, "{status:?}");
    assert_eq!(status.state, StoreState::Connected);
}

/// A listener with a bug (it panics) is logged; the copy goes on following the store and
/// the other listeners go on hearing.
async fn a_panicking_listener_does_not_stop_the_copy(f: Fixture) {
    let registry = f.registry().await;
    let heard = Arc::new(Mutex::new(0));
    registry.on_change(|_| panic!("a listener with a bug"));
    let sink = Arc::clone(&heard);
    registry.on_change(move |_| *sink.lock().unwrap() += 1);
    let elsewhere = f.store().await;
    let entry = elsewhere.create(None).await.unwrap();
    eventually("the copy has the entry", PUSH_LIMIT * 2, || {
        registry.get(&entry.id).is_some()
    })
    .await;
    elsewhere.regenerate_token(&entry.id, None).await.unwrap();
    eventually("the copy has the new token", PUSH_LIMIT * 2, || {
        registry.current_generation(&entry.id) == Some(2)
    })
    .await;
    // The copy takes a change, then tells its listeners: the count may lag the copy.
    eventually(
        "the other listener heard both changes",
        PUSH_LIMIT * 2,
        || *heard.lock().unwrap() == 2,
    )
    .await;
    assert_eq!(registry.status().state, StoreState::Connected);
}

/// An operator's SQL, not the API, changes a token: the store gives it a new
/// generation and every origin's copy hears a regeneration (so live publishes are cut).
async fn a_hand_written_token_change_revokes_like_a_regeneration(f: Fixture) {
    let registry = f.registry().await;
    let entry = registry.create_entry(None).await.unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    registry.on_change(move |c| sink.lock().unwrap().push(c.clone()));
    f.execute_sql(&format!(
        "UPDATE {} SET token = 'handwrittentoken' WHERE id = '{}'",
        f.table(),
        entry.id
    ))
    .await;
    eventually("the hand-written change is heard", PUSH_LIMIT, || {
        heard
            .lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, RegistryChange::TokenRegenerated { generation: 2, .. }))
    })
    .await;
    assert_eq!(
        registry.check_token(&entry.id, Some(&entry.token)).await,
        TokenCheck::Wrong
    );
    assert!(registry
        .check_token(&entry.id, Some("handwrittentoken"))
        .await
        .is_valid());
}

/// pao's copy has not heard of an entry nyc made a moment ago (here its feed says
/// nothing at all): a publish with its token is looked up in the store once, and
/// accepted, rather than refused.
async fn a_token_from_a_moment_ago_is_looked_up_before_refusal(f: Fixture) {
    let pao = f.registry_without_feed().await;
    let store = f.store().await;
    let entry = store.create(None).await.unwrap();
    assert!(pao
        .check_token(&entry.id, Some(&entry.token))
        .await
        .is_valid());
    let renewed = store.regenerate_token(&entry.id, None).await.unwrap();
    assert_eq!(
        pao.check_token(&entry.id, Some(&renewed.token)).await,
        TokenCheck::Valid { generation: 2 }
    );
}

async fn entries_round_trip_as_json_and_debug_hides_the_token(f: Fixture) {
    let store = f.store().await;
    let entry = store.create(Some("json")).await.unwrap();
    let json = serde_json::to_string(&entry).unwrap();
    let back: longhaul_registry::Entry = serde_json::from_str(&json).unwrap();
    assert_eq!(back, entry);
    assert!(!format!("{entry:?}").contains(&entry.token));
}

// ---- Presence: where streams are live ---------------------------------------------

fn origin(id: &str, region: &str) -> PresenceOrigin {
    PresenceOrigin {
        id: id.into(),
        region: region.into(),
    }
}

fn live(stream: &str, host: &str) -> LiveStream {
    LiveStream {
        stream: stream.into(),
        entry_id: stream.rsplit_once('_').unwrap().0.into(),
        rtmp: Some(format!("rtmp://{host}/kLive/{stream}")),
        http_flv: Some(format!("http://{host}/live/{stream}.flv")),
    }
}

/// Long enough that nothing expires during a test that is not about expiry.
const TTL: Duration = Duration::from_secs(300);

/// Where `stream` is live, as (origin, region) pairs.
async fn where_live(store: &dyn EntryStore, stream: &str) -> Vec<(String, String)> {
    store
        .presence_of(stream)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.origin, l.region))
        .collect()
}

/// Both legs of a stream have the same name at two origins: each has its row, read
/// by a third with everything a player needs.
async fn presence_names_every_origin_where_a_stream_is_live(f: Fixture) {
    let (nyc, pao, reader) = (f.store().await, f.store().await, f.store().await);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    nyc.set_presence(
        &origin("nyc-1", "nyc"),
        &[
            live("1_abcdefgh_1", "nyc.example:1935"),
            live("1_abcdefgh_2", "nyc.example:1935"),
            // The other leg of the same stream, also here: one row.
            live("1_abcdefgh_1", "nyc.example:1935"),
        ],
        TTL,
    )
    .await
    .unwrap();
    pao.set_presence(
        &origin("pao-1", "pao"),
        &[LiveStream {
            rtmp: None,
            http_flv: None,
            ..live("1_abcdefgh_1", "unused")
        }],
        TTL,
    )
    .await
    .unwrap();

    let found = reader.presence_of("1_abcdefgh_1").await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    let (at_nyc, at_pao) = (&found[0], &found[1]);
    assert_eq!(
        (at_nyc.origin.as_str(), at_nyc.region.as_str()),
        ("nyc-1", "nyc")
    );
    assert_eq!(at_nyc.stream, "1_abcdefgh_1");
    assert_eq!(at_nyc.entry_id, "1_abcdefgh");
    assert_eq!(
        at_nyc.rtmp.as_deref(),
        Some("rtmp://nyc.example:1935/kLive/1_abcdefgh_1")
    );
    assert_eq!(
        at_nyc.http_flv.as_deref(),
        Some("http://nyc.example:1935/live/1_abcdefgh_1.flv")
    );
    // Times are the store's clock: near this host's for both back ends here.
    assert!(at_nyc.updated_at >= started - 5_000, "{at_nyc:?}");
    assert!(at_nyc.expires_at > at_nyc.updated_at, "{at_nyc:?}");
    assert_eq!(
        (at_pao.origin.as_str(), at_pao.region.as_str()),
        ("pao-1", "pao")
    );
    assert_eq!((at_pao.rtmp.clone(), at_pao.http_flv.clone()), (None, None));

    assert_eq!(
        where_live(&*reader, "1_abcdefgh_2").await,
        [("nyc-1".to_string(), "nyc".to_string())]
    );
    assert!(where_live(&*reader, "1_abcdefgh_3").await.is_empty());
    assert!(where_live(&*reader, "1_zzzzzzzz_1").await.is_empty());
}

async fn presence_is_replaced_by_each_write_and_cleared_by_an_empty_one(f: Fixture) {
    let (nyc, pao) = (f.store().await, f.store().await);
    let (at_nyc, at_pao) = (origin("nyc-1", "nyc"), origin("pao-1", "pao"));
    let streams = ["1_abcdefgh_1", "1_abcdefgh_2"].map(|s| live(s, "nyc.example"));
    nyc.set_presence(&at_nyc, &streams, TTL).await.unwrap();
    pao.set_presence(&at_pao, &streams[..1], TTL).await.unwrap();

    // The first stream ended at nyc: its next write no longer names it.
    nyc.set_presence(&at_nyc, &streams[1..], TTL).await.unwrap();
    assert_eq!(
        where_live(&*pao, "1_abcdefgh_1").await,
        [("pao-1".to_string(), "pao".to_string())],
        "nyc's row went, pao's stayed"
    );
    assert_eq!(where_live(&*pao, "1_abcdefgh_2").await.len(), 1);

    // A clean stop (or a start after a crash) clears the origin, and only it.
    nyc.set_presence(&at_nyc, &[], TTL).await.unwrap();
    assert!(where_live(&*pao, "1_abcdefgh_2").await.is_empty());
    assert_eq!(where_live(&*nyc, "1_abcdefgh_1").await.len(), 1);

    // Many streams in one write.
    let many: Vec<LiveStream> = (1..=500)
        .map(|n| live(&format!("1_bulk{n:04}_1"), "nyc.example"))
        .collect();
    nyc.set_presence(&at_nyc, &many, TTL).await.unwrap();
    assert_eq!(where_live(&*pao, "1_bulk0250_1").await.len(), 1);
    nyc.set_presence(&at_nyc, &many[..10], TTL).await.unwrap();
    assert!(where_live(&*pao, "1_bulk0250_1").await.is_empty());
    assert_eq!(where_live(&*pao, "1_bulk0010_1").await.len(), 1);
}

/// A crashed origin writes nothing more: its rows stop counting at their expiry, and
/// once long expired the next write of any origin deletes them.
async fn presence_expires_and_long_expired_rows_are_forgotten(f: Fixture) {
    let (crashed, pao) = (f.store().await, f.store().await);
    crashed
        .set_presence(
            &origin("nyc-1", "nyc"),
            &[live("1_abcdefgh_1", "nyc.example")],
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert_eq!(where_live(&*pao, "1_abcdefgh_1").await.len(), 1);
    eventually_async(
        "the crashed origin's row expires",
        Duration::from_secs(5),
        || {
            let pao = pao.clone();
            async move { where_live(&*pao, "1_abcdefgh_1").await.is_empty() }
        },
    )
    .await;

    // Make the row an hour and more past its expiry; pao's next write deletes it,
    // which the row brought back to life by hand then shows (it is not there).
    let (past, future) = match f.backend() {
        "sqlite" => ("0".to_string(), "9000000000000".to_string()),
        _ => ("'epoch'".to_string(), "'3000-01-01'".to_string()),
    };
    let table = match f.backend() {
        "sqlite" => "presence",
        _ => "longhaul_presence",
    };
    f.execute_presence_sql(&format!(
        "UPDATE {table} SET expires_at = {past} WHERE origin = 'nyc-1'"
    ))
    .await;
    pao.set_presence(&origin("pao-1", "pao"), &[], TTL)
        .await
        .unwrap();
    f.execute_presence_sql(&format!(
        "UPDATE {table} SET expires_at = {future} WHERE origin = 'nyc-1'"
    ))
    .await;
    assert!(
        where_live(&*pao, "1_abcdefgh_1").await.is_empty(),
        "the long-expired row was deleted"
    );
}

/// Presence is written on every publish and heartbeat; it must not make the other
/// origins re-read every entry (SQLite's watcher would, were it in the entries' file).
async fn presence_writes_do_not_make_origins_reread_the_entries(f: Fixture) {
    let registry = f.registry().await;
    let writer = f.store().await;
    writer.create(Some("one")).await.unwrap();
    eventually("the copy has the entry", PUSH_LIMIT * 2, || {
        registry.list().len() == 1
    })
    .await;
    // Let the feed settle (SQLite: one more watcher round).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = registry.status();
    for n in 0..5 {
        writer
            .set_presence(
                &origin("nyc-1", "nyc"),
                &[live(&format!("1_abcdefgh_{n}"), "nyc.example")],
                TTL,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let after = registry.status();
    assert_eq!(after.resyncs, before.resyncs, "{after:?}");
    assert_eq!(after.changes, before.changes, "{after:?}");
}

// ---- SQLite only -------------------------------------------------------------------

#[tokio::test]
async fn sqlite_errors_name_the_file_and_the_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("registry.sqlite");
    let err = SqliteStore::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("missing-dir"), "{message}");
    assert!(message.contains("opening the database file"), "{message}");
}

#[tokio::test]
async fn sqlite_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    assert!(matches!(
        SqliteStore::open(&path),
        Err(RegistryError::SchemaTooNew {
            found: 99,
            supported: 2,
            ..
        })
    ));
}

/// A file written by the previous release (schema 1, no trigger) is migrated in place.
#[tokio::test]
async fn sqlite_a_version_1_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE entries (id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL,
                 token TEXT NOT NULL, created_at INTEGER NOT NULL,
                 token_generation INTEGER NOT NULL) STRICT;
             INSERT INTO entries VALUES ('1_abcdefgh', 'old', 'aaaaaaaaaaaaaaaa', 1700000001, 3);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let entry = store.get("1_abcdefgh").await.unwrap().unwrap();
    assert_eq!(entry.token_generation, 3);
    let renewed = store.regenerate_token(&entry.id, Some(3)).await.unwrap();
    assert_eq!(renewed.token_generation, 4);
}

#[tokio::test]
async fn an_in_memory_registry_works_alone() {
    let registry = Registry::open(Arc::new(SqliteStore::open_in_memory().unwrap()))
        .await
        .unwrap();
    let entry = registry.create_entry(Some("alone")).await.unwrap();
    assert_eq!(registry.list(), vec![entry.clone()]);
    let status = registry.status();
    assert_eq!(status.state, StoreState::Connected);
    assert_eq!(status.store.backend, "sqlite");
    assert_eq!(status.entries, 1);
}

// ---- PostgreSQL only: a server that goes away and comes back -----------------------

/// Origins keep deciding publishes from memory while the database is down, refuse
/// changes quickly and say so; when it is back they catch up with what changed meanwhile
/// (here: an operator's SQL run before their feeds reconnected) and take writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fail_static_while_down_then_resync_after_a_restart() {
    use longhaul_registry::postgres::{PostgresSettings, PostgresStore};
    use longhaul_registry::testing::PostgresServer;

    let (server, database) = tokio::task::spawn_blocking(PostgresServer::start_with_database)
        .await
        .unwrap()
        .expect("a private PostgreSQL with a database");
    let settings = PostgresSettings {
        url: server.url(&database),
        password: Some(server.password().to_owned()),
        application_name: "longhaul-restart-test".into(),
        tls_ca: None,
    };
    let open = || async {
        let store = PostgresStore::connect(&settings).await.expect("connect");
        Registry::open(Arc::new(store)).await.expect("open")
    };
    let (nyc, pao) = (open().await, open().await);
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    pao.on_change(move |c| sink.lock().unwrap().push(c.clone()));
    let entry = nyc.create_entry(Some("kept")).await.unwrap();
    eventually("pao has the entry", PUSH_LIMIT, || {
        pao.get(&entry.id).is_some()
    })
    .await;

    // Down.
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop().expect("stop");
        server
    })
    .await
    .unwrap();
    // pao's feed notices by itself (the server closed its connection; a server that
    // vanished silently would be noticed by the heartbeat, 5 s, and its timeout, 3 s).
    let took = eventually(
        "pao says the store is unreachable",
        Duration::from_secs(12),
        || pao.status().state == StoreState::Unreachable,
    )
    .await;
    eprintln!("the outage was noticed within {took:?}");
    for registry in [&nyc, &pao] {
        assert_eq!(
            registry.check_token(&entry.id, Some(&entry.token)).await,
            TokenCheck::Valid { generation: 1 },
            "a valid token is accepted from memory while the database is down"
        );
        assert_eq!(
            registry
                .check_token(&entry.id, Some("wrongwrongwrong2"))
                .await,
            TokenCheck::Wrong
        );
    }
    let started = Instant::now();
    let err = nyc.create_entry(Some("refused")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a write fails within its bounds, not after a hang: {:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{}", server.port())),
        "{message}"
    );
    assert!(!message.contains(server.password()), "{message}");
    assert_eq!(nyc.status().state, StoreState::Unreachable);
    let resyncs_before = pao.status().resyncs;

    // Back, and changed by hand before the feeds reconnect (they are in backoff).
    let update = format!(
        "UPDATE longhaul_entries SET token = 'changedwhiledown' WHERE id = '{}'",
        entry.id
    );
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart().expect("restart");
        server.execute(&database, &update).expect("operator SQL");
        server
    })
    .await
    .unwrap();
    let took = eventually("pao caught up", Duration::from_secs(8), || {
        pao.current_generation(&entry.id) == Some(2) && pao.status().state == StoreState::Connected
    })
    .await;
    eprintln!("caught up {took:?} after the restart");
    assert!(pao.status().resyncs > resyncs_before);
    assert!(heard
        .lock()
        .unwrap()
        .contains(&RegistryChange::TokenRegenerated {
            entry_id: entry.id.clone(),
            generation: 2
        }));
    assert_eq!(
        pao.check_token(&entry.id, Some(&entry.token)).await,
        TokenCheck::Wrong
    );
    eventually("nyc reachable again", Duration::from_secs(8), || {
        nyc.status().state == StoreState::Connected
    })
    .await;
    nyc.create_entry(Some("after"))
        .await
        .expect("writes work again");
    drop(server);
}

/// A store that cannot be reached at start is an error that names it, without the
/// password, within the connect timeout.
#[tokio::test]
async fn postgres_an_unreachable_database_is_named_at_start() {
    use longhaul_registry::postgres::{PostgresSettings, PostgresStore};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = PostgresSettings {
        url: format!("postgres://longhaul@127.0.0.1:{port}/longhaul"),
        password: Some("s3cret-password".into()),
        application_name: "t".into(),
        tls_ca: None,
    };
    let err = PostgresStore::connect(&settings).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{port}/longhaul")),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    // A password in the URL is refused before any connection.
    let inline = PostgresSettings {
        url: format!("postgres://longhaul:s3cret@127.0.0.1:{port}/longhaul"),
        ..settings
    };
    let err = PostgresStore::connect(&inline).await.unwrap_err();
    assert!(err.to_string().contains("password_file"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

/// A database reached over TLS, checked against the CA that signed its certificate:
/// the store's connections and its change feed are encrypted; a server whose
/// certificate another CA signed is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_checked_against_its_ca() {
    use longhaul_registry::postgres::{PostgresSettings, PostgresStore};
    use longhaul_registry::testing::PostgresServer;
    let (server, database, ca) = tokio::task::spawn_blocking(|| {
        let mut server = PostgresServer::start().expect("a private PostgreSQL");
        let ca = server.enable_tls_with_test_ca().expect("TLS on");
        let database = server.create_database().expect("a database");
        (server, database, ca)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let settings = PostgresSettings {
        url: server.url(&database),
        password: Some(server.password().to_owned()),
        application_name: "longhaul-tls-test".into(),
        tls_ca: Some(ca_file),
    };
    let open = || async {
        let store = PostgresStore::connect(&settings)
            .await
            .expect("connect over TLS");
        Registry::open(Arc::new(store)).await.expect("open")
    };
    let (nyc, pao) = (open().await, open().await);
    let entry = nyc.create_entry(Some("secret")).await.unwrap();
    eventually("the entry reaches pao over TLS", PUSH_LIMIT, || {
        pao.get(&entry.id).is_some()
    })
    .await;
    let (_server, encrypted) = tokio::task::spawn_blocking(move || {
        let answer = server
            .execute(
                &database,
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s \
                 JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'longhaul-tls-test'",
            )
            .expect("query pg_stat_ssl");
        (server, answer)
    })
    .await
    .unwrap();
    let counts: Vec<u32> = encrypted
        .trim()
        .split('|')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert!(
        counts[1] >= 2,
        "the pools and feeds are connected: {encrypted}"
    );
    assert_eq!(
        counts[0], counts[1],
        "every connection is encrypted: {encrypted}"
    );

    // A CA that did not sign the server's certificate: refused, and said so.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let wrong_ca = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, other.cert.pem()).unwrap();
    let impostor = PostgresSettings {
        tls_ca: Some(wrong_ca),
        ..settings.clone()
    };
    let err = PostgresStore::connect(&impostor).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
