//! A provider's `Location` on a `/p/` answer, as the client should follow it. One that
//! points below the provider's base URL (a whole URL at its host, or a path on it: a
//! server redirecting `…/completions/` to `…/completions`, a resource just made) is
//! the same endpoint below the gateway's `/p/{provider}/`: the client comes back
//! through the gateway, with its gateway key, rather than going to the provider's
//! address, which may be an internal host, and would get that key (or nothing that
//! authenticates). Any other `Location` (another host, a relative reference) is left
//! as the provider sent it.

use super::passthrough::PassthroughRoute;
use crate::providers::BaseUrl;

/// What becomes of the provider's `Location` in the client's answer.
#[derive(Debug)]
pub enum LocationEdit {
    /// Left as the provider sent it (or there is none).
    AsSent,
    /// Replaced: the same endpoint below the gateway's `/p/{provider}/`.
    Through(http::HeaderValue),
    /// Taken out: on a model route (`/v1/…`) the provider's paths are not the
    /// client's, and a client following it would take its gateway key to the
    /// provider's own (perhaps internal) address.
    Removed,
}

impl LocationEdit {
    /// Makes the edit in the answer's `headers`.
    pub fn apply(self, headers: &mut http::HeaderMap) {
        match self {
            Self::AsSent => {}
            Self::Through(location) => {
                headers.insert(http::header::LOCATION, location);
            }
            Self::Removed => {
                headers.remove(http::header::LOCATION);
            }
        }
    }
}

/// The client's `Location` for the provider's `location`, when it points below `base`
/// and the gateway reads what it becomes as the same upstream path (with
/// `allow_v1_alias` as configured: no dot segment, escaped slash or `v1` the gateway
/// would read otherwise); `prefix` is the client's `/p/{provider}` as it wrote it.
/// `None` leaves it as sent.
pub fn client_location(
    location: &str,
    base: &BaseUrl,
    prefix: &str,
    allow_v1_alias: bool,
) -> Option<String> {
    let location = location.trim();
    let target = match location.split_once("://") {
        Some((scheme, rest)) => {
            let tls = if scheme.eq_ignore_ascii_case("https") {
                true
            } else if scheme.eq_ignore_ascii_case("http") {
                false
            } else {
                return None;
            };
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if tls != base.tls || !is_base_authority(&rest[..end], base) {
                return None;
            }
            &rest[end..]
        }
        // A path on the provider's host (`//host/…` names another host).
        None if location.starts_with('/') && !location.starts_with("//") => location,
        None => return None,
    };
    let path_end = target.find(['?', '#']).unwrap_or(target.len());
    let (path, after) = target.split_at(path_end);
    let endpoint = path.strip_prefix(base.path.as_str())?.strip_prefix('/')?;
    let provider = prefix.strip_prefix(super::passthrough::PASSTHROUGH_PREFIX)?;
    let route = PassthroughRoute::parse(&format!("{provider}/{endpoint}"), allow_v1_alias);
    let same = route.is_ok_and(|route| route.upstream_path(&base.path, None) == path);
    same.then(|| format!("{prefix}/{endpoint}{after}"))
}

/// Whether `authority` (`host[:port]`, no user part) is the base URL's.
fn is_base_authority(authority: &str, base: &BaseUrl) -> bool {
    let Ok(parsed) = authority.parse::<http::uri::Authority>() else {
        return false;
    };
    if authority.contains('@') {
        return false;
    }
    let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_u16().unwrap_or(if base.tls { 443 } else { 80 });
    host.eq_ignore_ascii_case(&base.host) && port == base.port
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> BaseUrl {
        BaseUrl::parse(url).unwrap()
    }

    #[test]
    fn a_location_below_the_base_url_comes_back_through_the_gateway() {
        let vllm = base("http://10.0.0.5:8000/v1");
        for (location, client) in [
            (
                "http://10.0.0.5:8000/v1/chat/completions",
                "/p/vllm/chat/completions",
            ),
            (
                "HTTP://10.0.0.5:8000/v1/files/a?x=1#f",
                "/p/vllm/files/a?x=1#f",
            ),
            ("/v1/files/file-1/content", "/p/vllm/files/file-1/content"),
        ] {
            assert_eq!(
                client_location(location, &vllm, "/p/vllm", true).as_deref(),
                Some(client),
                "{location}"
            );
        }
        let google = base("https://generativelanguage.googleapis.com");
        assert_eq!(
            client_location(
                "https://GenerativeLanguage.googleapis.com:443/v1beta/files/f",
                &google,
                "/p/gemini-native",
                true
            )
            .as_deref(),
            Some("/p/gemini-native/v1beta/files/f")
        );
        // At a host's root, a `v1` the gateway drops is written back upstream.
        assert_eq!(
            client_location("/v1/files/f", &google, "/p/gemini-native", true).as_deref(),
            Some("/p/gemini-native/v1/files/f")
        );
    }

    #[test]
    fn a_location_the_gateway_would_read_as_another_path_is_left_as_sent() {
        let vllm = base("http://10.0.0.5:8000/v1");
        for location in [
            // No endpoint: the gateway refuses `/p/vllm/`.
            "http://10.0.0.5:8000/v1",
            "http://10.0.0.5:8000/v1?after=x",
            // Dot segments and escaped slashes resolve or decode to other paths.
            "http://10.0.0.5:8000/v1/../admin",
            "/v1/%2e%2e/admin",
            "/v1/files/a%2Fb",
            // The gateway would drop this `v1`: another path upstream.
            "/v1/v1/files/x",
        ] {
            assert_eq!(
                client_location(location, &vllm, "/p/vllm", true),
                None,
                "{location}"
            );
        }
        // At a host's root with the alias off, `/p/x/v1/…` is refused.
        let root = base("http://10.0.0.5:8000");
        assert_eq!(client_location("/v1/files/f", &root, "/p/x", false), None);
        assert_eq!(
            client_location("/files/f", &root, "/p/x", false).as_deref(),
            Some("/p/x/files/f")
        );
    }

    #[test]
    fn any_other_location_is_left_as_sent() {
        let vllm = base("http://10.0.0.5:8000/v1");
        for location in [
            "https://10.0.0.5:8000/v1/x",
            "http://10.0.0.5:8001/v1/x",
            "http://10.0.0.6:8000/v1/x",
            "http://user@10.0.0.5:8000/v1/x",
            "http://10.0.0.5:8000/v2/x",
            "http://10.0.0.5:8000/v1x",
            "//10.0.0.5:8000/v1/x",
            "https://storage.example/signed?sig=1",
            "chat/completions",
            "../x",
            "ftp://10.0.0.5:8000/v1/x",
        ] {
            assert_eq!(
                client_location(location, &vllm, "/p/vllm", true),
                None,
                "{location}"
            );
        }
    }
}
