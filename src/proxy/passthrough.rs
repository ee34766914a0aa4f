//! `/p/{provider}/{endpoint}`: parsing and checking the client's path so it can only
//! ever address a path below the provider's base URL.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::GatewayError;
use crate::metrics::usage::ModelWork;
use crate::providers::{ProviderCatalogue, ProviderKind, WireFormat};

/// Path prefix of the passthrough routes.
pub const PASSTHROUGH_PREFIX: &str = "/p/";

/// Characters re-encoded when the decoded endpoint is written upstream: everything a
/// path may not hold literally. `/` stays, so `%2F` from the client becomes a separator.
const PATH_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']');

/// The `/p/{provider}` of a client's passthrough `path`, the provider as written.
pub fn client_prefix(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(PASSTHROUGH_PREFIX)?;
    let name = rest.split('/').next().filter(|n| !n.is_empty())?;
    Some(&path[..PASSTHROUGH_PREFIX.len() + name.len()])
}

/// The header every call to Anthropic's own API carries (its SDKs always send it);
/// its OpenAI-compatible endpoint, called with OpenAI's SDKs, does without.
const ANTHROPIC_VERSION_HEADER: http::HeaderName =
    http::HeaderName::from_static("anthropic-version");

/// The envelope of the errors the gateway raises itself on a request to `path` with
/// `headers`: on `/p/{provider}` Anthropic's when the client speaks Anthropic's API, as
/// its `anthropic-version` says, to a provider that does too (its configured format,
/// else a built-in type's own) or at an OpenAI-format server's Anthropic-compatible
/// Messages endpoint (vLLM's and Ollama's `v1/messages`, DeepSeek's and Moonshot's
/// `anthropic/v1/messages`), so that an Anthropic SDK raises its own typed errors even
/// for a refused key; OpenAI's otherwise, and on any other path.
pub fn error_format(
    path: &str,
    headers: &http::HeaderMap,
    providers: &ProviderCatalogue,
) -> WireFormat {
    // The header first: most requests lack it, and then no provider is looked up.
    if !headers.contains_key(ANTHROPIC_VERSION_HEADER) {
        return WireFormat::OpenAi;
    }
    let Some(name) = named_provider(path) else {
        return WireFormat::OpenAi;
    };
    let format = match providers.find(&name) {
        Some(provider) => Some(provider.format),
        // Not configured: its refusal says how to configure it, to the client of its type.
        None => ProviderKind::from_name(&name).map(|kind| kind.facts().wire_format),
    };
    if format == Some(WireFormat::Anthropic) || is_messages_call(path) {
        WireFormat::Anthropic
    } else {
        WireFormat::OpenAi
    }
}

/// Whether `path` ends at Anthropic's Messages API (`…/messages`, or its
/// `…/messages/count_tokens`), not at a message of an OpenAI Assistants thread
/// (`threads/{id}/messages`).
fn is_messages_call(path: &str) -> bool {
    let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
    let mut last = segments.next();
    if last.is_some_and(|s| s.eq_ignore_ascii_case("count_tokens")) {
        last = segments.next();
    }
    // A thread's messages are told apart as the meter tells them.
    last.is_some_and(|s| {
        s.eq_ignore_ascii_case("messages") && model_work_of(s, segments.nth(1)).is_some()
    })
}

/// The provider a passthrough `path` names (`/p/{provider}/…`), its escapes decoded
/// as the route decodes them; `None` for any other path.
fn named_provider(path: &str) -> Option<Cow<'_, str>> {
    let prefix = client_prefix(path)?;
    percent_decode_str(&prefix[PASSTHROUGH_PREFIX.len()..])
        .decode_utf8()
        .ok()
}

/// The last segments of the endpoints that have a model generate: OpenAI's Chat
/// Completions, legacy Completions and Responses (and a conversation compacted,
/// `responses/compact`), Anthropic's Messages, and Ollama's own `api/generate` and
/// `api/chat`.
const GENERATING_ENDPOINTS: [&str; 6] = [
    "completions",
    "responses",
    "compact",
    "messages",
    "generate",
    "chat",
];

/// The last segments of the endpoints that have a model embed: OpenAI's Embeddings
/// and Ollama's `api/embed` and `api/embeddings`.
const EMBEDDING_ENDPOINTS: [&str; 2] = ["embeddings", "embed"];

/// The methods of Gemini's model endpoints (`models/{model}:generateContent`) that
/// have the model generate.
const GENERATING_METHODS: [&str; 2] = ["generateContent", "streamGenerateContent"];

/// The methods of Gemini's model endpoints that have the model embed.
const EMBEDDING_METHODS: [&str; 2] = ["embedContent", "batchEmbedContents"];

/// What a `POST` to `endpoint` has a model do, which the provider bills once it has
/// the call: its last segment names such an endpoint or method (case ignored, empty
/// segments skipped). `None` for counting tokens, batches, files and the like.
pub fn model_work(endpoint: &str) -> Option<ModelWork> {
    let mut segments = endpoint.rsplit('/').filter(|s| !s.is_empty());
    let last = segments.next()?;
    model_work_of(last, segments.nth(1))
}

/// [`model_work`] of an endpoint whose last segment is `last`, the segment two before
/// it `third_last`.
pub fn model_work_of(last: &str, third_last: Option<&str>) -> Option<ModelWork> {
    if last.eq_ignore_ascii_case("messages")
        && third_last.is_some_and(|s| s.eq_ignore_ascii_case("threads"))
    {
        // OpenAI's Assistants: a message added to a thread, which no model reads yet.
        return None;
    }
    let (generating, embedding, name) = match gemini_method(last) {
        Some(method) => (&GENERATING_METHODS[..], &EMBEDDING_METHODS[..], method),
        None => (&GENERATING_ENDPOINTS[..], &EMBEDDING_ENDPOINTS[..], last),
    };
    let named = |names: &[&str]| names.iter().any(|n| named_as(name, n));
    if named(generating) {
        Some(ModelWork::Generates)
    } else if named(embedding) {
        Some(ModelWork::Embeds)
    } else {
        None
    }
}

/// Whether `segment` is `name`, case ignored. Written as `name` is, as most paths
/// are, it is told by one comparison rather than byte by byte.
pub fn named_as(segment: &str, name: &str) -> bool {
    segment == name || segment.eq_ignore_ascii_case(name)
}

/// The method of a Gemini segment (`{model}:{method}`, after its last colon).
pub fn gemini_method(segment: &str) -> Option<&str> {
    let colon = segment.bytes().rposition(|b| b == b':')?;
    // Past an ASCII colon: a boundary.
    segment.get(colon + 1..)
}

/// What follows `realtime/` in the endpoints that mint a Realtime session's client
/// secret (`client_secrets`; the beta's `sessions` and `transcription_sessions`) or
/// start a call whose media goes to the provider directly (`calls`: WebRTC, SIP);
/// Azure's are below `realtimeapi/`.
const REALTIME_SESSION_STARTS: [&str; 4] = [
    "client_secrets",
    "sessions",
    "transcription_sessions",
    "calls",
];

/// Whether a `POST` to `endpoint` hands the client a credential it then uses at the
/// provider directly, or starts work whose traffic never passes the gateway: OpenAI's
/// (and xAI's) Realtime client secrets, sessions and calls, ChatKit's sessions, and
/// Gemini's Live API tokens (`auth_tokens`). What is done with it escapes every limit
/// the gateway holds (case ignored, empty segments skipped).
pub fn mints_a_credential(endpoint: &str) -> bool {
    let mut before: &[u8] = b"";
    for segment in endpoint.as_bytes().split(|&b| b == b'/') {
        if segment.is_empty() {
            continue;
        }
        if mints_after(before, segment) {
            return true;
        }
        before = segment;
    }
    false
}

/// Whether `segment`, after `before`, names an endpoint [`mints_a_credential`] tells
/// (told apart by length first: most segments are none of them).
fn mints_after(before: &[u8], segment: &[u8]) -> bool {
    let is = |s: &[u8], name: &str| s.eq_ignore_ascii_case(name.as_bytes());
    match segment.len() {
        11 if is(segment, "auth_tokens") => true,
        5 | 8 | 14 | 22 => {
            let realtime = is(before, "realtime") || is(before, "realtimeapi");
            (realtime && REALTIME_SESSION_STARTS.iter().any(|n| is(segment, n)))
                || (is(before, "chatkit") && is(segment, "sessions"))
        }
        _ => false,
    }
}

/// The model a Google path names, `…/models/{model}:{method}` (or `tunedModels/`),
/// query aside.
pub fn path_model(path_and_query: &str) -> Option<&str> {
    let path = path_and_query.split('?').next()?;
    let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
    let (model, _method) = segments.next()?.split_once(':')?;
    let collection = segments.next()?;
    let named =
        collection.eq_ignore_ascii_case("models") || collection.eq_ignore_ascii_case("tunedModels");
    (named && !model.is_empty()).then_some(model)
}

/// A parsed passthrough request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughRoute {
    /// Provider instance name or type, as the client wrote it.
    pub provider: String,
    /// Decoded endpoint below the base URL, without a leading slash.
    pub endpoint: String,
    /// The client's leading `v1/`, dropped from `endpoint`: the base URL names the
    /// version (`…/v1`, `…/v1beta/openai`), so SDKs that add `/v1` to theirs reach it
    /// once. A provider at its host's root has none, and gets it back upstream.
    pub dropped_v1: bool,
    /// An endpoint that starts with the whole base path is taken below it (see
    /// [`Self::upstream_path`]); on with the `v1` alias.
    pub base_path_alias: bool,
}

impl PassthroughRoute {
    /// Parses the part of the path after `/p/`. `allow_v1_alias` drops a leading `v1`
    /// (see [`Self::dropped_v1`]).
    pub fn parse(rest: &str, allow_v1_alias: bool) -> Result<Self, GatewayError> {
        let (provider_raw, endpoint_raw) = rest.split_once('/').unwrap_or((rest, ""));
        let provider = decoded(provider_raw)
            .ok_or_else(|| GatewayError::invalid_request("provider name is not valid UTF-8"))?;
        if provider.is_empty() {
            return Err(GatewayError::invalid_request(
                "missing provider: use /p/{provider}/{endpoint}",
            ));
        }
        let mut endpoint = decoded(endpoint_raw)
            .ok_or_else(|| GatewayError::invalid_request("endpoint is not valid UTF-8"))?;
        check_endpoint(&endpoint)?;
        let mut dropped_v1 = false;
        if let Some(rest) = endpoint.strip_prefix("v1") {
            if rest.is_empty() || rest.starts_with('/') {
                let rest = &rest[rest.len().min(1)..];
                if !allow_v1_alias {
                    return Err(GatewayError::invalid_request(format!(
                        "the `v1/` prefix is disabled on passthrough routes: call /p/{provider}/{rest} instead"
                    )));
                }
                if rest.is_empty() {
                    return Err(empty_endpoint(&provider));
                }
                check_endpoint(rest)?;
                // Dropped in place: the decoded path is not copied again.
                let prefix = endpoint.len() - rest.len();
                endpoint.replace_range(..prefix, "");
                dropped_v1 = true;
            }
        }
        Ok(Self {
            provider,
            endpoint,
            dropped_v1,
            base_path_alias: allow_v1_alias,
        })
    }

    /// What the endpoint sits below upstream besides `base_path`: `/v1` when the
    /// client's was dropped and the base path is empty, else nothing.
    pub fn version_below(&self, base_path: &str) -> &'static str {
        if base_path.is_empty() && self.dropped_v1 {
            "/v1"
        } else {
            ""
        }
    }

    /// The upstream path and query: `{base_path}/{endpoint}` plus `query` (the
    /// client's, less its credential parameters), byte for byte. Below an empty base
    /// path (a provider at its host's root: Gemini's own API, Ollama, a vLLM server)
    /// a `v1/` the client wrote stays, as the only version the path would name.
    ///
    /// An endpoint that starts with the base path's own segments is taken below it,
    /// once: a provider's SDK pointed at `/p/{provider}` writes them itself (Groq's
    /// writes `openai/v1/chat/completions` under its base `/openai/v1`), and no path
    /// names them twice upstream.
    pub fn upstream_path(&self, base_path: &str, query: Option<&str>) -> String {
        let version = self.version_below(base_path);
        let endpoint = self.below_base_path(base_path);
        // Sized once: most endpoints need no escaping, so this is the final length.
        let query_len = query.map_or(0, |q| q.len() + 1);
        let mut out =
            String::with_capacity(version.len() + base_path.len() + 1 + endpoint.len() + query_len);
        out.push_str(base_path);
        out.push_str(version);
        out.push('/');
        out.extend(utf8_percent_encode(endpoint, PATH_ENCODE));
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

impl PassthroughRoute {
    /// The endpoint without the base path's segments it starts with (when the alias is
    /// on and the base path names more than a version the `v1` alias covers).
    fn below_base_path(&self, base_path: &str) -> &str {
        let segments = base_path.trim_matches('/');
        if !self.base_path_alias || segments.is_empty() || segments.eq_ignore_ascii_case("v1") {
            return &self.endpoint;
        }
        self.endpoint
            .strip_prefix(segments)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&self.endpoint)
    }
}

/// `raw` with its percent escapes decoded; `None` when they decode to what is not
/// UTF-8. A path without `%` (nearly every one) is taken as it is, unread.
fn decoded(raw: &str) -> Option<String> {
    if !raw.contains('%') {
        return Some(raw.to_owned());
    }
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

fn empty_endpoint(provider: &str) -> GatewayError {
    GatewayError::invalid_request(format!(
        "missing endpoint: use /p/{provider}/{{endpoint}}, e.g. /p/{provider}/models"
    ))
}

fn check_endpoint(endpoint: &str) -> Result<(), GatewayError> {
    if endpoint.is_empty() {
        return Err(GatewayError::invalid_request(
            "missing endpoint: use /p/{provider}/{endpoint}",
        ));
    }
    let refuse = |why: &str| {
        Err(GatewayError::invalid_request(format!(
            "endpoint refused: {why}; passthrough endpoints are paths below the provider's base URL"
        )))
    };
    if endpoint.starts_with('/') {
        return refuse("it starts with `/`");
    }
    let flaws = EndpointFlaws::of(endpoint);
    if flaws.scheme {
        return refuse("it contains `://`");
    }
    if flaws.backslash {
        return refuse("it contains a backslash");
    }
    if flaws.control {
        return refuse("it contains a control character");
    }
    if flaws.dot_segment {
        return refuse("it contains a `.` or `..` segment");
    }
    Ok(())
}

/// What a decoded endpoint holds that would let it leave the provider's base path,
/// found in one pass over its bytes (it is checked on every passthrough request).
#[derive(Debug, Default, PartialEq, Eq)]
struct EndpointFlaws {
    /// `://`.
    scheme: bool,
    /// `\`, which some servers read as `/`.
    backslash: bool,
    /// A control character (`char::is_control`: U+0000–U+001F, U+007F–U+009F).
    control: bool,
    /// A `.` or `..` segment.
    dot_segment: bool,
}

impl EndpointFlaws {
    fn of(endpoint: &str) -> Self {
        let bytes = endpoint.as_bytes();
        let mut flaws = Self::default();
        let mut segment_start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'/' => {
                    flaws.dot_segment |= is_dot_segment(&bytes[segment_start..i]);
                    segment_start = i + 1;
                }
                b'\\' => flaws.backslash = true,
                b':' => flaws.scheme |= bytes[i + 1..].starts_with(b"//"),
                0x00..=0x1f | 0x7f => flaws.control = true,
                // U+0080–U+009F are C2 80–C2 9F in UTF-8, and C2 is only ever a lead byte.
                0xc2 => {
                    flaws.control |= bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n))
                }
                _ => {}
            }
        }
        flaws.dot_segment |= is_dot_segment(&bytes[segment_start..]);
        flaws
    }
}

/// `.` or `..`, with any path parameters (`..;x`): some servers (Tomcat, Spring, a
/// few API gateways) drop a segment's `;` part before they resolve it, so `..;` would
/// climb out of the provider's base path there.
fn is_dot_segment(segment: &[u8]) -> bool {
    let name = segment.split(|&b| b == b';').next().unwrap_or_default();
    name == b"." || name == b".."
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;

    /// A configured instance `name` of `kind` that speaks `format`.
    fn configured(name: &str, kind: ProviderKind, format: WireFormat) -> Provider {
        Provider {
            name: name.to_string(),
            configured: true,
            format,
            ..Provider::unconfigured(kind)
        }
    }

    fn with_version(version: bool) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        if version {
            headers.insert("anthropic-version", "2023-06-01".parse().unwrap());
        }
        headers
    }

    #[test]
    fn errors_are_anthropics_where_provider_and_client_both_speak_its_api() {
        let providers = ProviderCatalogue::new(vec![
            configured("anthropic", ProviderKind::Anthropic, WireFormat::Anthropic),
            configured("glm", ProviderKind::Zai, WireFormat::Anthropic),
            configured("openai", ProviderKind::OpenAi, WireFormat::OpenAi),
            configured("claude-compat", ProviderKind::Anthropic, WireFormat::OpenAi),
        ]);
        let format =
            |path: &str, version: bool| error_format(path, &with_version(version), &providers);
        for anthropic in [
            "/p/anthropic/v1/messages",
            "/p/anthropic/v1/chat/completions",
            "/p/anthropic",
            "/p/glm/messages",
            "/p/anthrop%69c/v1/messages",
            // Refused before routing: still the client's envelope.
            "/p/anthropic/../secret",
        ] {
            assert_eq!(
                format(anthropic, true),
                WireFormat::Anthropic,
                "{anthropic}"
            );
            // An OpenAI SDK at Anthropic's OpenAI-compatible endpoint sends no version.
            assert_eq!(format(anthropic, false), WireFormat::OpenAi, "{anthropic}");
        }
        for openai in [
            "/p/openai/v1/chat/completions",
            "/p/claude-compat/v1/chat/completions",
            "/p/openai/v1/threads/thread_1/messages",
            "/p/openai/v1/messages/batches",
            "/p/unknown/v1/chat/completions",
            "/p/",
            "/p",
            "/v1/chat/completions",
            "/v1/messages",
            "/health",
        ] {
            assert_eq!(format(openai, true), WireFormat::OpenAi, "{openai}");
        }
        // An OpenAI-format server's Anthropic-compatible Messages endpoint: the client
        // speaks Anthropic's API there too.
        for messages in [
            "/p/vllm/v1/messages",
            "/p/openai/v1/messages",
            "/p/claude-compat/v1/messages",
            "/p/deepseek/anthropic/v1/messages",
            "/p/ollama/v1/messages/count_tokens",
            "/p/unknown/v1/Messages",
        ] {
            assert_eq!(format(messages, true), WireFormat::Anthropic, "{messages}");
            assert_eq!(format(messages, false), WireFormat::OpenAi, "{messages}");
        }
    }

    #[test]
    fn an_unconfigured_anthropic_is_refused_in_its_clients_envelope() {
        let providers = ProviderCatalogue::new(Vec::new());
        let format = error_format("/p/anthropic/v1/messages", &with_version(true), &providers);
        assert_eq!(format, WireFormat::Anthropic);
    }

    #[test]
    fn a_google_path_names_its_model() {
        assert_eq!(
            path_model("/v1beta/models/gemini-2.5-flash:embedContent?alt=json"),
            Some("gemini-2.5-flash")
        );
        assert_eq!(
            path_model("/v1/projects/p/locations/us/publishers/google/models/gemini-2.5-pro:generateContent"),
            Some("gemini-2.5-pro")
        );
        assert_eq!(
            path_model("/v1beta/tunedModels/mine:generateContent"),
            Some("mine")
        );
        for none in [
            "/v1/chat/completions",
            "/v1beta/models/gemini-2.5-flash",
            "/v1beta/files/f:download",
            "/v1beta/models/:generateContent",
        ] {
            assert_eq!(path_model(none), None, "{none}");
        }
    }

    #[test]
    fn endpoints_that_hand_out_a_credential_for_the_provider_are_told() {
        for minting in [
            "realtime/client_secrets",
            "realtime/sessions",
            "REALTIME//Transcription_Sessions/",
            "realtime/calls",
            "realtime/calls/rtc_123/accept",
            "realtimeapi/sessions",
            "chatkit/sessions",
            "v1alpha/auth_tokens",
        ] {
            assert!(mints_a_credential(minting), "{minting}");
        }
        for other in [
            "chat/completions",
            "responses",
            "sessions",
            "chatkit/threads",
            "realtime",
            "audio/transcriptions",
            "models/gemini-2.5-flash:generateContent",
        ] {
            assert!(!mints_a_credential(other), "{other}");
        }
    }

    #[test]
    fn an_endpoint_asks_a_model_when_it_generates_or_embeds() {
        for endpoint in [
            "chat/completions",
            "v1/chat/completions/",
            "completions",
            "responses",
            "v1/messages",
            "api/chat",
            "api/generate",
            "v1beta/models/gemini-2.5-flash:generateContent",
            "v1beta/models/gemini-2.5-flash:STREAMGenerateContent",
            "openai/deployments/gpt-4o/chat/completions",
        ] {
            assert_eq!(
                model_work(endpoint),
                Some(ModelWork::Generates),
                "{endpoint}"
            );
        }
        for endpoint in [
            "embeddings",
            "api/embed",
            "api/embeddings",
            "v1beta/models/text-embedding-004:embedContent",
            "v1beta/models/text-embedding-004:batchEmbedContents",
        ] {
            assert_eq!(model_work(endpoint), Some(ModelWork::Embeds), "{endpoint}");
        }
        for endpoint in [
            "",
            "v1/messages/count_tokens",
            "responses/input_tokens",
            "responses/resp_1/cancel",
            "v1/messages/batches",
            "batches",
            "files",
            "moderations",
            "v1beta/models/gemini-2.5-flash:countTokens",
            "models",
            "threads/thread_abc/messages",
        ] {
            assert_eq!(model_work(endpoint), None, "{endpoint}");
        }
    }

    fn parse(rest: &str) -> Result<PassthroughRoute, GatewayError> {
        PassthroughRoute::parse(rest, true)
    }

    #[test]
    fn splits_provider_and_multi_segment_endpoint() {
        let r = parse("anthropic/messages/batches").unwrap();
        assert_eq!(r.provider, "anthropic");
        assert_eq!(r.endpoint, "messages/batches");
    }

    #[test]
    fn encoded_slash_is_a_separator() {
        assert_eq!(parse("openai/files%2Fabc").unwrap().endpoint, "files/abc");
    }

    #[test]
    fn an_sdk_writing_the_base_path_itself_reaches_it_once() {
        // Groq's SDK pointed at /p/groq posts to /p/groq/openai/v1/chat/completions.
        let r = parse("groq/openai/v1/chat/completions").unwrap();
        assert_eq!(
            r.upstream_path("/openai/v1", None),
            "/openai/v1/chat/completions"
        );
        assert_eq!(
            parse("groq/chat/completions")
                .unwrap()
                .upstream_path("/openai/v1", None),
            "/openai/v1/chat/completions"
        );
        // Only the whole base path, and not with the alias off.
        assert_eq!(
            parse("groq/openai/models")
                .unwrap()
                .upstream_path("/openai/v1", None),
            "/openai/v1/openai/models"
        );
        let strict = PassthroughRoute::parse("groq/openai/v1/models", false).unwrap();
        assert_eq!(
            strict.upstream_path("/openai/v1", None),
            "/openai/v1/openai/v1/models"
        );
    }

    #[test]
    fn v1_alias_is_dropped_when_allowed() {
        assert_eq!(parse("anthropic/v1/messages").unwrap().endpoint, "messages");
        assert_eq!(parse("anthropic/messages").unwrap().endpoint, "messages");
        assert_eq!(parse("anthropic/v1beta/x").unwrap().endpoint, "v1beta/x");
    }

    #[test]
    fn the_prefix_is_the_provider_as_the_client_wrote_it() {
        assert_eq!(
            client_prefix("/p/openai-east/files/x"),
            Some("/p/openai-east")
        );
        assert_eq!(client_prefix("/p/vllm"), Some("/p/vllm"));
        assert_eq!(client_prefix("/p/"), None);
        assert_eq!(client_prefix("/v1/chat/completions"), None);
    }

    #[test]
    fn a_dropped_v1_is_written_back_only_below_a_providers_root() {
        let versioned = parse("gemini-native/v1/models/m:generateContent").unwrap();
        assert_eq!(
            versioned.upstream_path("", None),
            "/v1/models/m:generateContent"
        );
        assert_eq!(
            versioned.upstream_path("/v1", None),
            "/v1/models/m:generateContent"
        );
        assert_eq!(
            versioned.upstream_path("/v1beta/openai", None),
            "/v1beta/openai/models/m:generateContent"
        );
        let unversioned = parse("gemini-native/v1beta/models/m:generateContent").unwrap();
        assert_eq!(
            unversioned.upstream_path("", Some("alt=sse")),
            "/v1beta/models/m:generateContent?alt=sse"
        );
        assert_eq!(
            parse("ollama/api/chat").unwrap().upstream_path("", None),
            "/api/chat"
        );
    }

    #[test]
    fn v1_alias_refused_when_disabled() {
        let e = PassthroughRoute::parse("anthropic/v1/messages", false).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("/p/anthropic/messages"), "{}", e.message);
    }

    #[test]
    fn empty_endpoint_is_refused() {
        for p in ["anthropic", "anthropic/", "anthropic/v1", "anthropic/v1/"] {
            assert_eq!(parse(p).unwrap_err().status, 400, "{p}");
        }
    }

    #[test]
    fn traversal_and_host_escapes_are_refused() {
        for p in [
            "openai/../secret",
            "openai/a/%2e%2e/b",
            "openai/./x",
            "openai/%2Fetc",
            "openai//x",
            "openai/http://evil.example/x",
            "openai/a%5Cb",
            "openai/a%00b",
            "openai/a%0d%0ab",
            "openai/v1/../x",
        ] {
            assert_eq!(parse(p).unwrap_err().status, 400, "{p}");
        }
    }

    #[test]
    fn control_characters_are_what_char_calls_control() {
        for c in (0..0x800u32).filter_map(char::from_u32) {
            let endpoint = format!("a{c}b");
            assert_eq!(
                EndpointFlaws::of(&endpoint).control,
                c.is_control(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn each_flaw_is_found_wherever_it_sits() {
        let found = |e: &str| EndpointFlaws::of(e);
        assert_eq!(found("models/gpt-4o:generate"), EndpointFlaws::default());
        for e in ["x://y", "a/b:/c://", "://"] {
            assert!(found(e).scheme, "{e}");
        }
        assert!(!found("a:/b").scheme);
        assert!(found("a\\b").backslash);
        for e in [
            ".", "..", "a/.", "a/..", "./a", "a/../b", "a//./b", "..;", "a/..;/b", ".;x/a",
        ] {
            assert!(found(e).dot_segment, "{e}");
        }
        for e in ["...", ".a", "a.", "a/.b/c", "v1beta", "a;..", "...;x"] {
            assert!(!found(e).dot_segment, "{e}");
        }
    }

    #[test]
    fn escapes_are_decoded_and_a_path_without_them_is_taken_as_written() {
        assert_eq!(
            decoded("v1/chat/completions").as_deref(),
            Some("v1/chat/completions")
        );
        assert_eq!(decoded("models/a%20b%2Fc").as_deref(), Some("models/a b/c"));
        assert_eq!(decoded("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(decoded("bad%FF"), None, "escapes that are not UTF-8");
        assert_eq!(decoded("100%").as_deref(), Some("100%"), "a lone % stays");
    }

    #[test]
    fn upstream_path_keeps_query_bytes_and_reencodes() {
        let r = parse("gemini/models/gemini-pro:generateContent").unwrap();
        assert_eq!(
            r.upstream_path("/v1beta", Some("alt=sse&x=%20y")),
            "/v1beta/models/gemini-pro:generateContent?alt=sse&x=%20y"
        );
        let r = parse("openai/a%20b%25c").unwrap();
        assert_eq!(r.upstream_path("/v1", None), "/v1/a%20b%25c");
    }
}
