//! A provider base URL split into the parts the proxy needs on every request.

use std::fmt;
use std::net::IpAddr;

/// `scheme://host[:port]/path` of a provider, validated once at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// Whether the upstream speaks TLS.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Explicit or scheme-default port.
    pub port: u16,
    /// Path prefix without a trailing slash (`/v1`, or empty).
    pub path: String,
    /// The `Host` header value, made once: every request sends it.
    host_value: http::HeaderValue,
    /// The host when it is an IP literal, read once: such a host is never resolved.
    ip: Option<IpAddr>,
}

/// Why a base URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("must start with http:// or https://")]
    Scheme,
    #[error("has no host")]
    NoHost,
    #[error("has an invalid port")]
    Port,
    #[error("must not carry a query string, fragment or credentials")]
    Extra,
}

impl BaseUrl {
    /// Whether `other` is the same place: scheme, host (any case), port and path. What
    /// a caller's own key is held to (one host may route to several providers by path).
    pub fn is_same_place(&self, other: &BaseUrl) -> bool {
        self.tls == other.tls
            && self.port == other.port
            && self.path == other.path
            && self.host.eq_ignore_ascii_case(&other.host)
    }

    /// Parses `http(s)://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Self, BaseUrlError> {
        let uri: http::Uri = url.trim().parse().map_err(|_| BaseUrlError::Scheme)?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(BaseUrlError::Scheme),
        };
        let authority = uri.authority().ok_or(BaseUrlError::NoHost)?;
        if authority.as_str().contains('@') || uri.query().is_some() || url.contains('#') {
            return Err(BaseUrlError::Extra);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(BaseUrlError::NoHost);
        }
        let port = match authority.port() {
            Some(p) => p.as_u16(),
            None if authority.as_str().ends_with(':') => return Err(BaseUrlError::Port),
            None if tls => 443,
            None => 80,
        };
        let path = uri.path().trim_end_matches('/').to_string();
        Ok(Self::new(tls, host, port, path))
    }

    /// A base URL from its parts (already checked).
    pub fn new(tls: bool, host: String, port: u16, path: String) -> Self {
        let value = host_header_text(tls, &host, port);
        let host_value = http::HeaderValue::from_str(&value)
            .unwrap_or_else(|_| http::HeaderValue::from_static("invalid"));
        Self {
            tls,
            ip: host.parse().ok(),
            host,
            port,
            path,
            host_value,
        }
    }

    /// The host, when it is an IP literal.
    pub fn ip_literal(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The value for the upstream `Host` header: the port only when not the default.
    pub fn host_header(&self) -> &http::HeaderValue {
        &self.host_value
    }
}

/// `host[:port]`, the port left out when it is the scheme's, an IPv6 host bracketed.
fn host_header_text(tls: bool, host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let default_port = if tls { 443 } else { 80 };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{}{}",
            host_header_text(self.tls, &self.host, self.port),
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_with_path() {
        let b = BaseUrl::parse("https://api.anthropic.com/v1/").unwrap();
        assert!(b.tls);
        assert_eq!(b.host, "api.anthropic.com");
        assert_eq!(b.port, 443);
        assert_eq!(b.path, "/v1");
        assert_eq!(b.host_header(), "api.anthropic.com");
    }

    #[test]
    fn keeps_explicit_port_in_host_header() {
        let b = BaseUrl::parse("http://127.0.0.1:8000/v1").unwrap();
        assert!(!b.tls);
        assert_eq!(b.port, 8000);
        assert_eq!(b.host_header(), "127.0.0.1:8000");
        assert_eq!(b.to_string(), "http://127.0.0.1:8000/v1");
    }

    #[test]
    fn accepts_empty_path() {
        assert_eq!(BaseUrl::parse("http://h").unwrap().path, "");
    }

    #[test]
    fn refuses_other_schemes_queries_and_userinfo() {
        assert_eq!(BaseUrl::parse("ftp://h/x"), Err(BaseUrlError::Scheme));
        assert_eq!(BaseUrl::parse("api.openai.com"), Err(BaseUrlError::Scheme));
        assert_eq!(BaseUrl::parse("https://h/v1?x=1"), Err(BaseUrlError::Extra));
        assert_eq!(BaseUrl::parse("https://u:p@h/v1"), Err(BaseUrlError::Extra));
    }

    #[test]
    fn brackets_ipv6_hosts() {
        let b = BaseUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!(b.host, "::1");
        assert_eq!(b.host_header(), "[::1]:9000");
    }

    #[test]
    fn ip_literal_hosts_are_read_once_names_are_left_to_resolve() {
        let ip = |url: &str| BaseUrl::parse(url).unwrap().ip_literal();
        assert_eq!(ip("http://127.0.0.1:9000/v1"), Some([127, 0, 0, 1].into()));
        assert_eq!(
            ip("http://[::1]:9000"),
            Some(std::net::Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(ip("https://api.openai.com/v1"), None);
        assert_eq!(ip("http://localhost:8000"), None);
    }
}
