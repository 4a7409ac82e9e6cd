//! The registry against a real database file in a temporary directory.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use longhaul_registry::{Registry, RegistryChange, RegistryError, TokenCheck};
use tempfile::TempDir;

fn temp_registry() -> (TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&dir.path().join("registry.sqlite")).unwrap();
    (dir, registry)
}

#[test]
fn create_get_list_rename_delete() {
    let (_dir, registry) = temp_registry();
    assert!(registry.list().unwrap().is_empty());

    let first = registry.create_entry(Some("Morning show")).unwrap();
    let second = registry.create_entry(None).unwrap();
    assert_eq!(first.name, "Morning show");
    assert_eq!(second.name, second.id, "the name defaults to the id");
    assert_eq!(first.token_generation, 1);
    assert!(first.created_at > 1_700_000_000);

    assert_eq!(registry.get(&first.id).unwrap(), Some(first.clone()));
    assert_eq!(registry.get("1_nosuchid").unwrap(), None);
    assert_eq!(
        registry.list().unwrap(),
        vec![first.clone(), second.clone()]
    );

    let renamed = registry.rename(&first.id, "Evening show").unwrap();
    assert_eq!(renamed.name, "Evening show");
    assert_eq!(registry.get(&first.id).unwrap(), Some(renamed));
    assert!(matches!(
        registry.rename("1_nosuchid", "x"),
        Err(RegistryError::NotFound(id)) if id == "1_nosuchid"
    ));

    assert!(registry.delete(&first.id).unwrap());
    assert!(!registry.delete(&first.id).unwrap());
    assert_eq!(registry.get(&first.id).unwrap(), None);
    assert_eq!(registry.list().unwrap(), vec![second]);
}

#[test]
fn names_are_validated() {
    let (_dir, registry) = temp_registry();
    assert!(matches!(
        registry.create_entry(Some("two\nlines")),
        Err(RegistryError::InvalidName(_))
    ));
    let long = "é".repeat(257);
    assert!(matches!(
        registry.create_entry(Some(&long)),
        Err(RegistryError::InvalidName(_))
    ));
    assert!(registry.create_entry(Some(&"é".repeat(256))).is_ok());
    let entry = registry.create_entry(None).unwrap();
    assert!(matches!(
        registry.rename(&entry.id, "tab\there"),
        Err(RegistryError::InvalidName(_))
    ));
}

#[test]
fn ids_and_tokens_have_the_right_form_and_are_distinct() {
    let registry = Registry::open_in_memory().unwrap();
    let mut ids = HashSet::new();
    let mut tokens = HashSet::new();
    for _ in 0..1000 {
        let entry = registry.create_entry(None).unwrap();
        let suffix = entry.id.strip_prefix("1_").expect("id starts with 1_");
        assert_eq!(suffix.len(), 8, "{}", entry.id);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert!(longhaul_endpoint_shape(&entry.id), "{}", entry.id);
        assert_eq!(entry.token.len(), 16);
        assert!(entry
            .token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        assert!(ids.insert(entry.id));
        assert!(tokens.insert(entry.token));
    }
    assert_eq!(registry.list().unwrap().len(), 1000);
}

/// The id shape the endpoint crate parses: `{digits}_{[a-z0-9]{4,16}}`.
fn longhaul_endpoint_shape(id: &str) -> bool {
    let Some((digits, rest)) = id.split_once('_') else {
        return false;
    };
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (4..=16).contains(&rest.len())
}

#[test]
fn token_checks() {
    let (_dir, registry) = temp_registry();
    let entry = registry.create_entry(None).unwrap();
    let check = |token: Option<&str>| registry.check_token(&entry.id, token).unwrap();

    assert_eq!(
        check(Some(&entry.token)),
        TokenCheck::Valid { generation: 1 }
    );
    assert_eq!(check(None), TokenCheck::Missing);
    assert_eq!(check(Some("")), TokenCheck::Missing);
    assert_eq!(check(Some("aaaaaaaaaaaaaaaa")), TokenCheck::Wrong);
    assert_eq!(check(Some(&entry.token[..15])), TokenCheck::Wrong);
    assert_eq!(check(Some(&format!("{}a", entry.token))), TokenCheck::Wrong);
    assert_eq!(check(Some(&entry.token.to_uppercase())), TokenCheck::Wrong);
    assert_eq!(
        registry
            .check_token("1_nosuchid", Some(&entry.token))
            .unwrap(),
        TokenCheck::UnknownEntry
    );
}

#[test]
fn regenerating_refuses_the_old_token() {
    let (_dir, registry) = temp_registry();
    let entry = registry.create_entry(None).unwrap();
    let renewed = registry.regenerate_token(&entry.id).unwrap();
    assert_eq!(renewed.id, entry.id);
    assert_eq!(renewed.token_generation, 2);
    assert_ne!(renewed.token, entry.token);
    assert_eq!(
        registry.check_token(&entry.id, Some(&entry.token)).unwrap(),
        TokenCheck::Wrong
    );
    assert_eq!(
        registry
            .check_token(&entry.id, Some(&renewed.token))
            .unwrap(),
        TokenCheck::Valid { generation: 2 }
    );
    let again = registry.regenerate_token(&entry.id).unwrap();
    assert_eq!(again.token_generation, 3);
    assert_eq!(
        registry
            .check_token(&entry.id, Some(&renewed.token))
            .unwrap(),
        TokenCheck::Wrong
    );
    assert!(matches!(
        registry.regenerate_token("1_nosuchid"),
        Err(RegistryError::NotFound(_))
    ));
}

#[test]
fn data_persists_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    let (entry, renewed) = {
        let registry = Registry::open(&path).unwrap();
        let entry = registry.create_entry(Some("kept")).unwrap();
        let renewed = registry.regenerate_token(&entry.id).unwrap();
        (entry, renewed)
    };
    let registry = Registry::open(&path).unwrap();
    assert_eq!(registry.get(&entry.id).unwrap(), Some(renewed.clone()));
    assert_eq!(
        registry
            .check_token(&entry.id, Some(&renewed.token))
            .unwrap(),
        TokenCheck::Valid { generation: 2 }
    );
}

#[test]
fn two_handles_on_one_file_see_each_others_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    let a = Registry::open(&path).unwrap();
    let b = Registry::open(&path).unwrap();

    let entry = a.create_entry(Some("shared")).unwrap();
    assert_eq!(b.get(&entry.id).unwrap(), Some(entry.clone()));

    let renewed = b.regenerate_token(&entry.id).unwrap();
    assert_eq!(
        a.check_token(&entry.id, Some(&entry.token)).unwrap(),
        TokenCheck::Wrong
    );
    assert!(a
        .check_token(&entry.id, Some(&renewed.token))
        .unwrap()
        .is_valid());

    assert!(a.delete(&entry.id).unwrap());
    assert_eq!(
        b.check_token(&entry.id, Some(&renewed.token)).unwrap(),
        TokenCheck::UnknownEntry
    );
}

#[test]
fn concurrent_writers_on_one_file_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let registry = Registry::open(&path).unwrap();
                for _ in 0..25 {
                    registry.create_entry(None).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(Registry::open(&path).unwrap().list().unwrap().len(), 100);
}

#[test]
fn listeners_hear_committed_changes() {
    let registry = Arc::new(Registry::open_in_memory().unwrap());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    let inner = Arc::clone(&registry);
    registry.on_change(move |change| {
        // The change is committed and the registry is usable from inside a listener.
        if let RegistryChange::TokenRegenerated {
            entry_id,
            generation,
        } = change
        {
            let stored = inner.get(entry_id).unwrap().unwrap();
            assert_eq!(stored.token_generation, *generation);
        }
        sink.lock().unwrap().push(change.clone());
    });

    let entry = registry.create_entry(None).unwrap();
    registry.rename(&entry.id, "renamed").unwrap();
    registry.regenerate_token(&entry.id).unwrap();
    registry.delete(&entry.id).unwrap();
    registry.delete(&entry.id).unwrap(); // already gone: no second event

    assert_eq!(
        *heard.lock().unwrap(),
        vec![
            RegistryChange::TokenRegenerated {
                entry_id: entry.id.clone(),
                generation: 2
            },
            RegistryChange::Deleted { entry_id: entry.id },
        ]
    );
}

#[test]
fn errors_name_the_file_and_the_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("registry.sqlite");
    let err = Registry::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("missing-dir"), "{message}");
    assert!(message.contains("opening the database file"), "{message}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    drop(Registry::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    assert!(matches!(
        Registry::open(&path),
        Err(RegistryError::SchemaTooNew {
            found: 99,
            supported: 1,
            ..
        })
    ));
}

#[test]
fn entries_serialize() {
    let registry = Registry::open_in_memory().unwrap();
    let entry = registry.create_entry(Some("json")).unwrap();
    let json = serde_json::to_string(&entry).unwrap();
    let back: longhaul_registry::Entry = serde_json::from_str(&json).unwrap();
    assert_eq!(back, entry);
    assert!(!format!("{entry:?}").contains(&entry.token));
}
