//! Whose a response is that a provider made and keeps itself: a `POST /v1/responses`
//! served natively (OpenAI, xAI) with the gateway's own provider credential is kept at
//! that provider under the gateway's key, where any caller could read, delete, cancel
//! or continue it by its id. The gateway remembers which caller made it (the owner
//! [`super::response_store::owner_of`] names) and at which provider, and lets only that
//! caller reach it, as it does for the responses it translates and stores itself.
//!
//! The records live in the response store (memory or Redis), each with its expiry;
//! this module holds what they are, who may reach an id by them, and the in-memory
//! book of them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The record of a response a provider made: who made it, and where it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeOwner {
    /// Whose it is ([`super::response_store::owner_of`]).
    pub owner: String,
    /// The configured provider instance that holds it, by name.
    pub provider: String,
}

/// How a managed key may reach a response a provider holds that has no record (made
/// before the gateway kept records, or through `/p/`, or its record expired).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NativeAccess {
    /// Only the responses recorded as its own: an id without a record is not found.
    #[default]
    Owned,
    /// An id without a record goes on to the provider, as before the gateway kept
    /// records; a recorded one is still its owner's alone.
    Open,
}

impl NativeAccess {
    /// The setting's name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            NativeAccess::Owned => "owned",
            NativeAccess::Open => "open",
        }
    }
}

/// How the records of natively served responses are kept (`responses.native_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeOwnerSettings {
    /// How long a record is kept: as long as the provider keeps the response (OpenAI:
    /// 30 days), so that its owner can read it as long as it exists.
    pub ttl: Duration,
    /// Records kept at most in memory (the Redis store keeps each for `ttl`).
    pub max_entries: usize,
    /// What a managed key may do with an id without a record.
    pub access: NativeAccess,
}

impl Default for NativeOwnerSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30 * 24 * 3600),
            max_entries: 100_000,
            access: NativeAccess::Owned,
        }
    }
}

/// Who is asking for a response a provider holds: whose its records say it is
/// (`owner`), and whether it is a managed key (`auth.keys[]`), a tenant of the
/// gateway's provider account that sees only its own.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The caller, as [`super::response_store::owner_of`] names it.
    pub owner: &'a str,
    /// The caller is a managed key.
    pub managed: bool,
}

/// What the gateway does with a request for a response a provider holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// It goes on to the provider: the one recorded (`Some`), else the one that serves
    /// the Responses API for ids the gateway knows nothing of.
    Forward(Option<String>),
    /// Another caller's, or unknown to a managed key: answered as an unknown id.
    NotFound,
}

/// Who may reach a response a provider holds, by its `record`: its owner alone; an id
/// without one the master key and an open gateway's callers (one tenant), and a managed
/// key only with [`NativeAccess::Open`].
pub fn reach(record: Option<&NativeOwner>, asker: Asker<'_>, access: NativeAccess) -> Reach {
    match record {
        Some(record) if record.owner == asker.owner => {
            Reach::Forward(Some(record.provider.clone()))
        }
        Some(_) => Reach::NotFound,
        None if asker.managed && access == NativeAccess::Owned => Reach::NotFound,
        None => Reach::Forward(None),
    }
}

/// How long a managed key's read of an id without a record waits, in steps, for a
/// record being written: the answer that named the id may reach the client a moment
/// before its record lands in a shared store.
pub const LATE_RECORD_WAITS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(150),
];

/// The records in this process's memory: each expires after its ttl, and past
/// `max_entries` the oldest go first.
#[derive(Debug, Default)]
pub struct NativeOwnerBook {
    inner: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    /// Id → the record and when it expires, with its place in `order`.
    map: HashMap<String, (NativeOwner, Instant, u64)>,
    /// Oldest first: `(id, seq)`, skipped once the id is gone or written again.
    order: VecDeque<(String, u64)>,
    next_seq: u64,
}

impl NativeOwnerBook {
    /// Keeps `record` for `id`, within `settings`.
    pub fn put(&self, id: &str, record: NativeOwner, settings: &NativeOwnerSettings) {
        self.put_at(id, record, settings, Instant::now());
    }

    /// [`Self::put`] as at `now`.
    fn put_at(&self, id: &str, record: NativeOwner, settings: &NativeOwnerSettings, now: Instant) {
        if settings.max_entries == 0 {
            return;
        }
        let Ok(mut records) = self.inner.lock() else {
            return;
        };
        let seq = records.next_seq;
        records.next_seq += 1;
        records
            .map
            .insert(id.to_string(), (record, now + settings.ttl, seq));
        records.order.push_back((id.to_string(), seq));
        // The expired and, past the bound, the oldest go.
        while let Some((front, front_seq)) = records.order.front().cloned() {
            let current = records
                .map
                .get(&front)
                .map(|(_, expires, s)| (*expires, *s));
            let gone = match current {
                Some((expires, s)) if s == front_seq => {
                    expires <= now || records.map.len() > settings.max_entries
                }
                // A place left behind by a record written again or forgotten.
                _ => {
                    records.order.pop_front();
                    continue;
                }
            };
            if !gone {
                break;
            }
            records.order.pop_front();
            records.map.remove(&front);
        }
    }

    /// The record of `id`, unless it expired.
    pub fn get(&self, id: &str) -> Option<NativeOwner> {
        let records = self.inner.lock().ok()?;
        let (record, expires, _) = records.map.get(id)?;
        (*expires > Instant::now()).then(|| record.clone())
    }

    /// Forgets the record of `id`.
    pub fn forget(&self, id: &str) {
        if let Ok(mut records) = self.inner.lock() {
            records.map.remove(id);
            // Its place in `order` is skipped when reached; keep it from growing past
            // the map.
            if records.order.len() > 2 * records.map.len() + 16 {
                let Records { map, order, .. } = &mut *records;
                order.retain(|(id, seq)| map.get(id).is_some_and(|(_, _, s)| s == seq));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner: &str, provider: &str) -> NativeOwner {
        NativeOwner {
            owner: owner.into(),
            provider: provider.into(),
        }
    }

    const KEY_A: Asker<'static> = Asker {
        owner: "key:a",
        managed: true,
    };
    const KEY_B: Asker<'static> = Asker {
        owner: "key:b",
        managed: true,
    };
    const MASTER: Asker<'static> = Asker {
        owner: "master",
        managed: false,
    };

    #[test]
    fn a_recorded_response_is_reached_by_its_owner_alone_at_its_provider() {
        let a = record("key:a", "openai-eu");
        for access in [NativeAccess::Owned, NativeAccess::Open] {
            assert_eq!(
                reach(Some(&a), KEY_A, access),
                Reach::Forward(Some("openai-eu".into()))
            );
            assert_eq!(reach(Some(&a), KEY_B, access), Reach::NotFound);
            assert_eq!(reach(Some(&a), MASTER, access), Reach::NotFound);
        }
    }

    #[test]
    fn an_unrecorded_id_is_the_master_keys_to_forward_and_unknown_to_a_managed_key() {
        assert_eq!(
            reach(None, MASTER, NativeAccess::Owned),
            Reach::Forward(None)
        );
        assert_eq!(reach(None, KEY_A, NativeAccess::Owned), Reach::NotFound);
        let open = Asker {
            owner: "open",
            managed: false,
        };
        assert_eq!(reach(None, open, NativeAccess::Owned), Reach::Forward(None));
    }

    #[test]
    fn open_access_forwards_an_unrecorded_id_for_a_managed_key_too() {
        assert_eq!(reach(None, KEY_A, NativeAccess::Open), Reach::Forward(None));
    }

    #[test]
    fn a_record_expires_after_its_ttl() {
        let book = NativeOwnerBook::default();
        let settings = NativeOwnerSettings {
            ttl: Duration::from_secs(60),
            ..NativeOwnerSettings::default()
        };
        let long_ago = Instant::now() - Duration::from_secs(61);
        book.put_at("resp_old", record("key:a", "openai"), &settings, long_ago);
        book.put("resp_new", record("key:a", "openai"), &settings);
        assert_eq!(book.get("resp_old"), None);
        assert_eq!(book.get("resp_new"), Some(record("key:a", "openai")));
    }

    #[test]
    fn past_its_bound_the_oldest_records_go_first() {
        let book = NativeOwnerBook::default();
        let settings = NativeOwnerSettings {
            max_entries: 2,
            ..NativeOwnerSettings::default()
        };
        for id in ["resp_1", "resp_2", "resp_3"] {
            book.put(id, record("key:a", "openai"), &settings);
        }
        assert_eq!(book.get("resp_1"), None);
        assert!(book.get("resp_2").is_some() && book.get("resp_3").is_some());
        // Written again, a record counts as new.
        book.put("resp_2", record("key:a", "openai"), &settings);
        book.put("resp_4", record("key:a", "openai"), &settings);
        assert_eq!(book.get("resp_3"), None);
        assert!(book.get("resp_2").is_some() && book.get("resp_4").is_some());
    }

    #[test]
    fn a_forgotten_record_is_gone_and_its_place_does_not_pile_up() {
        let book = NativeOwnerBook::default();
        let settings = NativeOwnerSettings::default();
        for n in 0..100 {
            let id = format!("resp_{n}");
            book.put(&id, record("key:a", "openai"), &settings);
            book.forget(&id);
            assert_eq!(book.get(&id), None);
        }
        let held = book.inner.lock().unwrap().order.len();
        assert!(held <= 16 + 1, "{held} places for no record");
    }
}
