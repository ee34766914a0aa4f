//! Which `/p/` answers name an Anthropic message batch's results (`results_url`), and
//! where the client reaches them: the same endpoint below the gateway's `/p/` address,
//! as the client reached the gateway.

use pingora_http::RequestHeader;

use super::passthrough::PassthroughRoute;
use crate::providers::{Provider, WireFormat};
use crate::translate::results_url::ResultsUrlRewrite;

/// The rewrite of the `results_url`s in the answer to a `/p/` request for `route` to
/// `provider`, when that answer describes message batches (`messages/batches`, one
/// batch, its cancel): `None` for any other, or when the client's address cannot be
/// told (no `Host`). `downstream_tls`: whether the client spoke TLS to the gateway,
/// asked only of a request the rewrite applies to.
pub fn results_url_rewrite(
    provider: &Provider,
    route: &PassthroughRoute,
    req: &RequestHeader,
    downstream_tls: impl FnOnce() -> bool,
) -> Option<ResultsUrlRewrite> {
    let endpoint = route.endpoint.as_str();
    // A `HEAD` has no body to rewrite, and its `Content-Length` must stay.
    if provider.format != WireFormat::Anthropic
        || req.method == http::Method::HEAD
        || !names_batches(endpoint)
    {
        return None;
    }
    let base = &provider.base;
    // Where the endpoint sits upstream: the base path, and the client's `v1` below a
    // provider at its host's root.
    let from = format!(
        "{}://{}{}{}/",
        if base.tls { "https" } else { "http" },
        base.host_header().to_str().ok()?,
        base.path,
        route.version_below(&base.path),
    );
    let host = match req.uri.authority() {
        Some(authority) => authority.as_str(),
        None => req.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    // A host and port only: no user part (`gw@elsewhere`) to send the key elsewhere.
    let authority = host.parse::<http::uri::Authority>().ok()?;
    if host.is_empty() || host.contains('@') || authority.as_str() != host {
        return None;
    }
    let path = req.uri.path();
    let prefix = path
        .strip_suffix(endpoint)
        .filter(|p| p.ends_with('/'))
        .unwrap_or(path);
    let prefix = if prefix.len() < path.len() {
        prefix.to_string()
    } else {
        // An endpoint spelled with escapes: the provider's name as the client wrote it.
        format!("{}/", super::passthrough::client_prefix(path)?)
    };
    let to = format!("{}://{host}{prefix}", client_scheme(req, downstream_tls()));
    ResultsUrlRewrite::new(from, to)
}

/// `messages/batches`, `messages/batches/{id}` or `messages/batches/{id}/cancel`.
fn names_batches(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("messages/batches") else {
        return false;
    };
    let mut parts = rest.split('/').skip(1);
    match (parts.next(), parts.next(), parts.next()) {
        (None, ..) => rest.is_empty(),
        (Some(id), None, _) => !id.is_empty(),
        (Some(id), Some("cancel"), None) => !id.is_empty(),
        _ => false,
    }
}

/// The scheme the client used: as a proxy in front says (`X-Forwarded-Proto`), else
/// as it reached the gateway.
fn client_scheme(req: &RequestHeader, downstream_tls: bool) -> &'static str {
    let forwarded = req
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    match forwarded {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ if downstream_tls => "https",
        _ => "http",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_endpoints_are_told_apart() {
        for yes in [
            "messages/batches",
            "messages/batches/msgbatch_1",
            "messages/batches/msgbatch_1/cancel",
        ] {
            assert!(names_batches(yes), "{yes}");
        }
        for no in [
            "messages",
            "messages/batches/msgbatch_1/results",
            "messages/batches/",
            "messages/batchesx",
            "messages/batches/a/b/c",
            "v1/messages/batches",
        ] {
            assert!(!names_batches(no), "{no}");
        }
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            req.insert_header(k.to_string(), *v).unwrap();
        }
        req
    }

    /// The route of a client's `/p/` `path`.
    fn route(path: &str) -> PassthroughRoute {
        PassthroughRoute::parse(path.strip_prefix("/p/").unwrap(), true).unwrap()
    }

    fn rewritten(path: &str, headers: &[(&str, &str)], tls: bool) -> Option<String> {
        let provider = Provider::unconfigured(crate::providers::ProviderKind::Anthropic);
        let doc = r#"{"results_url":"https://api.anthropic.com/v1/messages/batches/b/results"}"#;
        rewritten_by(&provider, path, headers, tls, doc)
    }

    fn rewritten_by(
        provider: &Provider,
        path: &str,
        headers: &[(&str, &str)],
        tls: bool,
        doc: &'static str,
    ) -> Option<String> {
        let req = request(path, headers);
        let mut rewrite = results_url_rewrite(provider, &route(path), &req, || tls)?;
        let out = rewrite.pass(Some(bytes::Bytes::from_static(doc.as_bytes())), true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        Some(v["results_url"].as_str().unwrap().to_string())
    }

    #[test]
    fn results_of_a_provider_at_its_hosts_root_point_at_the_v1_it_serves_them_under() {
        let mut provider = Provider::unconfigured(crate::providers::ProviderKind::Anthropic);
        provider.base = crate::providers::BaseUrl::parse("https://claude.internal").unwrap();
        let doc = r#"{"results_url":"https://claude.internal/v1/messages/batches/b/results"}"#;
        let host = [("host", "gw.example")];
        let url = rewritten_by(
            &provider,
            "/p/claude/v1/messages/batches",
            &host,
            false,
            doc,
        );
        assert_eq!(
            url.as_deref(),
            Some("http://gw.example/p/claude/v1/messages/batches/b/results")
        );
        let path = route("/p/claude/v1/messages/batches/b/results").upstream_path("", None);
        assert_eq!(
            path, "/v1/messages/batches/b/results",
            "where the link leads"
        );
    }

    #[test]
    fn results_point_below_the_gateway_address_the_client_used() {
        let host = [("host", "gw.example:8080")];
        assert_eq!(
            rewritten("/p/anthropic/v1/messages/batches/b", &host, false).as_deref(),
            Some("http://gw.example:8080/p/anthropic/v1/messages/batches/b/results")
        );
        assert_eq!(
            rewritten("/p/anthropic/messages/batches", &host, true).as_deref(),
            Some("https://gw.example:8080/p/anthropic/messages/batches/b/results")
        );
        let proxied = [("host", "ai.example"), ("x-forwarded-proto", "https")];
        assert_eq!(
            rewritten("/p/anthropic/v1/messages/%62atches", &proxied, false).as_deref(),
            Some("https://ai.example/p/anthropic/messages/batches/b/results")
        );
        assert_eq!(
            rewritten("/p/anthropic/v1/messages/batches", &[], false),
            None
        );
        assert_eq!(
            rewritten("/p/anthropic/v1/messages", &host, false),
            None,
            "not a batch"
        );
        for host in ["gw@elsewhere.example", "gw.example/x", "gw.example?x"] {
            let path = "/p/anthropic/messages/batches";
            assert_eq!(rewritten(path, &[("host", host)], false), None, "{host}");
        }
        let provider = Provider::unconfigured(crate::providers::ProviderKind::Anthropic);
        let mut head = request("/p/anthropic/messages/batches", &host);
        head.set_method(http::Method::HEAD);
        let batches = route("/p/anthropic/messages/batches");
        assert!(results_url_rewrite(&provider, &batches, &head, || false).is_none());
    }
}
