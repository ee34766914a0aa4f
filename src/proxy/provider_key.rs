//! Which provider key one request sends upstream: the gateway's own (rotated), none,
//! or, for a `!PASSTHRU` provider, the caller's, told apart from the gateway token.

use http::HeaderMap;

use super::GatewayError;
use crate::auth::{header_token, presented_bearer, sha256, GatewayAuth, GOOG_API_KEY};
use crate::providers::{AuthStyle, KeyId, Provider, ProviderCredential, Secret};

/// The header that carries a caller's provider key when gateway auth is on (the
/// gateway token then travels as `Authorization: Bearer`). Never sent upstream.
pub const PROVIDER_KEY_HEADER: &str = "x-provider-api-key";

/// The prefix of the log label of a caller's own key.
pub const CALLER_KEY_LABEL_PREFIX: &str = "caller_key:";

/// The key one request sends upstream, decided before anything is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamCredential {
    /// Sent in the provider's auth style; `None` for a provider without a key.
    pub key: Option<Secret>,
    /// For a caller's own key: [`caller_key_label`] of it, the only way logs name it.
    pub caller_key_label: Option<String>,
    /// Which of the provider's static keys it is, when the gateway holds several.
    pub key_id: Option<KeyId>,
}

/// Decides the upstream key of a request to `provider` with client `headers`.
///
/// A provider without a key sends none; one with static keys sends the next in turn.
/// A `!PASSTHRU` provider sends the caller's key, read from
/// - gateway auth off: `X-Provider-Api-Key`, else `X-Api-Key`, else (a provider that
///   takes `x-goog-api-key`) `x-goog-api-key`, else `Authorization: Bearer`;
/// - gateway auth on: `X-Provider-Api-Key`, else `X-Api-Key`, else (the same)
///   `x-goog-api-key`; a value equal to any gateway key (the master key or any managed
///   key, presented or not) is never taken as a provider key.
///
/// A `!PASSTHRU` provider called without a key is a 401 naming the provider and the
/// header to send. No I/O; the only state touched is the static key rotation.
pub fn upstream_credential(
    provider: &Provider,
    headers: &HeaderMap,
    auth: &GatewayAuth,
) -> Result<UpstreamCredential, GatewayError> {
    upstream_credential_avoiding(provider, headers, auth, |_| false)
}

/// [`upstream_credential`], passing over the static keys whose id `cooling` says is
/// cooling down (keys refused or out of quota a moment ago) while another remains.
pub fn upstream_credential_avoiding(
    provider: &Provider,
    headers: &HeaderMap,
    auth: &GatewayAuth,
    cooling: impl Fn(KeyId) -> bool,
) -> Result<UpstreamCredential, GatewayError> {
    match &provider.credential {
        ProviderCredential::None => Ok(UpstreamCredential::default()),
        ProviderCredential::Static(ring) => {
            let (index, key) = ring.next_avoiding(|i| cooling(ring.id(i)));
            Ok(UpstreamCredential {
                key: Some(key.clone()),
                caller_key_label: None,
                key_id: (ring.len() > 1).then(|| ring.id(index)),
            })
        }
        ProviderCredential::CallerKey => {
            let goog = provider.auth_style() == AuthStyle::GoogApiKey;
            let key = client_provider_key(headers, auth, goog)
                .ok_or_else(|| missing_client_key(&provider.name, !auth.is_open()))?;
            Ok(UpstreamCredential {
                caller_key_label: Some(caller_key_label(key)),
                key: Some(Secret::new(key)),
                key_id: None,
            })
        }
    }
}

/// `caller_key:` and the first 8 hex digits of the key's SHA-256: enough to tell
/// callers apart in logs, far too little to recover the key.
pub fn caller_key_label(key: &str) -> String {
    let digest = sha256(key.as_bytes());
    format!("{CALLER_KEY_LABEL_PREFIX}{}", hex::encode(&digest[..4]))
}

/// The SHA-256 (hex) of the provider key a caller brings in `headers`, read as for a
/// `!PASSTHRU` provider: what tells apart callers the gateway does not know by a key
/// of its own (gateway auth off).
pub fn caller_key_digest(headers: &HeaderMap, auth: &GatewayAuth) -> Option<String> {
    // Read as for a provider that takes `x-goog-api-key`: a caller whose key comes only
    // there is told apart by it, not taken for one that brought none.
    client_provider_key(headers, auth, true).map(|key| hex::encode(sha256(key.as_bytes())))
}

/// The caller's provider key in `headers`; `x-goog-api-key` is read only for a
/// provider that takes its key there (`goog`): a Google key is sent nowhere else.
fn client_provider_key<'a>(
    headers: &'a HeaderMap,
    auth: &GatewayAuth,
    goog: bool,
) -> Option<&'a str> {
    let explicit = header_token(headers, PROVIDER_KEY_HEADER);
    let x_api_key = header_token(headers, "x-api-key");
    let goog_api_key = goog.then(|| header_token(headers, GOOG_API_KEY)).flatten();
    if auth.is_open() {
        return explicit
            .or(x_api_key)
            .or(goog_api_key)
            .or_else(|| presented_bearer(headers));
    }
    // Not only the token authentication read: a caller holding a managed key and the
    // master key must not be able to hand the master key to a provider.
    [explicit, x_api_key, goog_api_key]
        .into_iter()
        .flatten()
        .find(|key| !auth.holds_gateway_key(key))
}

fn missing_client_key(provider: &str, gateway_auth_on: bool) -> GatewayError {
    let how = if gateway_auth_on {
        "send it as `X-Provider-Api-Key: <provider key>` (or `X-Api-Key`), with the gateway key as `Authorization: Bearer <gateway key>`"
    } else {
        "send it as `X-Api-Key: <provider key>` or `Authorization: Bearer <provider key>`"
    };
    GatewayError::unauthorized(format!(
        "provider `{provider}` uses each caller's own API key and this request has none: {how}"
    ))
    .with_code("missing_provider_key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ManagedKey;
    use crate::providers::{KeyRing, ProviderKind};
    use crate::proxy::ErrorKind;

    const GW: &str = "gw-token-test";
    const MANAGED: &str = "sk-aurora-managed-test";
    const DISABLED: &str = "sk-aurora-disabled-test";
    const CLIENT: &str = "sk-client-test";

    /// Gateway auth with master key `GW` and managed keys `MANAGED` and `DISABLED`
    /// when on; open when off.
    fn gateway_auth(on: bool) -> GatewayAuth {
        if !on {
            return GatewayAuth::default();
        }
        let managed = [(MANAGED, "ci", true), (DISABLED, "old", false)]
            .into_iter()
            .map(|(key, name, enabled)| {
                let entry = ManagedKey {
                    name: name.into(),
                    enabled,
                    expires_at: None,
                    passthrough: true,
                };
                (sha256(key.as_bytes()), entry)
            })
            .collect();
        GatewayAuth::new(Some(&Secret::new(GW)), managed)
    }

    fn caller_key_provider() -> Provider {
        Provider {
            name: "openai-east".into(),
            credential: ProviderCredential::CallerKey,
            ..Provider::unconfigured(ProviderKind::OpenAi)
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn sent(pairs: &[(&'static str, &str)], auth_on: bool) -> Option<String> {
        upstream_credential(
            &caller_key_provider(),
            &headers(pairs),
            &gateway_auth(auth_on),
        )
        .ok()
        .map(|c| c.key.unwrap().expose().to_string())
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn keyless_provider_sends_no_key_whatever_the_client_sent() {
        let p = Provider::unconfigured(ProviderKind::Vllm);
        let h = headers(&[("x-api-key", CLIENT)]);
        assert_eq!(
            upstream_credential(&p, &h, &gateway_auth(false)).unwrap(),
            UpstreamCredential::default()
        );
    }

    #[test]
    fn static_provider_sends_its_keys_in_turn_never_the_clients() {
        let ring = KeyRing::new(vec![Secret::new("sk-a"), Secret::new("sk-b")]).unwrap();
        let p = Provider {
            credential: ProviderCredential::Static(ring),
            ..Provider::unconfigured(ProviderKind::OpenAi)
        };
        let h = headers(&[("x-api-key", CLIENT), ("x-provider-api-key", CLIENT)]);
        let keys: Vec<String> = (0..3)
            .map(|_| {
                let c = upstream_credential(&p, &h, &gateway_auth(true)).unwrap();
                assert_eq!(c.caller_key_label, None);
                c.key.unwrap().expose().to_string()
            })
            .collect();
        assert_eq!(keys, ["sk-a", "sk-b", "sk-a"]);
    }

    #[test]
    fn auth_off_reads_x_api_key() {
        assert_eq!(
            sent(&[("x-api-key", CLIENT)], false).as_deref(),
            Some(CLIENT)
        );
    }

    #[test]
    fn auth_off_reads_bearer_when_there_is_no_x_api_key() {
        let b = bearer(CLIENT);
        assert_eq!(
            sent(&[("authorization", &b)], false).as_deref(),
            Some(CLIENT)
        );
    }

    #[test]
    fn auth_off_prefers_x_provider_api_key_then_x_api_key_over_bearer() {
        let b = bearer("sk-from-bearer");
        let all = [
            ("x-provider-api-key", "sk-explicit"),
            ("x-api-key", "sk-from-x-api-key"),
            ("authorization", b.as_str()),
        ];
        assert_eq!(sent(&all, false).as_deref(), Some("sk-explicit"));
        assert_eq!(sent(&all[1..], false).as_deref(), Some("sk-from-x-api-key"));
    }

    /// What a `!PASSTHRU` provider of `kind` sends for a request with `pairs`.
    fn sent_to(
        kind: ProviderKind,
        pairs: &[(&'static str, &str)],
        auth_on: bool,
    ) -> Option<String> {
        let provider = Provider {
            name: "own-keys".into(),
            credential: ProviderCredential::CallerKey,
            ..Provider::unconfigured(kind)
        };
        upstream_credential(&provider, &headers(pairs), &gateway_auth(auth_on))
            .ok()
            .map(|c| c.key.unwrap().expose().to_string())
    }

    #[test]
    fn a_callers_key_is_read_from_x_goog_api_key_by_a_provider_that_takes_it_there() {
        let gemini =
            |pairs: &[(&'static str, &str)], auth_on| sent_to(ProviderKind::Gemini, pairs, auth_on);
        let goog = [("x-goog-api-key", CLIENT)];
        assert_eq!(gemini(&goog, false).as_deref(), Some(CLIENT));
        let b = bearer("sk-bearer");
        let with_bearer = [("authorization", b.as_str()), ("x-goog-api-key", CLIENT)];
        assert_eq!(gemini(&with_bearer, false).as_deref(), Some(CLIENT));
        let gw = bearer(GW);
        let auth_on = [("authorization", gw.as_str()), ("x-goog-api-key", CLIENT)];
        assert_eq!(gemini(&auth_on, true).as_deref(), Some(CLIENT));
        let both = [("x-api-key", "sk-first"), ("x-goog-api-key", CLIENT)];
        assert_eq!(gemini(&both, true).as_deref(), Some("sk-first"));
        // The gateway key a Gemini SDK sends there is not a provider key.
        assert_eq!(gemini(&[("x-goog-api-key", GW)], true), None);
        // A Google key goes to no other provider.
        for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            assert_eq!(sent_to(kind, &goog, false), None, "{kind}");
            assert_eq!(sent_to(kind, &auth_on, true), None, "{kind}");
            let sent = sent_to(kind, &with_bearer, false);
            assert_eq!(sent.as_deref(), Some("sk-bearer"), "{kind}");
        }
    }

    #[test]
    fn auth_off_ignores_empty_headers_and_non_bearer_schemes() {
        assert_eq!(sent(&[("x-api-key", "  ")], false), None);
        assert_eq!(sent(&[("authorization", "Basic abc")], false), None);
        assert_eq!(sent(&[("authorization", "Bearer ")], false), None);
        assert_eq!(sent(&[], false), None);
    }

    #[test]
    fn auth_on_reads_x_provider_api_key_beside_the_bearer_gateway_token() {
        let b = bearer(GW);
        let h = [
            ("authorization", b.as_str()),
            ("x-provider-api-key", CLIENT),
        ];
        assert_eq!(sent(&h, true).as_deref(), Some(CLIENT));
    }

    #[test]
    fn auth_on_reads_x_api_key_beside_the_bearer_gateway_token() {
        let b = bearer(GW);
        let h = [("authorization", b.as_str()), ("x-api-key", CLIENT)];
        assert_eq!(sent(&h, true).as_deref(), Some(CLIENT));
    }

    #[test]
    fn auth_on_prefers_x_provider_api_key_over_x_api_key() {
        let b = bearer(GW);
        let h = [
            ("authorization", b.as_str()),
            ("x-api-key", "sk-other"),
            ("x-provider-api-key", CLIENT),
        ];
        assert_eq!(sent(&h, true).as_deref(), Some(CLIENT));
    }

    #[test]
    fn auth_on_never_takes_the_bearer_gateway_token_as_the_provider_key() {
        let b = bearer(GW);
        assert_eq!(sent(&[("authorization", &b)], true), None);
    }

    #[test]
    fn auth_on_x_api_key_equal_to_the_gateway_token_is_not_a_provider_key() {
        // The Anthropic SDK style: gateway token only as X-Api-Key.
        assert_eq!(sent(&[("x-api-key", GW)], true), None);
        // The same token sent in both places.
        let b = bearer(GW);
        assert_eq!(
            sent(&[("authorization", &b), ("x-api-key", GW)], true),
            None
        );
    }

    #[test]
    fn auth_on_x_provider_api_key_equal_to_the_gateway_token_is_not_a_provider_key() {
        let b = bearer(GW);
        let h = [("authorization", b.as_str()), ("x-provider-api-key", GW)];
        assert_eq!(sent(&h, true), None);
        let h = [("x-api-key", GW), ("x-provider-api-key", GW)];
        assert_eq!(sent(&h, true), None);
        let h = [
            ("authorization", b.as_str()),
            ("x-provider-api-key", GW),
            ("x-api-key", CLIENT),
        ];
        assert_eq!(sent(&h, true).as_deref(), Some(CLIENT));
    }

    #[test]
    fn auth_on_gateway_token_in_x_api_key_with_provider_key_in_x_provider_api_key() {
        let h = [("x-api-key", GW), ("x-provider-api-key", CLIENT)];
        assert_eq!(sent(&h, true).as_deref(), Some(CLIENT));
    }

    #[test]
    fn auth_on_master_key_beside_a_managed_bearer_is_not_a_provider_key() {
        let b = bearer(MANAGED);
        for header in ["x-api-key", "x-provider-api-key"] {
            assert_eq!(sent(&[("authorization", &b), (header, GW)], true), None);
        }
        let both = [
            ("authorization", b.as_str()),
            ("x-provider-api-key", GW),
            ("x-api-key", GW),
        ];
        assert_eq!(sent(&both, true), None);
        // Nor the master key written as a Bearer token in a provider key header.
        let gw = bearer(GW);
        for header in ["x-api-key", "x-provider-api-key"] {
            assert_eq!(sent(&[("authorization", &b), (header, &gw)], true), None);
        }
    }

    #[test]
    fn auth_off_a_caller_is_told_apart_by_a_key_in_x_goog_api_key_alone() {
        let auth = gateway_auth(false);
        let digest = |pairs: &[(&'static str, &str)]| caller_key_digest(&headers(pairs), &auth);
        let goog = digest(&[("x-goog-api-key", CLIENT)]);
        assert_eq!(goog, Some(hex::encode(sha256(CLIENT.as_bytes()))));
        assert_ne!(goog, digest(&[("x-goog-api-key", "sk-another-caller")]));
        assert_eq!(digest(&[]), None);
    }

    #[test]
    fn auth_on_any_managed_key_is_not_a_provider_key_whoever_presents_it() {
        let b = bearer(GW);
        for key in [MANAGED, DISABLED] {
            assert_eq!(
                sent(&[("authorization", &b), ("x-api-key", key)], true),
                None
            );
            let h = [("authorization", b.as_str()), ("x-provider-api-key", key)];
            assert_eq!(sent(&h, true), None);
        }
        // A real provider key beside them is still found.
        let h = [
            ("authorization", b.as_str()),
            ("x-provider-api-key", MANAGED),
            ("x-api-key", CLIENT),
        ];
        assert_eq!(sent(&h, true).as_deref(), Some(CLIENT));
    }

    #[test]
    fn auth_on_a_gateway_key_refused_as_provider_key_is_the_missing_key_401() {
        let b = bearer(MANAGED);
        let h = headers(&[("authorization", &b), ("x-api-key", GW)]);
        let err = upstream_credential(&caller_key_provider(), &h, &gateway_auth(true)).unwrap_err();
        assert_eq!(err.status, 401);
        assert_eq!(err.code, Some("missing_provider_key"));
        assert!(!err.message.contains(GW), "{}", err.message);
    }

    #[test]
    fn missing_client_key_is_401_naming_provider_and_header() {
        let err = upstream_credential(
            &caller_key_provider(),
            &HeaderMap::new(),
            &gateway_auth(false),
        )
        .unwrap_err();
        assert_eq!(err.status, 401);
        assert_eq!(err.kind, ErrorKind::Authentication);
        assert!(err.message.contains("`openai-east`"), "{}", err.message);
        assert!(err.message.contains("X-Api-Key"), "{}", err.message);
        let b = bearer(GW);
        let h = headers(&[("authorization", &b)]);
        let err = upstream_credential(&caller_key_provider(), &h, &gateway_auth(true)).unwrap_err();
        assert_eq!(err.status, 401);
        assert!(
            err.message.contains("X-Provider-Api-Key"),
            "{}",
            err.message
        );
        assert!(!err.message.contains(GW), "{}", err.message);
    }

    #[test]
    fn caller_key_credential_carries_a_short_hash_label_not_the_key() {
        let h = headers(&[("x-api-key", CLIENT)]);
        let c = upstream_credential(&caller_key_provider(), &h, &gateway_auth(false)).unwrap();
        let label = c.caller_key_label.unwrap();
        let expected = hex::encode(sha256(CLIENT.as_bytes()));
        assert_eq!(label, format!("caller_key:{}", &expected[..8]));
        assert!(!label.contains(CLIENT));
    }
}
