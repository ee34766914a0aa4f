//! Header rules on both sides of the wire: what the client may not send upstream,
//! what the gateway adds, and what the provider may not send back.

use http::header::{self, HeaderName};

use super::header_maps;
use super::request_id::RequestId;
use crate::logging::{RedactedHeaders, CREDENTIAL_HEADERS};
use crate::providers::{AuthStyle, KeyForm, Provider, Secret, WireFormat};

/// The request id header: the gateway's id goes upstream under it, and a provider's
/// own id comes back under it untouched.
pub const REQUEST_ID: &str = "x-request-id";

/// [`REQUEST_ID`] as a header name.
pub const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID);

/// Anthropic's name for its request id.
pub const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// The header a client of `format` has its SDK read a call's id from
/// (`APIError.request_id`): `x-request-id` for OpenAI's, `request-id` for Anthropic's.
pub fn request_id_header_of(format: WireFormat) -> HeaderName {
    match format {
        WireFormat::OpenAi => REQUEST_ID_NAME,
        WireFormat::Anthropic => ANTHROPIC_REQUEST_ID,
    }
}

/// Anthropic's key header.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Gemini's key header.
const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// The gateway's request id on every response, beside any `X-Request-Id` of the provider.
pub const AURORA_REQUEST_ID: HeaderName = HeaderName::from_static("x-aurora-request-id");

/// Client headers that carry the client's address and never go upstream.
const CLIENT_ADDRESS: [&str; 3] = ["forwarded", "x-real-ip", "true-client-ip"];

/// Client headers that make a provider take the request for another method, or answer
/// less than it would (Google's field mask): the gateway reads a request as it is sent,
/// so a delete it polls work before, or the usage of an answer, cannot hide behind them.
const OVERRIDES: [&str; 4] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-goog-fieldmask",
];

/// The headers that pick which of a key's OpenAI organizations and projects a call
/// is made and billed in.
pub(crate) const KEY_SCOPE: [&str; 2] = ["openai-organization", "openai-project"];

/// Whose provider key a call goes with, as far as the client's [`KEY_SCOPE`] headers
/// are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// The caller's own key: its organization and project headers go with it.
    Callers,
    /// The gateway's own key: which of its organizations and projects pays is the
    /// operator's choice (a provider's configured `headers`), not each caller's, so the
    /// client's [`KEY_SCOPE`] headers are removed.
    Gateways,
}

impl KeyScope {
    /// The [`KEY_SCOPE`] names removed for a call with this key.
    fn removed(self) -> &'static [&'static str] {
        match self {
            Self::Callers => &[],
            Self::Gateways => &KEY_SCOPE,
        }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy `Proxy-Connection`).
pub(crate) const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// Headers named by `Connection`, lowercased.
fn connection_nominated(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Client headers that never go upstream: every header the logs hide as a credential
/// (the gateway's key, a caller's own, Gemini's and Azure's key headers, cookies; the
/// provider's credential is the gateway's to add), the client's address, and the
/// [`OVERRIDES`].
fn client_only() -> impl Iterator<Item = &'static &'static str> + Clone {
    CREDENTIAL_HEADERS
        .iter()
        .chain(&CLIENT_ADDRESS)
        .chain(&OVERRIDES)
}

/// Removes every header that must not reach the provider: credentials, cookies,
/// hop-by-hop headers (with those `Connection` names), forwarding headers that
/// would leak the client's address, and, for a call with the gateway's own key, the
/// client's [`KEY_SCOPE`] headers.
pub fn strip_client_headers(headers: &mut http::HeaderMap, scope: KeyScope) {
    // Every request passes here: only the listed names present are removed (a removal
    // by name hashes it), found in one pass over the names.
    let listed = client_only().chain(&HOP_BY_HOP).chain(scope.removed());
    let forwarding = |name: &str| name.starts_with("x-forwarded-");
    let Some(present) = listed_present(headers, listed, forwarding) else {
        return strip_client_headers_naming_others(headers, scope);
    };
    for name in present.iter().flatten() {
        headers.remove(name);
    }
}

/// Up to four of the `listed` names present in `headers` (each once), read in one pass
/// over the names present and taken as the map holds them (removed by them, no name is
/// parsed again); `None` when the general path is needed: `Connection` is present (it
/// names more to remove), more than four are, or a name `names_more` picks is.
fn listed_present<'a>(
    headers: &http::HeaderMap,
    listed: impl Iterator<Item = &'a &'static str> + Clone,
    names_more: impl Fn(&str) -> bool,
) -> Option<[Option<HeaderName>; 4]> {
    let mut present: [Option<HeaderName>; 4] = Default::default();
    let mut count = 0;
    for name in headers.keys() {
        let text = name.as_str();
        match listed.clone().find(|k| **k == text) {
            Some(&known) if known != "connection" && count < present.len() => {
                present[count] = Some(name.clone());
                count += 1;
            }
            Some(_) => return None,
            None if names_more(text) => return None,
            None => {}
        }
    }
    Some(present)
}

/// [`strip_client_headers`] for a request whose headers name others to remove.
fn strip_client_headers_naming_others(headers: &mut http::HeaderMap, scope: KeyScope) {
    let mut doomed = connection_nominated(headers);
    doomed.extend(
        headers
            .keys()
            .map(HeaderName::as_str)
            .filter(|n| n.starts_with("x-forwarded-"))
            .map(str::to_string),
    );
    for name in client_only().chain(&HOP_BY_HOP).chain(scope.removed()) {
        headers.remove(*name);
    }
    for name in &doomed {
        // Framing is Pingora's job: a `Connection: content-length` must not unframe the body.
        if name != "content-length" && name != "transfer-encoding" && name != "host" {
            headers.remove(name.as_str());
        }
    }
}

/// Removes the client's headers of the other API family (`anthropic-version`,
/// `anthropic-beta`, … for an OpenAI-format provider; `openai-*` for an
/// Anthropic-format one): on a translated request they describe a body the provider
/// never sees.
pub fn strip_foreign_format_headers(headers: &mut http::HeaderMap, provider_format: WireFormat) {
    let own = provider_format.facts().header_prefix;
    let foreign = |name: &str| {
        WireFormat::ALL
            .iter()
            .map(|f| f.facts().header_prefix)
            .any(|prefix| prefix != own && name.starts_with(prefix))
    };
    // Most requests carry none, and an empty Vec does not allocate.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| foreign(n.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// How an Anthropic OAuth access token starts (`sk-ant-oat01-…`), where an API key
/// starts `sk-ant-api`.
const ANTHROPIC_OAUTH_TOKEN_PREFIX: &str = "sk-ant-oat";

/// Adds `key` (when there is one) in the provider's auth style, the provider's required
/// and default headers, the configured extra headers and the request id. Call after
/// [`strip_client_headers`].
pub fn add_provider_headers(
    req: &mut http::request::Parts,
    provider: &Provider,
    key: Option<&Secret>,
    request_id: &RequestId,
) -> pingora_core::Result<()> {
    let defaults = provider.format.facts().default_headers.iter();
    let defaults = defaults.chain(provider.kind.facts().default_headers);
    let headers = &mut req.headers;
    // The key, the request id, the defaults and the extras, in one step; Host takes
    // room only when the client sent none (HTTP/1.1 always does: it is replaced in
    // place). Room asked for beyond what is added can grow the map for nothing.
    let host_room = usize::from(!headers.contains_key(header::HOST));
    let room = host_room + 2 + defaults.clone().count() + provider.headers.len();
    header_maps::make_room(headers, room)?;
    let host = provider.base.host_header().clone();
    header_maps::put(headers, header::HOST, host)?;
    if let Some(key) = key {
        let (name, form) = match provider.auth_style() {
            // An Anthropic OAuth token (a Claude subscription's, a `!PASSTHRU` caller's)
            // is taken only as a Bearer token, never as `x-api-key`.
            AuthStyle::XApiKey if key.expose().starts_with(ANTHROPIC_OAUTH_TOKEN_PREFIX) => {
                (header::AUTHORIZATION, KeyForm::Bearer)
            }
            AuthStyle::XApiKey => (X_API_KEY, KeyForm::Plain),
            AuthStyle::Bearer => (header::AUTHORIZATION, KeyForm::Bearer),
            AuthStyle::GoogApiKey => (X_GOOG_API_KEY, KeyForm::Plain),
        };
        let value = key.header_value(form).ok_or_else(|| {
            pingora_core::Error::explain(
                pingora_core::ErrorType::InvalidHTTPHeader,
                "invalid value while insert",
            )
        })?;
        header_maps::put(headers, name, value)?;
    }
    for &(name, value) in defaults {
        if !headers.contains_key(name) {
            // Rare (a client of the provider's format sends these itself), so parsed here.
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                pingora_core::Error::explain(
                    pingora_core::ErrorType::InvalidHTTPHeader,
                    "invalid header name",
                )
            })?;
            header_maps::put(headers, name, header_maps::text(value)?)?;
        }
    }
    for (name, value) in &provider.headers {
        header_maps::put(headers, name.clone(), value.clone())?;
    }
    header_maps::put(headers, REQUEST_ID_NAME, request_id.header_value())?;
    // Pingora's own line with this header is held back (it holds the key); this one
    // shows the rest.
    log::trace!(
        "request {request_id} to provider `{}`: {} {}",
        provider.name,
        req.method,
        RedactedHeaders(&req.headers)
    );
    Ok(())
}

/// Removes what the provider may not pass to the client: hop-by-hop headers (framing
/// stays, Pingora re-frames) and cookies.
pub fn strip_upstream_response_headers(headers: &mut http::HeaderMap) {
    // Every answer passes here: only the listed names present are removed.
    let listed = HOP_BY_HOP.iter().chain(&["set-cookie"]);
    let Some(present) = listed_present(headers, listed, |_| false) else {
        return strip_upstream_response_headers_naming_others(headers);
    };
    for name in present.iter().flatten() {
        headers.remove(name);
    }
}

/// [`strip_upstream_response_headers`] for an answer whose headers name others to remove.
fn strip_upstream_response_headers_naming_others(headers: &mut http::HeaderMap) {
    // Nothing is allocated: the `Connection` lines are taken out first (their values
    // share the answer's buffer), then what they name goes.
    let mut lines: [Option<http::HeaderValue>; 4] = Default::default();
    let mut count = 0;
    for value in headers.get_all(header::CONNECTION) {
        if let Some(slot) = lines.get_mut(count) {
            *slot = Some(value.clone());
        }
        count += 1;
    }
    if count > lines.len() {
        // More `Connection` lines than anyone sends: take the general path.
        let nominated = connection_nominated(headers);
        remove_nominated(headers, nominated.iter().map(String::as_str));
    } else {
        // The tokens borrow the copies in `lines`, not the header map being changed.
        let tokens = lines
            .iter()
            .flatten()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        remove_nominated(headers, tokens);
    }
    for name in HOP_BY_HOP.iter().chain(&["set-cookie"]) {
        headers.remove(*name);
    }
}

/// Removes the headers a `Connection` header named, framing aside.
fn remove_nominated<'a>(headers: &mut http::HeaderMap, names: impl Iterator<Item = &'a str>) {
    for name in names.map(str::trim).filter(|n| !n.is_empty()) {
        if !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("transfer-encoding")
        {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{BaseUrl, ProviderKind, ANTHROPIC_VERSION};
    use http::request::Parts;
    use http::HeaderValue;
    use pingora_http::{RequestHeader, ResponseHeader};

    /// A client's request with `pairs`, as the gateway edits it.
    fn request(pairs: &[(&str, &str)]) -> Parts {
        let mut r = http::Request::post("/p/x/y")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        for (k, v) in pairs {
            let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
            r.headers.append(name, HeaderValue::from_str(v).unwrap());
        }
        r
    }

    /// The request id `rid`, as a client would send it.
    fn rid() -> RequestId {
        RequestId::of(&RequestHeader::from(request(&[(REQUEST_ID, "rid")])))
    }

    fn provider(kind: ProviderKind) -> Provider {
        Provider {
            base: BaseUrl::parse("https://api.example.com:8443/v1").unwrap(),
            ..Provider::unconfigured(kind)
        }
    }

    fn key() -> Secret {
        Secret::new("sk-provider")
    }

    #[test]
    fn translated_requests_lose_the_other_api_familys_headers() {
        let client = [
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "claude-code-20250219"),
            ("anthropic-dangerous-direct-browser-access", "true"),
            ("openai-organization", "org-1"),
            ("x-app", "cli"),
        ];
        let mut r = request(&client);
        strip_foreign_format_headers(&mut r.headers, WireFormat::OpenAi);
        let mut left: Vec<&str> = r.headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["openai-organization", "x-app"]);
        let mut r = request(&client);
        strip_foreign_format_headers(&mut r.headers, WireFormat::Anthropic);
        assert!(r.headers.get("openai-organization").is_none());
        assert_eq!(r.headers["anthropic-beta"], "claude-code-20250219");
    }

    /// A client request with `pairs`, as sent to a `kind` provider holding `key()`.
    fn sent_to(kind: ProviderKind, pairs: &[(&str, &str)]) -> Parts {
        let mut r = request(pairs);
        add_provider_headers(&mut r, &provider(kind), Some(&key()), &rid()).unwrap();
        r
    }

    #[test]
    fn provider_headers_that_replace_the_clients_do_not_grow_the_map() {
        // A load client's GET as Pingora reads it: five headers, a map made for five.
        let mut r = request(&[]);
        r.headers = http::HeaderMap::with_capacity(5);
        for (name, value) in [
            ("host", "gateway:8080"),
            ("user-agent", "bench/1"),
            ("accept", "application/json"),
            ("authorization", "Bearer gw"),
            ("content-length", "0"),
        ] {
            r.headers.insert(name, HeaderValue::from_static(value));
        }
        let room = r.headers.capacity();
        strip_client_headers(&mut r.headers, KeyScope::Callers);
        // Host replaced, the key and the request id added: six, where six fit.
        add_provider_headers(
            &mut r,
            &provider(ProviderKind::OpenAi),
            Some(&key()),
            &rid(),
        )
        .unwrap();
        assert_eq!(r.headers.len(), 6);
        assert_eq!(r.headers.capacity(), room, "the map grew");
        assert_eq!(r.headers["host"], "api.example.com:8443");
    }

    #[test]
    fn strips_client_credentials_cookies_and_client_address_headers() {
        let mut r = request(&[
            ("authorization", "Bearer gw"),
            ("x-api-key", "gw"),
            ("x-provider-api-key", "sk-client"),
            ("cookie", "a=b"),
            ("proxy-authorization", "Basic x"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-custom", "kept"),
            ("anthropic-beta", "tools-2024"),
        ]);
        strip_client_headers(&mut r.headers, KeyScope::Callers);
        for gone in [
            "authorization",
            "x-api-key",
            "x-provider-api-key",
            "cookie",
            "proxy-authorization",
            "forwarded",
            "x-real-ip",
            "true-client-ip",
            "x-forwarded-for",
            "x-forwarded-proto",
        ] {
            assert!(!r.headers.contains_key(gone), "{gone}");
        }
        assert_eq!(r.headers["x-custom"], "kept");
        assert_eq!(r.headers["anthropic-beta"], "tools-2024");
    }

    #[test]
    fn strips_client_x_goog_api_key_and_api_key_for_every_provider() {
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            let mut r = request(&[
                ("x-goog-api-key", "gw-or-client"),
                ("api-key", "azure-client"),
            ]);
            strip_client_headers(&mut r.headers, KeyScope::Callers);
            add_provider_headers(&mut r, &provider(kind), Some(&key()), &rid()).unwrap();
            assert!(!r.headers.contains_key("api-key"), "{kind}");
            let goog = r.headers.get("x-goog-api-key");
            match kind {
                ProviderKind::Gemini => assert_eq!(goog.unwrap(), "sk-provider"),
                _ => assert!(goog.is_none(), "{kind}: {goog:?}"),
            }
        }
        // Past the four names the quick path takes, too.
        let mut r = request(&[
            ("authorization", "Bearer gw"),
            ("x-api-key", "gw"),
            ("cookie", "a=b"),
            ("x-goog-api-key", "gw"),
            ("api-key", "client"),
        ]);
        strip_client_headers(&mut r.headers, KeyScope::Callers);
        assert!(r.headers.is_empty(), "{:?}", r.headers);
    }

    #[test]
    fn strips_method_overrides_and_googles_field_mask() {
        let mut r = request(&[
            ("x-http-method-override", "DELETE"),
            ("X-HTTP-Method", "DELETE"),
            ("x-method-override", "DELETE"),
            ("x-goog-fieldmask", "name"),
            ("x-custom", "kept"),
        ]);
        strip_client_headers(&mut r.headers, KeyScope::Callers);
        assert_eq!(r.headers.len(), 1, "{:?}", r.headers);
        assert_eq!(r.headers["x-custom"], "kept");
    }

    #[test]
    fn the_callers_provider_key_header_is_one_never_sent_upstream() {
        use super::super::provider_key::PROVIDER_KEY_HEADER;
        assert!(client_only().any(|name| *name == PROVIDER_KEY_HEADER));
    }

    #[test]
    fn strips_the_few_credential_headers_a_usual_request_carries() {
        let mut r = request(&[
            ("host", "gw.example"),
            ("authorization", "Bearer gw"),
            ("x-api-key", "gw"),
            ("te", "trailers"),
            ("content-type", "application/json"),
            ("content-length", "2"),
        ]);
        strip_client_headers(&mut r.headers, KeyScope::Callers);
        for gone in ["authorization", "x-api-key", "te"] {
            assert!(!r.headers.contains_key(gone), "{gone}");
        }
        for kept in ["host", "content-type", "content-length"] {
            assert!(r.headers.contains_key(kept), "{kept}");
        }
    }

    #[test]
    fn strips_more_credential_headers_than_a_usual_request_carries() {
        let gone = [
            "authorization",
            "x-api-key",
            "cookie",
            "proxy-authorization",
            "x-real-ip",
        ];
        let mut r = request(&gone.map(|name| (name, "x")));
        strip_client_headers(&mut r.headers, KeyScope::Callers);
        assert!(r.headers.is_empty(), "{:?}", r.headers);
    }

    #[test]
    fn the_gateways_key_goes_without_the_clients_organization_and_project_a_callers_with_them() {
        let scoped = [
            ("openai-organization", "org-caller"),
            ("openai-project", "proj-caller"),
        ];
        let few = [
            ("content-type", "application/json"),
            ("authorization", "Bearer x"),
        ];
        let many = [
            ("authorization", "Bearer x"),
            ("cookie", "a=b"),
            ("x-api-key", "k"),
            ("x-real-ip", "10.0.0.1"),
            ("te", "trailers"),
        ];
        let naming = [("connection", "close")];
        for others in [&few[..], &many[..], &naming[..]] {
            let pairs: Vec<_> = others.iter().chain(&scoped).copied().collect();
            let mut gateways = request(&pairs);
            strip_client_headers(&mut gateways.headers, KeyScope::Gateways);
            let mut callers = request(&pairs);
            strip_client_headers(&mut callers.headers, KeyScope::Callers);
            for (name, value) in scoped {
                assert!(
                    !gateways.headers.contains_key(name),
                    "{name} with {others:?}"
                );
                assert_eq!(callers.headers[name], value, "{name} with {others:?}");
            }
            for (name, _) in others {
                let kept = *name == "content-type";
                assert_eq!(gateways.headers.contains_key(*name), kept, "{name}");
                assert_eq!(callers.headers.contains_key(*name), kept, "{name}");
            }
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_nominated_headers() {
        let mut r = request(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("content-length", "3"),
        ]);
        strip_client_headers(&mut r.headers, KeyScope::Callers);
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
            "proxy-connection",
        ] {
            assert!(!r.headers.contains_key(gone), "{gone}");
        }
        assert_eq!(r.headers["content-length"], "3");
    }

    #[test]
    fn anthropic_gets_x_api_key_and_default_version() {
        let r = sent_to(ProviderKind::Anthropic, &[]);
        assert_eq!(r.headers["x-api-key"], "sk-provider");
        assert_eq!(r.headers["anthropic-version"], ANTHROPIC_VERSION);
        assert_eq!(r.headers["host"], "api.example.com:8443");
        assert_eq!(r.headers[REQUEST_ID], "rid");
        assert!(!r.headers.contains_key("authorization"));
    }

    #[test]
    fn no_key_adds_no_credential_header() {
        for kind in [
            ProviderKind::Anthropic,
            ProviderKind::OpenAi,
            ProviderKind::Gemini,
        ] {
            let mut r = request(&[]);
            add_provider_headers(&mut r, &provider(kind), None, &rid()).unwrap();
            for absent in ["authorization", "x-api-key", "x-goog-api-key"] {
                assert!(!r.headers.contains_key(absent), "{kind}: {absent}");
            }
        }
    }

    #[test]
    fn client_anthropic_version_is_kept() {
        let r = sent_to(
            ProviderKind::Anthropic,
            &[("anthropic-version", "2024-01-01")],
        );
        assert_eq!(r.headers["anthropic-version"], "2024-01-01");
    }

    #[test]
    fn openai_style_gets_bearer_and_gemini_gets_goog_key() {
        let r = sent_to(ProviderKind::Groq, &[]);
        assert_eq!(r.headers["authorization"], "Bearer sk-provider");
        let r = sent_to(ProviderKind::Gemini, &[]);
        assert_eq!(r.headers["x-goog-api-key"], "sk-provider");
        assert!(!r.headers.contains_key("authorization"));
    }

    #[test]
    fn openrouter_defaults_yield_to_client_values() {
        let r = sent_to(ProviderKind::OpenRouter, &[("x-title", "mine")]);
        assert_eq!(r.headers["x-title"], "mine");
        assert_eq!(r.headers["http-referer"], "https://aurora-gateway.local");
    }

    #[test]
    fn configured_headers_are_added() {
        let mut p = provider(ProviderKind::OpenAi);
        p.headers.push((
            HeaderName::from_static("openai-organization"),
            HeaderValue::from_static("org-1"),
        ));
        let mut r = request(&[]);
        add_provider_headers(&mut r, &p, Some(&key()), &rid()).unwrap();
        assert_eq!(r.headers["openai-organization"], "org-1");
    }

    #[test]
    fn response_loses_hop_by_hop_and_set_cookie() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (k, v) in [
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("set-cookie", "a=b"),
            ("retry-after", "3"),
            ("transfer-encoding", "chunked"),
        ] {
            resp.append_header(k, v).unwrap();
        }
        crate::proxy::header_maps::open_answer(&mut resp, strip_upstream_response_headers);
        for gone in ["connection", "x-hop", "keep-alive", "set-cookie"] {
            assert!(!resp.headers.contains_key(gone), "{gone}");
        }
        assert_eq!(resp.headers["retry-after"], "3");
        assert_eq!(resp.headers["transfer-encoding"], "chunked");
    }

    #[test]
    fn response_without_connection_loses_its_hop_by_hop_and_cookies() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (k, v) in [
            ("content-type", "application/json"),
            ("keep-alive", "timeout=5"),
            ("set-cookie", "a=b"),
            ("set-cookie", "c=d"),
            ("upgrade", "h2c"),
            ("content-length", "2"),
        ] {
            resp.append_header(k, v).unwrap();
        }
        crate::proxy::header_maps::open_answer(&mut resp, strip_upstream_response_headers);
        for gone in ["keep-alive", "set-cookie", "upgrade"] {
            assert!(!resp.headers.contains_key(gone), "{gone}");
        }
        assert_eq!(resp.headers["content-type"], "application/json");
        assert_eq!(resp.headers["content-length"], "2");
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        assert!(!String::from_utf8_lossy(&wire).contains("a=b"));
    }

    #[test]
    fn response_loses_what_any_connection_line_names_in_any_case() {
        for lines in [2, 6] {
            let mut resp = ResponseHeader::build(200, None).unwrap();
            for i in 0..lines {
                resp.append_header("connection", format!("X-Hop-{i}"))
                    .unwrap();
                resp.append_header(format!("x-hop-{i}"), "1").unwrap();
            }
            resp.append_header("connection", "Content-Length").unwrap();
            resp.append_header("content-length", "3").unwrap();
            crate::proxy::header_maps::open_answer(&mut resp, strip_upstream_response_headers);
            for i in 0..lines {
                let gone = format!("x-hop-{i}");
                assert!(!resp.headers.contains_key(&gone), "{gone} of {lines}");
            }
            assert!(!resp.headers.contains_key("connection"));
            assert_eq!(resp.headers["content-length"], "3", "framing stays");
        }
    }
}
