//! The model directory behind `/v1/models`: every model the configured providers
//! serve, as `provider/model` ids, plus the aliases.
//!
//! A provider with a `models:` list is taken at its word; any other is asked for its
//! own list. Those answers, failures included, are cached per provider instance,
//! because a listing fans out to every provider and clients tend to ask for it on every
//! start. A listing waits for the providers only so long: one still busy then goes on
//! in the background, and the listing answers with what is known.

mod list_cache;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use pingora_core::connectors::http::Connector;
use pingora_http::RequestHeader;
use serde_json::{json, Value};

use super::provider_fetch;
use super::upstream::UpstreamResolver;
use crate::config::Config;
use crate::providers::Provider;
use list_cache::{CacheKey, ListCache, Outcome, Plan, Ticket};

/// How long a provider's fetched model list is reused.
pub const MODEL_CACHE_TTL: Duration = Duration::from_secs(300);

/// How long a provider that failed to list its models is left out before it is asked
/// again.
pub const MODEL_FAILURE_TTL: Duration = Duration::from_secs(300);

/// How long one provider may take to answer (connect, headers and body); the fetch
/// goes on in the background after the listing has answered.
pub const MODEL_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a listing waits for providers before answering with what is known.
pub const MODEL_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The `owned_by` of alias entries.
pub const ALIAS_OWNER: &str = "aurora";

/// A model list larger than this is refused rather than buffered.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// One model the gateway can route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// `provider/model`, or the alias name.
    pub id: String,
    /// The provider instance name, or [`ALIAS_OWNER`] for aliases.
    pub owned_by: String,
}

/// The periods the directory works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryLimits {
    /// How long a fetched list is reused.
    pub list_ttl: Duration,
    /// How long a failed fetch (an error, a timeout, an answer that is no model list)
    /// is remembered: the provider contributes nothing and is not asked meanwhile.
    pub failure_ttl: Duration,
    /// How long a provider may take to answer once its host is resolved (connect,
    /// headers and body).
    pub fetch_timeout: Duration,
    /// How long a listing waits for a fetch, counted from the fetch's start.
    pub answer_within: Duration,
}

impl Default for DirectoryLimits {
    fn default() -> Self {
        Self {
            list_ttl: MODEL_CACHE_TTL,
            failure_ttl: MODEL_FAILURE_TTL,
            fetch_timeout: MODEL_FETCH_TIMEOUT,
            answer_within: MODEL_ANSWER_WITHIN,
        }
    }
}

/// Lists the models of all configured providers. Clones share one cache and one
/// connection pool.
#[derive(Clone)]
pub struct ModelDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    // Built with the directory, at startup: building it reads the system trust store,
    // which must not happen on a worker thread serving a request.
    connector: Connector,
    cache: ListCache,
    limits: DirectoryLimits,
}

/// Builds the connector the directory fetches with.
fn build_connector() -> Connector {
    #[cfg(test)]
    tests::CONNECTORS_BUILT.with(|n| n.set(n.get() + 1));
    Connector::new(None)
}

impl ModelDirectory {
    /// A directory with the default periods.
    pub fn new() -> Self {
        Self::with_limits(DirectoryLimits::default())
    }

    /// A directory working with `limits`.
    pub fn with_limits(limits: DirectoryLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector: build_connector(),
                cache: ListCache::new(limits.list_ttl, limits.failure_ttl, limits.answer_within),
                limits,
            }),
        }
    }

    /// Every model of every configured provider with a usable key, plus the aliases,
    /// sorted by id. Providers without a `models:` list are asked concurrently, and
    /// waited for at most [`DirectoryLimits::answer_within`]: one that is down, slow or
    /// answers an error contributes its last list, or nothing, and is logged.
    pub async fn list(&self, config: &Config, resolver: &UpstreamResolver) -> Vec<ModelEntry> {
        let providers: Vec<&Arc<Provider>> = config
            .providers
            .configured()
            .filter(|p| !p.missing_key())
            .collect();
        let lookups = providers.iter().map(|p| async move {
            if !p.models.is_empty() {
                p.models.clone()
            } else if p.credential.is_caller_key() {
                // The gateway holds no key to ask with; only a `models:` list can say.
                Vec::new()
            } else {
                self.fetched_ids(p, resolver).await
            }
        });
        let per_provider = join_all(lookups).await;
        let mut entries: Vec<ModelEntry> = providers
            .iter()
            .zip(per_provider)
            .flat_map(|(p, ids)| {
                ids.into_iter().map(move |id| ModelEntry {
                    id: format!("{}/{id}", p.name),
                    owned_by: p.name.clone(),
                })
            })
            .chain(config.models.aliases.keys().map(|alias| ModelEntry {
                id: alias.clone(),
                owned_by: ALIAS_OWNER.to_string(),
            }))
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries.dedup_by(|a, b| a.id == b.id);
        entries
    }

    /// The provider's own list as far as it is known within the answer budget.
    async fn fetched_ids(
        &self,
        provider: &Arc<Provider>,
        resolver: &UpstreamResolver,
    ) -> Vec<String> {
        let key: CacheKey = (
            provider.name.clone(),
            provider.base.to_string(),
            provider.credential.key_ids().to_vec(),
        );
        let cache = &self.inner.cache;
        let waiter = match cache.plan(&key, Instant::now()) {
            Plan::Known(ids) => return ids,
            Plan::Wait(waiter) => waiter,
            Plan::Fetch(ticket, waiter) => {
                // The resolver is the proxy's, borrowed: only the fetch proper can outlive
                // this listing, so the name must resolve within its budget.
                match tokio::time::timeout_at(
                    waiter.until().into(),
                    resolver.resolve_base(&provider.base, 0),
                )
                .await
                {
                    Ok(Ok(addr)) => {
                        let directory = self.clone();
                        let provider = Arc::clone(provider);
                        let key = key.clone();
                        tokio::spawn(async move {
                            directory.refresh(&provider, addr, key, ticket).await;
                        });
                    }
                    Ok(Err(e)) => self.settle_failure(&key, provider, &e.message, ticket),
                    Err(_) => self.settle_failure(
                        &key,
                        provider,
                        &format!(
                            "host `{}` not resolved within {:?}",
                            provider.base.host, self.inner.limits.answer_within
                        ),
                        ticket,
                    ),
                }
                waiter
            }
        };
        waiter.wait().await;
        cache.current(&key, Instant::now())
    }

    /// Fetches the provider's list within the fetch timeout and settles the outcome;
    /// runs on its own task, so it ends even when the listing has answered already.
    async fn refresh(&self, provider: &Provider, addr: SocketAddr, key: CacheKey, ticket: Ticket) {
        let timeout = self.inner.limits.fetch_timeout;
        match tokio::time::timeout(timeout, self.fetch(provider, addr)).await {
            Ok(Ok(ids)) => {
                self.inner
                    .cache
                    .settle(&key, Outcome::Listed(ids), Instant::now());
                drop(ticket);
            }
            Ok(Err(why)) => self.settle_failure(&key, provider, &why, ticket),
            Err(_) => self.settle_failure(
                &key,
                provider,
                &format!("no answer within {timeout:?}"),
                ticket,
            ),
        }
    }

    fn settle_failure(&self, key: &CacheKey, provider: &Provider, why: &str, ticket: Ticket) {
        log::warn!(
            "model list of provider `{}` unavailable: {why}; left out for {:?}",
            provider.name,
            self.inner.limits.failure_ttl
        );
        self.inner
            .cache
            .settle(key, Outcome::Failed, Instant::now());
        // Waiters wake now and find the outcome.
        drop(ticket);
    }

    /// `GET {base path}/models` with the provider's credential. Error texts name what
    /// failed but never carry a header value.
    async fn fetch(&self, provider: &Provider, addr: SocketAddr) -> Result<Vec<String>, String> {
        let request = list_request(provider).map_err(|e| format!("cannot build request: {e}"))?;
        let connector = &self.inner.connector;
        let (status, body) = provider_fetch::fetch_whole(
            connector,
            provider,
            addr,
            request,
            ("model list", MAX_LIST_BYTES),
        )
        .await?;
        if !(200..300).contains(&status) {
            return Err(format!("GET models answered HTTP {status}"));
        }
        parse_model_ids(&body)
    }
}

impl Default for ModelDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ModelDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelDirectory")
            .field("limits", &self.inner.limits)
            .field("cached_providers", &self.inner.cache.len())
            .finish()
    }
}

/// The request for a provider's model list, with its credential and required headers.
fn list_request(provider: &Provider) -> pingora_core::Result<RequestHeader> {
    let query = provider.kind.facts().models_list_query;
    let path = format!("{}/models{query}", provider.api_path());
    let json = (
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    let key = provider.credential.next_static_key();
    provider_fetch::provider_get(provider, &path, key, &[json])
}

/// The `id`s of `{"data":[{"id":…},…]}`, the shape both OpenAI and Anthropic use.
fn parse_model_ids(body: &[u8]) -> Result<Vec<String>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("model list is not JSON: {e}"))?;
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| "model list has no `data` array".to_string())?;
    Ok(data
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect())
}

/// The OpenAI `GET /v1/models` body:
/// `{"object":"list","data":[{"id","object":"model","created","owned_by"},…]}`.
pub fn openai_list_body(entries: &[ModelEntry], created: u64) -> Vec<u8> {
    let data: Vec<Value> = entries.iter().map(|e| model_object(e, created)).collect();
    serde_json::to_vec(&json!({ "object": "list", "data": data })).unwrap_or_default()
}

/// The OpenAI `GET /v1/models/{id}` body: one model object.
pub fn openai_model_body(entry: &ModelEntry, created: u64) -> Vec<u8> {
    serde_json::to_vec(&model_object(entry, created)).unwrap_or_default()
}

fn model_object(entry: &ModelEntry, created: u64) -> Value {
    json!({
        "id": entry.id,
        "object": "model",
        "created": created,
        "owned_by": entry.owned_by,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::config::{build_config, EnvSnapshot};
    use crate::providers::ProviderKind;
    use crate::providers::{BaseUrl, ProviderCredential, Secret};

    thread_local! {
        /// Connectors built on this thread; a current-thread runtime keeps a test's
        /// directory, listings and fetch tasks all on the test's thread.
        pub(super) static CONNECTORS_BUILT: Cell<usize> = const { Cell::new(0) };
    }

    fn connectors_built() -> usize {
        CONNECTORS_BUILT.with(Cell::get)
    }

    fn entry(id: &str, owned_by: &str) -> ModelEntry {
        ModelEntry {
            id: id.into(),
            owned_by: owned_by.into(),
        }
    }

    #[test]
    fn list_body_has_the_openai_shape() {
        let body = openai_list_body(&[entry("groq/llama", "groq"), entry("fast", "aurora")], 7);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["data"][0],
            json!({"id": "groq/llama", "object": "model", "created": 7, "owned_by": "groq"})
        );
        assert_eq!(v["data"][1]["owned_by"], "aurora");
    }

    #[test]
    fn empty_list_body_still_has_a_data_array() {
        let v: Value = serde_json::from_slice(&openai_list_body(&[], 1)).unwrap();
        assert_eq!(v, json!({"object": "list", "data": []}));
    }

    #[test]
    fn model_body_is_one_model_object() {
        let v: Value = serde_json::from_slice(&openai_model_body(&entry("a/b", "a"), 42)).unwrap();
        assert_eq!(
            v,
            json!({"id": "a/b", "object": "model", "created": 42, "owned_by": "a"})
        );
    }

    #[test]
    fn model_ids_are_read_from_the_data_array() {
        let ids = parse_model_ids(
            br#"{"object":"list","data":[{"id":"gpt-4o"},{"name":"no-id"},{"id":""},{"id":"o3"}],"has_more":false}"#,
        )
        .unwrap();
        assert_eq!(ids, vec!["gpt-4o", "o3"]);
    }

    #[test]
    fn model_lists_without_data_or_json_are_refused() {
        assert!(parse_model_ids(b"<html>").is_err());
        assert!(parse_model_ids(br#"{"models":[]}"#).is_err());
    }

    #[test]
    fn list_request_uses_the_base_path_and_provider_credential() {
        let p = Provider {
            credential: ProviderCredential::single(Secret::new("sk-test")),
            base: BaseUrl::parse("http://127.0.0.1:9/api/v1").unwrap(),
            ..Provider::unconfigured(ProviderKind::OpenRouter)
        };
        let r = list_request(&p).unwrap();
        assert_eq!(r.uri.to_string(), "/api/v1/models");
        assert_eq!(r.headers["authorization"], "Bearer sk-test");
        assert_eq!(r.headers["host"], "127.0.0.1:9");
    }

    #[test]
    fn a_gemini_instance_at_googles_root_is_asked_its_openai_compatible_list() {
        let p = Provider {
            credential: ProviderCredential::single(Secret::new("AIza-test")),
            base: BaseUrl::parse("https://generativelanguage.googleapis.com").unwrap(),
            ..Provider::unconfigured(ProviderKind::Gemini)
        };
        let r = list_request(&p).unwrap();
        assert_eq!(r.uri.to_string(), "/v1beta/openai/models");
    }

    #[test]
    fn anthropic_list_request_asks_for_a_full_page_with_its_headers() {
        let p = Provider {
            credential: ProviderCredential::single(Secret::new("sk-ant-test")),
            ..Provider::unconfigured(ProviderKind::Anthropic)
        };
        let r = list_request(&p).unwrap();
        assert_eq!(r.uri.to_string(), "/v1/models?limit=1000");
        assert_eq!(r.headers["x-api-key"], "sk-ant-test");
        assert_eq!(
            r.headers["anthropic-version"],
            crate::providers::ANTHROPIC_VERSION
        );
        assert!(!r.headers.contains_key("authorization"));
    }

    #[tokio::test]
    async fn configured_lists_and_aliases_need_no_network() {
        let yaml = "
models:
  aliases: {fast: groq/llama-3.1-8b}
providers:
  groq: {api_key: k, base_url: 'http://127.0.0.1:9/v1', models: [llama-3.1-8b, mixtral]}
  openai: {base_url: 'http://127.0.0.1:9/v1', models: [gpt-4o]}
";
        let config = build_config(Some(yaml), None, &EnvSnapshot::loopback()).unwrap();
        let dir = ModelDirectory::new();
        let entries = dir.list(&config, &UpstreamResolver::default()).await;
        // `openai` has no key, so it is left out even with a list.
        assert_eq!(
            entries,
            vec![
                entry("fast", ALIAS_OWNER),
                entry("groq/llama-3.1-8b", "groq"),
                entry("groq/mixtral", "groq"),
            ]
        );
        // Nobody was asked: an attempt would have left an outcome in the cache.
        assert_eq!(dir.inner.cache.len(), 0);
    }

    #[tokio::test]
    async fn caller_key_providers_are_listed_from_config_and_never_asked() {
        let yaml = "
providers:
  openai: {api_key: '!PASSTHRU', base_url: 'http://127.0.0.1:9/v1'}
  groq: {api_key: '!PASSTHRU', base_url: 'http://127.0.0.1:9/v1', models: [llama-3.1-8b]}
";
        let config = build_config(Some(yaml), None, &EnvSnapshot::loopback()).unwrap();
        let dir = ModelDirectory::new();
        let entries = dir.list(&config, &UpstreamResolver::default()).await;
        assert_eq!(entries, vec![entry("groq/llama-3.1-8b", "groq")]);
        // Nobody was asked: an attempt would have left an outcome in the cache.
        assert_eq!(dir.inner.cache.len(), 0);
    }

    #[tokio::test]
    async fn the_connector_is_built_with_the_directory_not_by_the_first_fetch() {
        let before = connectors_built();
        let dir = ModelDirectory::with_limits(DirectoryLimits {
            fetch_timeout: Duration::from_millis(500),
            ..DirectoryLimits::default()
        });
        assert_eq!(connectors_built(), before + 1);
        // A provider that must be asked (on a closed port: the fetch fails, but only
        // after it has used the connector).
        let yaml = "providers:\n  openai: {api_key: k, base_url: 'http://127.0.0.1:9/v1'}\n";
        let config = build_config(Some(yaml), None, &EnvSnapshot::loopback()).unwrap();
        assert!(dir
            .list(&config, &UpstreamResolver::default())
            .await
            .is_empty());
        assert_eq!(dir.inner.cache.len(), 1);
        assert_eq!(connectors_built(), before + 1);
    }
}
