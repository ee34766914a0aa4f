//! A URL from the config as an error message may show it: without what may be a
//! credential (a user and password before `@`, a query string such as `?key=…` or
//! `?pass=…`, a fragment), so that a refusal printed at start-up, by `--check-config`
//! or in the log of a reload never repeats a secret the operator wrote into it.

/// `url` with its user part, query and fragment left out (each shown as `…`). All
/// before the last `@` counts as the user part, whatever it holds: a password with an
/// unencoded `/`, `?` or `#` (which is why such a URL is refused) is never shown.
pub fn shown_url(url: &str) -> String {
    let (scheme, after) = match url.find("://") {
        Some(at) => (&url[..at + 3], &url[at + 3..]),
        None => ("", url),
    };
    let (user, rest) = match after.rfind('@') {
        Some(at) => ("…@", &after[at + 1..]),
        None => ("", after),
    };
    let (kept, cut) = match rest.find(['?', '#']) {
        Some(at) => (&rest[..at], "?…"),
        None => (rest, ""),
    };
    format!("{scheme}{user}{kept}{cut}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_keeps_no_user_password_query_or_fragment() {
        assert_eq!(
            shown_url("https://svc:s3cret@vllm.internal/v1"),
            "https://…@vllm.internal/v1"
        );
        assert_eq!(
            shown_url("https://gen.example/v1?key=AIzaSECRET"),
            "https://gen.example/v1?…"
        );
        assert_eq!(
            shown_url("redis+unix:///run/redis.sock?pass=hunter2"),
            "redis+unix:///run/redis.sock?…"
        );
        assert_eq!(
            shown_url("http://collector:4318#x"),
            "http://collector:4318?…"
        );
        assert_eq!(shown_url("user:pw@host:6379"), "…@host:6379");
        assert_eq!(
            shown_url("htps://api.openai.com/v1"),
            "htps://api.openai.com/v1"
        );
    }
}
