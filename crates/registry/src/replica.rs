//! The node's in-memory copy of the entries: what the publish path reads, and what keeps
//! serving when the database is out of reach (fail static).
//!
//! Plain data, no IO. The registry's sync task is its only writer and feeds it what it
//! read from the store, in order: a whole snapshot after (re)connecting, or one entry as
//! it is now after a change notification. Each update returns the [`RegistryChange`]s it
//! amounts to, so a token regenerated while this node was cut off from the database is
//! still seen (and its live publishes still cut) when the node catches up.

use std::collections::HashMap;

use crate::change::RegistryChange;
use crate::entry::Entry;
use crate::token_check::{tokens_equal, TokenCheck};

/// Entries by id.
#[derive(Debug, Default)]
pub struct Replica {
    entries: HashMap<String, Entry>,
}

impl Replica {
    pub fn new() -> Replica {
        Replica::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Every entry, oldest first (ties by id, so the order is stable).
    pub fn list(&self) -> Vec<Entry> {
        let mut list: Vec<Entry> = self.entries.values().cloned().collect();
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        list
    }

    /// Checks a presented token against the entry's current one, in constant time over
    /// the token's content (see [`crate::token_check`]). An empty token counts as missing.
    pub fn check_token(&self, entry_id: &str, presented: Option<&str>) -> TokenCheck {
        let Some(entry) = self.entries.get(entry_id) else {
            return TokenCheck::UnknownEntry;
        };
        match presented {
            None | Some("") => TokenCheck::Missing,
            Some(p) if tokens_equal(entry.token.as_bytes(), p.as_bytes()) => TokenCheck::Valid {
                generation: entry.token_generation,
            },
            Some(_) => TokenCheck::Wrong,
        }
    }

    /// Takes `entry_id` as the store has it now (`None`: gone) and says what changed.
    pub fn apply(&mut self, entry_id: &str, now: Option<Entry>) -> Vec<RegistryChange> {
        match now {
            Some(entry) => self.upsert(entry).into_iter().collect(),
            None => self.remove(entry_id).into_iter().collect(),
        }
    }

    /// Replaces everything with `snapshot`, the store's whole table, and says what
    /// changed: entries missing from it were deleted, the others created, renamed or
    /// given new tokens. Deletions come first, then the rest in snapshot order.
    pub fn apply_snapshot(&mut self, snapshot: Vec<Entry>) -> Vec<RegistryChange> {
        let present: std::collections::HashSet<&str> =
            snapshot.iter().map(|e| e.id.as_str()).collect();
        let mut gone: Vec<String> = self
            .entries
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        gone.sort();
        let mut changes: Vec<RegistryChange> =
            gone.iter().filter_map(|id| self.remove(id)).collect();
        for entry in snapshot {
            changes.extend(self.upsert(entry));
        }
        changes
    }

    fn remove(&mut self, entry_id: &str) -> Option<RegistryChange> {
        self.entries
            .remove(entry_id)
            .map(|_| RegistryChange::Deleted {
                entry_id: entry_id.to_owned(),
            })
    }

    /// A token change is told as one change even when the name changed with it. A new
    /// token whose generation did not go up is a [`RegistryChange::TokenReset`].
    fn upsert(&mut self, entry: Entry) -> Option<RegistryChange> {
        let entry_id = entry.id.clone();
        let change = match self.entries.get(&entry.id) {
            None => Some(RegistryChange::Created { entry_id }),
            Some(old)
                if old.token_generation < entry.token_generation
                    && !tokens_equal(old.token.as_bytes(), entry.token.as_bytes()) =>
            {
                Some(RegistryChange::TokenRegenerated {
                    entry_id,
                    generation: entry.token_generation,
                })
            }
            Some(old)
                if old.token_generation != entry.token_generation
                    || !tokens_equal(old.token.as_bytes(), entry.token.as_bytes()) =>
            {
                Some(RegistryChange::TokenReset { entry_id })
            }
            Some(old) if old.name != entry.name => Some(RegistryChange::Renamed { entry_id }),
            Some(_) => None,
        };
        self.entries.insert(entry.id.clone(), entry);
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, name: &str, token: &str, generation: u32) -> Entry {
        Entry {
            id: id.into(),
            name: name.into(),
            token: token.into(),
            created_at: 100,
            token_generation: generation,
        }
    }

    fn created(id: &str) -> RegistryChange {
        RegistryChange::Created {
            entry_id: id.into(),
        }
    }

    #[test]
    fn single_updates_say_what_changed() {
        let mut r = Replica::new();
        // (update, expected changes)
        let steps: Vec<(&str, Option<Entry>, Vec<RegistryChange>)> = vec![
            (
                "1_a",
                Some(entry("1_a", "a", "tok1", 1)),
                vec![created("1_a")],
            ),
            ("1_a", Some(entry("1_a", "a", "tok1", 1)), vec![]),
            (
                "1_a",
                Some(entry("1_a", "renamed", "tok1", 1)),
                vec![RegistryChange::Renamed {
                    entry_id: "1_a".into(),
                }],
            ),
            (
                "1_a",
                Some(entry("1_a", "again", "tok2", 2)),
                vec![RegistryChange::TokenRegenerated {
                    entry_id: "1_a".into(),
                    generation: 2,
                }],
            ),
            (
                "1_a",
                None,
                vec![RegistryChange::Deleted {
                    entry_id: "1_a".into(),
                }],
            ),
            ("1_a", None, vec![]),
        ];
        for (i, (id, now, expected)) in steps.into_iter().enumerate() {
            assert_eq!(r.apply(id, now), expected, "step {i}");
        }
        assert!(r.is_empty());
    }

    #[test]
    fn a_snapshot_catches_up_with_everything_missed() {
        let mut r = Replica::new();
        r.apply_snapshot(vec![
            entry("1_keep", "k", "t1", 1),
            entry("1_regen", "r", "t1", 1),
            entry("1_gone", "g", "t1", 1),
            entry("1_rename", "n", "t1", 1),
        ]);
        // Meanwhile (node cut off): one deleted, one regenerated, one renamed, one new.
        let changes = r.apply_snapshot(vec![
            entry("1_keep", "k", "t1", 1),
            entry("1_regen", "r", "t2", 2),
            entry("1_rename", "n2", "t1", 1),
            entry("1_new", "x", "t1", 1),
        ]);
        assert_eq!(
            changes,
            vec![
                RegistryChange::Deleted {
                    entry_id: "1_gone".into()
                },
                RegistryChange::TokenRegenerated {
                    entry_id: "1_regen".into(),
                    generation: 2
                },
                RegistryChange::Renamed {
                    entry_id: "1_rename".into()
                },
                created("1_new"),
            ]
        );
        assert_eq!(r.len(), 4);
        assert_eq!(
            r.check_token("1_regen", Some("t1")),
            TokenCheck::Wrong,
            "the old token is refused once caught up"
        );
    }

    #[test]
    fn tokens_are_checked_against_the_copy() {
        let mut r = Replica::new();
        r.apply("1_a", Some(entry("1_a", "a", "secret", 3)));
        assert_eq!(
            r.check_token("1_a", Some("secret")),
            TokenCheck::Valid { generation: 3 }
        );
        assert_eq!(r.check_token("1_a", Some("secreT")), TokenCheck::Wrong);
        assert_eq!(r.check_token("1_a", Some("")), TokenCheck::Missing);
        assert_eq!(r.check_token("1_a", None), TokenCheck::Missing);
        assert_eq!(
            r.check_token("1_b", Some("secret")),
            TokenCheck::UnknownEntry
        );
    }

    #[test]
    fn a_token_changed_without_a_higher_generation_cuts_everything() {
        // The stores' triggers bump the generation of a hand-written token change; a
        // restore from a backup can still bring an older generation back.
        let mut r = Replica::new();
        r.apply("1_a", Some(entry("1_a", "a", "t1", 3)));
        let reset = vec![RegistryChange::TokenReset {
            entry_id: "1_a".into(),
        }];
        assert_eq!(r.apply("1_a", Some(entry("1_a", "a", "t9", 3))), reset);
        assert_eq!(r.apply("1_a", Some(entry("1_a", "a", "t8", 2))), reset);
        // The same token with another generation is odd too: nothing tells its
        // publishes apart.
        assert_eq!(r.apply("1_a", Some(entry("1_a", "a", "t8", 5))), reset);
        assert!(reset[0].revokes());
    }

    #[test]
    fn listing_is_oldest_first_and_stable() {
        let mut r = Replica::new();
        let mut a = entry("1_b", "b", "t", 1);
        a.created_at = 5;
        let mut b = entry("1_a", "a", "t", 1);
        b.created_at = 5;
        let mut c = entry("1_c", "c", "t", 1);
        c.created_at = 1;
        r.apply_snapshot(vec![a, b, c]);
        let ids: Vec<String> = r.list().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["1_c", "1_a", "1_b"]);
    }
}
