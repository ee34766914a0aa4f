//! The model directory behind `/v1/models`: every model the configured providers
//! serve, as `provider/model` ids, plus the aliases.
//!
//! A provider with a `models:` list is taken at its word; any other is asked for its
//! own list. Those answers are cached per provider instance, because a listing fans
//! out to every provider and clients tend to ask for it on every start.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use pingora_core::connectors::http::Connector;
use pingora_http::RequestHeader;
use serde_json::{json, Value};

use super::headers;
use super::upstream::{provider_peer, UpstreamResolver};
use crate::config::Config;
use crate::providers::{Provider, ProviderKind};

/// How long a provider's fetched model list is reused.
pub const MODEL_CACHE_TTL: Duration = Duration::from_secs(300);

/// How long one provider may take to answer (resolve, connect, headers and body).
pub const MODEL_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The `owned_by` of alias entries.
pub const ALIAS_OWNER: &str = "aurora";

/// A model list larger than this is refused rather than buffered.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Anthropic pages its model list (20 by default); 1000 is its largest page.
const ANTHROPIC_LIST_QUERY: &str = "?limit=1000";

/// One model the gateway can route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// `provider/model`, or the alias name.
    pub id: String,
    /// The provider instance name, or [`ALIAS_OWNER`] for aliases.
    pub owned_by: String,
}

/// Lists the models of all configured providers. Clones share one cache and one
/// connection pool.
#[derive(Clone)]
pub struct ModelDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    // Created on first use: building it loads the system trust roots, which a gateway
    // whose providers all have `models:` lists never needs.
    connector: OnceLock<Connector>,
    cache: Mutex<HashMap<CacheKey, CachedList>>,
    ttl: Duration,
    fetch_timeout: Duration,
}

/// Instance name and base URL: a reload that moves a provider must not reuse its list.
type CacheKey = (String, String);

struct CachedList {
    ids: Vec<String>,
    at: Instant,
}

impl ModelDirectory {
    /// A directory with the default cache lifetime and fetch timeout.
    pub fn new() -> Self {
        Self::with_limits(MODEL_CACHE_TTL, MODEL_FETCH_TIMEOUT)
    }

    /// A directory that keeps fetched lists for `cache_ttl` and gives each provider
    /// `fetch_timeout` to answer.
    pub fn with_limits(cache_ttl: Duration, fetch_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector: OnceLock::new(),
                cache: Mutex::new(HashMap::new()),
                ttl: cache_ttl,
                fetch_timeout,
            }),
        }
    }

    /// Every model of every configured provider with a usable key, plus the aliases,
    /// sorted by id. Providers without a `models:` list are asked concurrently; one that
    /// is down, slow or answers an error contributes nothing and is logged.
    pub async fn list(&self, config: &Config, resolver: &UpstreamResolver) -> Vec<ModelEntry> {
        let providers: Vec<&Arc<Provider>> = config
            .providers
            .configured()
            .filter(|p| !p.missing_key())
            .collect();
        let lookups = providers.iter().map(|p| async move {
            if !p.models.is_empty() {
                p.models.clone()
            } else if p.credential.is_passthru() {
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

    /// The provider's own list, from the cache when fresh; empty when it cannot be had.
    async fn fetched_ids(&self, provider: &Provider, resolver: &UpstreamResolver) -> Vec<String> {
        let key = (provider.name.clone(), provider.base.to_string());
        if let Some(ids) = self.cached(&key) {
            return ids;
        }
        let outcome =
            tokio::time::timeout(self.inner.fetch_timeout, self.fetch(provider, resolver)).await;
        match outcome {
            Ok(Ok(ids)) => {
                self.store(key, ids.clone());
                ids
            }
            Ok(Err(why)) => {
                log::warn!(
                    "model list of provider `{}` unavailable: {why}",
                    provider.name
                );
                Vec::new()
            }
            Err(_) => {
                log::warn!(
                    "model list of provider `{}` unavailable: no answer within {:?}",
                    provider.name,
                    self.inner.fetch_timeout
                );
                Vec::new()
            }
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Vec<String>> {
        let cache = self.inner.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|c| c.at.elapsed() < self.inner.ttl)
            .map(|c| c.ids.clone())
    }

    fn store(&self, key: CacheKey, ids: Vec<String>) {
        if let Ok(mut cache) = self.inner.cache.lock() {
            // Drop stale entries too, so providers removed by a reload do not linger.
            let ttl = self.inner.ttl;
            cache.retain(|_, c| c.at.elapsed() < ttl);
            cache.insert(
                key,
                CachedList {
                    ids,
                    at: Instant::now(),
                },
            );
        }
    }

    /// `GET {base path}/models` with the provider's credential. Error texts name what
    /// failed but never carry a header value.
    async fn fetch(
        &self,
        provider: &Provider,
        resolver: &UpstreamResolver,
    ) -> Result<Vec<String>, String> {
        let base = &provider.base;
        let addr = resolver
            .resolve(&base.host, base.port)
            .await
            .map_err(|e| e.message)?;
        let peer = provider_peer(provider, addr);
        let request = list_request(provider).map_err(|e| format!("cannot build request: {e}"))?;
        let connector = self.inner.connector.get_or_init(|| Connector::new(None));
        let (mut session, _reused) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("cannot connect to {base}: {e}"))?;
        session
            .write_request_header(Box::new(request))
            .await
            .map_err(|e| format!("cannot send request: {e}"))?;
        session
            .finish_request_body()
            .await
            .map_err(|e| format!("cannot send request: {e}"))?;
        let status = loop {
            session
                .read_response_header()
                .await
                .map_err(|e| format!("no response: {e}"))?;
            let status = session
                .response_header()
                .map(|h| h.status.as_u16())
                .ok_or_else(|| "no response header".to_string())?;
            // An HTTP/1 server may send informational answers before the real one.
            if status >= 200 {
                break status;
            }
        };
        if !(200..300).contains(&status) {
            return Err(format!("GET models answered HTTP {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("broken response body: {e}"))?
        {
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(format!("model list is larger than {MAX_LIST_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        connector
            .release_http_session(session, &peer, Some(provider.timeouts.idle))
            .await;
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
        let cached = self.inner.cache.lock().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("ModelDirectory")
            .field("ttl", &self.inner.ttl)
            .field("fetch_timeout", &self.inner.fetch_timeout)
            .field("cached_providers", &cached)
            .finish()
    }
}

/// The request for a provider's model list, with its credential and required headers.
fn list_request(provider: &Provider) -> pingora_core::Result<RequestHeader> {
    let query = if provider.kind == ProviderKind::Anthropic {
        ANTHROPIC_LIST_QUERY
    } else {
        ""
    };
    let path = format!("{}/models{query}", provider.base.path);
    let mut request = RequestHeader::build("GET", path.as_bytes(), None)?;
    request.insert_header(http::header::ACCEPT, "application/json")?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let key = provider.credential.next_static_key();
    headers::add_provider_headers(&mut request, provider, key, &request_id)?;
    Ok(request)
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
    use super::*;
    use crate::config::{build_config, EnvSnapshot};
    use crate::providers::{BaseUrl, ProviderCredential, Secret};

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
    fn anthropic_list_request_asks_for_a_full_page_with_its_headers() {
        let p = Provider {
            credential: ProviderCredential::single(Secret::new("sk-ant-test")),
            ..Provider::unconfigured(ProviderKind::Anthropic)
        };
        let r = list_request(&p).unwrap();
        assert_eq!(r.uri.to_string(), "/v1/models?limit=1000");
        assert_eq!(r.headers["x-api-key"], "sk-ant-test");
        assert_eq!(r.headers["anthropic-version"], headers::ANTHROPIC_VERSION);
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
        let config = build_config(Some(yaml), None, &EnvSnapshot::default()).unwrap();
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
        assert!(dir.inner.connector.get().is_none());
    }

    #[tokio::test]
    async fn passthru_providers_are_listed_from_config_and_never_asked() {
        let yaml = "
providers:
  openai: {api_key: '!PASSTHRU', base_url: 'http://127.0.0.1:9/v1'}
  groq: {api_key: '!PASSTHRU', base_url: 'http://127.0.0.1:9/v1', models: [llama-3.1-8b]}
";
        let config = build_config(Some(yaml), None, &EnvSnapshot::default()).unwrap();
        let dir = ModelDirectory::new();
        let entries = dir.list(&config, &UpstreamResolver::default()).await;
        assert_eq!(entries, vec![entry("groq/llama-3.1-8b", "groq")]);
        assert!(dir.inner.connector.get().is_none());
    }
}
