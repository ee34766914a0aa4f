//! Work a replica polls, as it is written for the others (`limits::SharedWatches`):
//! what it is, where it is read and with which of the config's keys, whom its usage
//! is charged to. Never a credential: a provider key is named by a digest of it, and
//! work started with a caller's own key is not written (only that caller holds it).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::watch_list::Watched;
use super::Start;
use crate::auth::Caller;
use crate::config::Config;
use crate::metrics::deferred_answer::{ApartKind, StartedApart};
use crate::metrics::usage::Usage;
use crate::providers::{ProviderCredential, Secret};
use crate::proxy::limit_check::StartedBy;

/// The name work is known by among replicas: its kind and id, as a delete names it.
pub fn shared_name(kind: ApartKind, id: &str) -> String {
    format!("{}:{id}", kind_tag(kind))
}

fn kind_tag(kind: ApartKind) -> &'static str {
    match kind {
        ApartKind::Response => "response",
        ApartKind::Batch => "batch",
        ApartKind::MessageBatch => "message_batch",
        ApartKind::GeminiBatch => "gemini_batch",
    }
}

fn kind_of(tag: &str) -> Option<ApartKind> {
    Some(match tag {
        "response" => ApartKind::Response,
        "batch" => ApartKind::Batch,
        "message_batch" => ApartKind::MessageBatch,
        "gemini_batch" => ApartKind::GeminiBatch,
        _ => return None,
    })
}

/// A caller by a name that tells its kind: `master`, `open`, or `key:NAME`; as the
/// watch list counts each caller's share, and as shared work names whom it is charged
/// to.
pub(super) fn caller_name(caller: &Caller) -> String {
    match caller {
        Caller::Master => "master".to_string(),
        Caller::Open => "open".to_string(),
        Caller::Managed(name) => format!("key:{name}"),
    }
}

/// The caller [`caller_name`] names.
fn caller_named(name: &str) -> Option<Caller> {
    Some(match name {
        "master" => Caller::Master,
        "open" => Caller::Open,
        other => Caller::Managed(Arc::from(other.strip_prefix("key:")?)),
    })
}

/// A digest of a provider key, to find it again among the config's keys.
fn key_digest(key: &Secret) -> String {
    hex::encode(&crate::auth::sha256(key.expose().as_bytes())[..8])
}

/// One piece of watched work, as replicas share it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchRecord {
    kind: String,
    id: String,
    provider: String,
    path: String,
    query: Option<String>,
    /// The client's scope headers, sent again with each poll.
    scope: Vec<(String, String)>,
    /// `master`, `open`, or `key:NAME`.
    caller: String,
    /// The digest of the provider key that started it (none for a provider without).
    key: Option<String>,
    /// What the call was charged of it already: input, output, cache read, cache
    /// write, reasoning.
    charged: [u64; 5],
    /// The web searches the call was charged already (none in records written before
    /// searches were counted).
    #[serde(default)]
    searches_charged: u64,
    /// The cost the provider reported of what the call was charged, in billionths of
    /// a dollar (none in records written before it was kept).
    #[serde(default)]
    cost_charged_nanos: u64,
    /// When it is given up, in Unix seconds.
    until: u64,
    /// The wait before the poll after the next, in milliseconds.
    wait_ms: u64,
}

impl WatchRecord {
    /// `watched` as shared, at `now` (`now_unix` in Unix seconds); `None` for work
    /// started with a caller's own key.
    pub fn of(watched: &Watched, now: Instant, now_unix: u64) -> Option<Self> {
        let start = &watched.start;
        if start.by.brought_key {
            return None;
        }
        let caller = caller_name(&start.by.caller);
        let scope = start
            .scope
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
            .collect();
        let c = &start.charged;
        Some(Self {
            kind: kind_tag(start.started.kind).to_string(),
            id: start.started.id.clone(),
            provider: start.by.provider.to_string(),
            path: watched.path.clone(),
            // A key in the query would be written for every replica to read; the
            // provider key goes in a header with each poll.
            query: watched
                .query
                .as_deref()
                .and_then(|q| crate::proxy::client_query::upstream_query(q, false))
                .map(Cow::into_owned),
            scope,
            caller,
            key: watched.key.as_ref().map(key_digest),
            charged: [c.input, c.output, c.cache_read, c.cache_write, c.reasoning],
            searches_charged: c.web_searches,
            cost_charged_nanos: c.cost_nanos,
            until: now_unix + watched.until.saturating_duration_since(now).as_secs(),
            wait_ms: u64::try_from(watched.wait.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The work again, polled with `config`'s provider of its name and the key of its
    /// digest (when the config no longer holds that key, none: the keys it holds are
    /// tried once the provider refuses, see `rotated_in`).
    pub fn watched(
        self,
        config: &Config,
        now: Instant,
        now_unix: u64,
    ) -> Result<Watched, NotPolled> {
        let kind = kind_of(&self.kind).ok_or(NotPolled::GivenUp)?;
        if self.until <= now_unix {
            return Err(NotPolled::GivenUp);
        }
        let provider = config
            .providers
            .configured_named(&self.provider)
            .ok_or(NotPolled::NotHere)?;
        let provider = Arc::clone(provider);
        let key = match &provider.credential {
            // A key the config no longer holds is none: the provider refuses the poll,
            // and the keys configured now are tried in turn, as for a key rotated out
            // under this replica.
            ProviderCredential::Static(ring) => {
                let digest = self.key.as_deref();
                ring.keys()
                    .iter()
                    .find(|k| Some(key_digest(k).as_str()) == digest)
                    .cloned()
            }
            ProviderCredential::None => None,
            ProviderCredential::CallerKey => return Err(NotPolled::NotHere),
        };
        let caller = caller_named(&self.caller).ok_or(NotPolled::GivenUp)?;
        let scope = self
            .scope
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::try_from(name.as_str()).ok()?,
                    HeaderValue::try_from(value.as_str()).ok()?,
                ))
            })
            .collect();
        let [input, output, cache_read, cache_write, reasoning] = self.charged;
        let start = Start {
            started: StartedApart { id: self.id, kind },
            by: StartedBy {
                caller,
                provider: Arc::from(self.provider.as_str()),
                brought_key: false,
            },
            scope,
            charged: Usage {
                input,
                output,
                cache_read,
                cache_write,
                reasoning,
                web_searches: self.searches_charged,
                cost_nanos: self.cost_charged_nanos,
            },
        };
        Ok(Watched {
            start,
            provider,
            path: self.path,
            query: self.query,
            key,
            until: now + Duration::from_secs(self.until - now_unix),
            wait: Duration::from_millis(self.wait_ms),
        })
    }
}

/// Why shared work is not polled here.
#[derive(Debug, PartialEq)]
pub enum NotPolled {
    /// Past its time, or not readable: no replica polls it.
    GivenUp,
    /// This replica's config does not name its provider (or takes callers' own keys
    /// for it): another replica's may.
    NotHere,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build_config, EnvSnapshot};

    fn config(keys: &str) -> Config {
        let yaml = format!(
            "server:\n  listen: 127.0.0.1:8080\nproviders:\n  openai:\n    api_keys: {keys}\n    base_url: http://127.0.0.1:9/v1\n"
        );
        build_config(
            Some(&yaml),
            None,
            &EnvSnapshot::from_pairs(Vec::<(String, String)>::new()),
        )
        .unwrap()
    }

    /// Work started at `config`'s `openai` with its key `key`, by `caller`.
    fn watched(config: &Config, key: usize, caller: Caller, brought_key: bool) -> Watched {
        let provider = Arc::clone(config.providers.configured_named("openai").unwrap());
        let key = match &provider.credential {
            ProviderCredential::Static(ring) => ring.keys().get(key).cloned(),
            _ => None,
        };
        Watched {
            start: Start {
                started: StartedApart {
                    id: "batch_1".into(),
                    kind: ApartKind::Batch,
                },
                by: StartedBy {
                    caller,
                    provider: Arc::from("openai"),
                    brought_key,
                },
                scope: vec![(
                    HeaderName::from_static("openai-project"),
                    HeaderValue::from_static("proj_1"),
                )],
                charged: Usage {
                    input: 3,
                    output: 2,
                    web_searches: 1,
                    cost_nanos: 7,
                    ..Usage::default()
                },
            },
            provider,
            path: "/v1/batches/batch_1".into(),
            query: Some("api-version=1".into()),
            key,
            until: Instant::now() + Duration::from_secs(3600),
            wait: Duration::from_secs(40),
        }
    }

    fn same(a: &Watched, b: &Watched) {
        assert_eq!(a.start.started, b.start.started);
        assert_eq!(a.start.by.caller, b.start.by.caller);
        assert_eq!(&*a.start.by.provider, &*b.start.by.provider);
        assert_eq!(a.start.scope, b.start.scope);
        assert_eq!(a.start.charged, b.start.charged);
        assert_eq!((&a.path, &a.query, a.wait), (&b.path, &b.query, b.wait));
        assert_eq!(
            a.key.as_ref().map(Secret::expose),
            b.key.as_ref().map(Secret::expose)
        );
    }

    #[test]
    fn work_shared_is_polled_again_with_the_key_that_started_it_and_never_carries_it() {
        let config = config("[sk-first-0123456789, sk-second-0123456789]");
        let (now, now_unix) = (Instant::now(), 1_800_000_000);
        for caller in [
            Caller::Managed(Arc::from("team-a")),
            Caller::Master,
            Caller::Open,
        ] {
            let work = watched(&config, 1, caller, false);
            let record = WatchRecord::of(&work, now, now_unix).unwrap();
            let text = serde_json::to_string(&record).unwrap();
            assert!(!text.contains("sk-"), "{text}");
            let back: WatchRecord = serde_json::from_str(&text).unwrap();
            let again = back.watched(&config, now, now_unix).unwrap();
            same(&work, &again);
            let left = again.until.saturating_duration_since(now).as_secs();
            assert!((3599..=3600).contains(&left), "{left}");
        }
        assert_eq!(shared_name(ApartKind::Batch, "batch_1"), "batch:batch_1");
    }

    #[test]
    fn work_whose_key_left_the_config_is_polled_with_those_it_holds_and_work_past_its_time_not_at_all(
    ) {
        let old = config("[sk-first-0123456789, sk-second-0123456789]");
        let (now, now_unix) = (Instant::now(), 1_800_000_000);
        let work = watched(&old, 1, Caller::Master, false);
        let record = WatchRecord::of(&work, now, now_unix).unwrap();
        let rotated = config("[sk-third-0123456789, sk-fourth-0123456789]");
        let again = record.clone().watched(&rotated, now, now_unix).unwrap();
        assert!(again.key.is_none());
        // Refused without it, every key configured now is tried in turn.
        let tried: Vec<_> = super::super::rotated_in(&rotated, &again)
            .iter()
            .map(|k| k.expose().to_string())
            .collect();
        assert_eq!(tried, ["sk-third-0123456789", "sk-fourth-0123456789"]);
        assert_eq!(
            record.clone().watched(&old, now, now_unix + 3600).err(),
            Some(NotPolled::GivenUp)
        );
        let without = build_config(
            None,
            None,
            &EnvSnapshot::from_pairs(Vec::<(String, String)>::new()),
        )
        .unwrap();
        assert_eq!(
            record.watched(&without, now, now_unix).err(),
            Some(NotPolled::NotHere)
        );
    }

    #[test]
    fn a_credential_in_the_calls_query_is_not_shared() {
        let config = config("[sk-first-0123456789]");
        let mut work = watched(&config, 0, Caller::Master, false);
        for (query, shared) in [
            ("api-version=1&key=AIza-secret", Some("api-version=1")),
            ("API_KEY=secret&beta=true&", Some("beta=true")),
            ("key=AIza-secret", None),
            ("monkey=1", Some("monkey=1")),
        ] {
            work.query = Some(query.into());
            let record = WatchRecord::of(&work, Instant::now(), 1_800_000_000).unwrap();
            assert_eq!(record.query.as_deref(), shared, "{query}");
        }
    }

    #[test]
    fn work_started_with_a_callers_own_key_is_not_shared() {
        let config = config("[sk-first-0123456789]");
        let work = watched(&config, 0, Caller::Open, true);
        assert!(WatchRecord::of(&work, Instant::now(), 1_800_000_000).is_none());
    }
}
