//! How the gateway authenticates to one provider: no key, keys it holds itself
//! (rotated per request), or the caller's own key (a caller key, `!PASSTHRU`).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::Secret;

/// The configured value that makes a provider use the caller's own key.
pub const CALLER_KEY_MARKER: &str = "!PASSTHRU";

/// Whether a configured key value is the [`CALLER_KEY_MARKER`] (any case: a real
/// provider key never starts with `!`, so `!passthru` is a typo, not a key).
pub fn is_caller_key_marker(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case(CALLER_KEY_MARKER)
}

/// A provider's credential as configured.
#[derive(Debug, Default)]
pub enum ProviderCredential {
    /// No key: self-hosted servers, or a provider nobody configured.
    #[default]
    None,
    /// Keys the gateway holds, used round-robin, one per request.
    Static(KeyRing),
    /// Every request carries the caller's own provider key.
    CallerKey,
}

impl ProviderCredential {
    /// One static key.
    pub fn single(key: Secret) -> Self {
        ProviderCredential::Static(KeyRing::single(key))
    }

    /// Whether callers bring their own key.
    pub fn is_caller_key(&self) -> bool {
        matches!(self, ProviderCredential::CallerKey)
    }

    /// How many keys the gateway holds for this provider.
    pub fn static_key_count(&self) -> usize {
        match self {
            ProviderCredential::Static(ring) => ring.len(),
            ProviderCredential::None | ProviderCredential::CallerKey => 0,
        }
    }

    /// The ids of the static keys the gateway holds (none for the other kinds).
    pub fn key_ids(&self) -> &[KeyId] {
        match self {
            ProviderCredential::Static(ring) => &ring.ids,
            ProviderCredential::None | ProviderCredential::CallerKey => &[],
        }
    }

    /// The next static key in rotation; `None` unless the gateway holds keys.
    pub fn next_static_key(&self) -> Option<&Secret> {
        match self {
            ProviderCredential::Static(ring) => Some(ring.next()),
            ProviderCredential::None | ProviderCredential::CallerKey => None,
        }
    }
}

/// One or more static keys handed out round-robin. Never empty.
pub struct KeyRing {
    keys: Vec<Secret>,
    /// Each key's [`KeyId`], in the same order.
    ids: Vec<KeyId>,
    turn: AtomicUsize,
}

/// What tells one key from another across reloads, whatever its place in the list:
/// the first 8 bytes of its SHA-256 (never shown; kept beside the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(u64);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &Secret) -> Self {
        let digest = Sha256::digest(key.expose().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Self(u64::from_le_bytes(first))
    }
}

impl KeyRing {
    /// A ring of `keys`; `None` when there are none.
    pub fn new(keys: Vec<Secret>) -> Option<Self> {
        (!keys.is_empty()).then(|| Self {
            ids: keys.iter().map(KeyId::of).collect(),
            keys,
            turn: AtomicUsize::new(0),
        })
    }

    /// A ring of one key.
    pub fn single(key: Secret) -> Self {
        Self {
            ids: vec![KeyId::of(&key)],
            keys: vec![key],
            turn: AtomicUsize::new(0),
        }
    }

    /// The [`KeyId`] of key number `index` (taken modulo the ring's length).
    pub fn id(&self, index: usize) -> KeyId {
        self.ids[index % self.ids.len()]
    }

    /// The key for the next request: each key in turn, starting with the first.
    pub fn next(&self) -> &Secret {
        // Only the spread matters, so a relaxed counter shared by all workers will do.
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        &self.keys[turn % self.keys.len()]
    }

    /// The key for the next request and its position, passing over those for which
    /// `skip` is true; when every key is skipped, the one whose turn it is.
    pub fn next_avoiding(&self, skip: impl Fn(usize) -> bool) -> (usize, &Secret) {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % self.keys.len();
        let index = (0..self.keys.len())
            .map(|step| (turn + step) % self.keys.len())
            .find(|&i| !skip(i))
            .unwrap_or(turn);
        (index, &self.keys[index])
    }

    /// All keys, in rotation order.
    pub fn keys(&self) -> &[Secret] {
        &self.keys
    }

    /// Number of keys (at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing({} keys)", self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[&str]) -> KeyRing {
        KeyRing::new(keys.iter().map(|k| Secret::new(*k)).collect()).unwrap()
    }

    #[test]
    fn keys_cooling_down_are_passed_over_while_another_remains() {
        let r = ring(&["sk-a", "sk-b", "sk-c"]);
        let turns: Vec<usize> = (0..4).map(|_| r.next_avoiding(|i| i == 1).0).collect();
        assert_eq!(turns, [0, 2, 2, 0]);
        assert_eq!(
            r.next_avoiding(|_| true).0,
            1,
            "all cooling: the turn's key"
        );
    }

    #[test]
    fn ring_hands_out_keys_round_robin_from_the_first() {
        let r = ring(&["sk-a", "sk-b", "sk-c"]);
        let turns: Vec<&str> = (0..7).map(|_| r.next().expose()).collect();
        assert_eq!(
            turns,
            ["sk-a", "sk-b", "sk-c", "sk-a", "sk-b", "sk-c", "sk-a"]
        );
    }

    #[test]
    fn empty_ring_cannot_be_built() {
        assert!(KeyRing::new(Vec::new()).is_none());
        assert_eq!(KeyRing::single(Secret::new("k")).len(), 1);
    }

    #[test]
    fn debug_shows_the_count_never_a_key() {
        let c = ProviderCredential::Static(ring(&["sk-live-1", "sk-live-2"]));
        let text = format!("{c:?}");
        assert!(text.contains("2 keys"), "{text}");
        assert!(!text.contains("sk-live"), "{text}");
    }

    #[test]
    fn only_static_credentials_yield_a_gateway_key() {
        assert!(ProviderCredential::None.next_static_key().is_none());
        assert!(ProviderCredential::CallerKey.next_static_key().is_none());
        let c = ProviderCredential::single(Secret::new("sk-one"));
        assert_eq!(c.next_static_key().unwrap().expose(), "sk-one");
        assert!(ProviderCredential::CallerKey.is_caller_key());
        assert!(!c.is_caller_key());
    }

    #[test]
    fn caller_key_marker_is_matched_in_any_case_and_trimmed() {
        assert!(is_caller_key_marker("!PASSTHRU"));
        assert!(is_caller_key_marker(" !passthru "));
        assert!(!is_caller_key_marker("PASSTHRU"));
        assert!(!is_caller_key_marker("sk-!PASSTHRU"));
    }
}
