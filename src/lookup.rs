//! Maps a request looks something up in: keys named by the config (key digests, key
//! and provider names, provider hosts, the models it knows) or made of those names
//! (limit subjects, their Redis keys, bounded `model` labels), hashed with foldhash
//! rather than the standard library's SipHash, which costs a few hundred instructions
//! per short key.
//!
//! Their entries come from the config, not from the caller: a caller can only look
//! up, and a lookup of a name that is not there cannot crowd the table. The hasher is
//! still seeded per process.

/// A map from config-named keys, looked up on the request path.
pub type LookupMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A set of config-named keys, looked up on the request path.
pub type LookupSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
