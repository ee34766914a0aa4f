//! The client's query string as it goes upstream: byte for byte, less the parameters
//! that carry keys (`key`, `api_key`). The gateway reads its own key there (Gemini's
//! `?key=`), and a provider's credential is the gateway's to add, in its header: a key
//! in the query would reach the provider beside it, or reach a provider it is not for.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::logging::is_credential_param;

/// `query` less its credential parameters (by name, any case, percent-decoded), the
/// rest in order; `None` when nothing is left. Borrowed, and the same bytes, when it
/// held none; when one is taken out, empty pairs (`a=1&&b=2`) go with it.
pub fn upstream_query(query: &str) -> Option<Cow<'_, str>> {
    if !query.split('&').any(carries_credential) {
        return Some(Cow::Borrowed(query));
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !carries_credential(pair))
        .collect();
    (!kept.is_empty()).then(|| Cow::Owned(kept.join("&")))
}

/// Whether `name=value` (or a bare `name`) names a credential parameter.
fn carries_credential(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    if name.contains('%') {
        // `k%65y` is `key` to the provider that decodes it.
        is_credential_param(&percent_decode_str(name).decode_utf8_lossy())
    } else {
        is_credential_param(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_without_credentials_passes_byte_for_byte() {
        for query in [
            "alt=sse",
            "",
            "a=1&&b=%20c+d",
            "monkey=1&keys=2&api_keyring=3&key_id=4",
            "beta=true&after=resp%3D1",
        ] {
            let kept = upstream_query(query);
            assert!(
                matches!(kept, Some(Cow::Borrowed(q)) if q == query),
                "{query}"
            );
        }
    }

    #[test]
    fn credential_parameters_are_taken_out_in_any_case_or_spelling() {
        for (query, kept) in [
            ("key=gw-secret", None),
            ("alt=sse&key=gw-secret", Some("alt=sse")),
            ("key=gw-secret&alt=sse", Some("alt=sse")),
            ("a=1&KEY=x&b=2&api_key=y&c", Some("a=1&b=2&c")),
            ("k%65y=x&alt=sse", Some("alt=sse")),
            ("Api_Key=y", None),
            ("a=1&&key=x&", Some("a=1")),
        ] {
            assert_eq!(upstream_query(query).as_deref(), kept, "{query}");
        }
    }
}
