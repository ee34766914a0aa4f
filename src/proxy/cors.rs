//! Calls from a web page at another origin (`server.cors_allow_origins`): a browser
//! first asks with an `OPTIONS` preflight, which carries no credential and so is
//! answered here, before authentication; every answer to an allowed origin then says
//! so, the provider's own CORS headers replaced. Off unless origins are configured.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderValue, Method};
use pingora_http::{RequestHeader, ResponseHeader};

/// Allows every origin.
pub const ANY_ORIGIN: &str = "*";

/// The methods the gateway's routes take.
const METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// How long a browser may keep a preflight's answer, in seconds.
const MAX_AGE: u32 = 600;

/// The request's `Origin`, when `allowed` (exact origins, or [`ANY_ORIGIN`]) lets it
/// call; `None` without one or when CORS is off (nothing allowed).
pub fn allowed_origin(req: &RequestHeader, allowed: &[String]) -> Option<HeaderValue> {
    if allowed.is_empty() {
        return None;
    }
    let origin = req.headers.get(ORIGIN)?;
    let text = origin.to_str().ok()?;
    allowed
        .iter()
        .any(|a| a == ANY_ORIGIN || a.eq_ignore_ascii_case(text))
        .then(|| origin.clone())
}

/// Whether the request is a browser's preflight.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to an allowed origin's preflight: the methods the routes take and the
/// headers it asked for (the credential headers among them); the origin itself is
/// added with every answer ([`add_to_answer`]).
pub fn preflight_answer(req: &RequestHeader) -> pingora_core::Result<ResponseHeader> {
    // A 204 has no body and says no length (RFC 9110, 8.6).
    let mut resp = ResponseHeader::build(204, Some(3))?;
    resp.insert_header(ACCESS_CONTROL_ALLOW_METHODS, METHODS)?;
    if let Some(asked) = req.headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        resp.insert_header(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone())?;
    }
    resp.insert_header(ACCESS_CONTROL_MAX_AGE, MAX_AGE)?;
    Ok(resp)
}

/// Says `origin` may read the answer (and its headers: request ids, rate windows),
/// in place of what the provider said.
pub fn add_to_answer(resp: &mut ResponseHeader, origin: &HeaderValue) -> pingora_core::Result<()> {
    for name in [
        ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        ACCESS_CONTROL_EXPOSE_HEADERS,
    ] {
        resp.remove_header(&name);
    }
    resp.insert_header(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())?;
    resp.insert_header(ACCESS_CONTROL_EXPOSE_HEADERS, "*")?;
    // The answer differs by origin: a cache must not give one origin's to another.
    resp.append_header(VARY, "Origin")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/p/anthropic/v1/messages", None).unwrap();
        for (name, value) in headers {
            req.insert_header(*name, *value).unwrap();
        }
        req
    }

    #[test]
    fn only_a_listed_origin_is_allowed_and_only_when_some_are() {
        let req = request("POST", &[("origin", "https://app.example")]);
        let listed = vec!["https://app.example".to_string()];
        assert_eq!(
            allowed_origin(&req, &listed).unwrap(),
            "https://app.example"
        );
        assert!(allowed_origin(&req, &["https://other.example".into()]).is_none());
        assert!(allowed_origin(&req, &[]).is_none());
        assert_eq!(
            allowed_origin(&req, &[ANY_ORIGIN.into()]).unwrap(),
            "https://app.example"
        );
        assert!(allowed_origin(&request("POST", &[]), &listed).is_none());
    }

    #[test]
    fn a_preflight_is_answered_with_the_methods_and_the_headers_asked_for() {
        let req = request(
            "OPTIONS",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "x-api-key,anthropic-version",
                ),
            ],
        );
        assert!(is_preflight(&req));
        assert!(!is_preflight(&request("OPTIONS", &[])));
        let mut resp = preflight_answer(&req).unwrap();
        add_to_answer(&mut resp, &HeaderValue::from_static("https://app.example")).unwrap();
        assert_eq!(resp.status, 204);
        let h = &resp.headers;
        assert_eq!(h["access-control-allow-origin"], "https://app.example");
        assert_eq!(
            h["access-control-allow-headers"],
            "x-api-key,anthropic-version"
        );
        assert_eq!(h["access-control-allow-methods"], METHODS);
        assert_eq!(h["vary"], "Origin");
        assert!(h.get("content-length").is_none());
    }

    #[test]
    fn the_providers_own_cors_headers_are_replaced() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("access-control-allow-origin", "*")
            .unwrap();
        resp.insert_header("access-control-allow-credentials", "true")
            .unwrap();
        add_to_answer(&mut resp, &HeaderValue::from_static("https://app.example")).unwrap();
        assert_eq!(
            resp.headers
                .get_all("access-control-allow-origin")
                .iter()
                .count(),
            1
        );
        assert_eq!(
            resp.headers["access-control-allow-origin"],
            "https://app.example"
        );
        assert!(resp
            .headers
            .get("access-control-allow-credentials")
            .is_none());
    }
}
