//! The client's query string as it goes upstream: byte for byte, less the parameters
//! that carry credentials (`key`, `api_key`, Google's OAuth `access_token` and
//! `oauth_token`), and at Google less those that reshape an answer or a request.
//! The gateway reads its own key there (Gemini's `?key=`), and a provider's credential
//! is the gateway's to add, in its header: a key in the query would reach the provider
//! beside it, or reach a provider it is not for. Google's APIs take system parameters
//! on every method: `fields` answers only the members it names, `alt=proto` answers in
//! protobuf, `callback` wraps the answer in JavaScript. Each would hide the usage the
//! gateway charges from an answer (or a batch's usage from its poll).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::logging::is_credential_param;

/// Google's system parameters that reshape an answer, lowercase (`alt` aside, and
/// every `$` one: `$fields`, `$alt`, `$ct`, `$httpMethod`, which makes a `POST` a
/// `DELETE` the gateway would not see).
const RESHAPING: [&str; 2] = ["fields", "callback"];

/// The `alt` values that keep an answer readable: JSON (the default), a stream of it,
/// a file's bytes.
const READABLE_ALT: [&str; 3] = ["json", "sse", "media"];

/// `query` less its credential parameters (by name, any case, percent-decoded) and,
/// for a Google API (`google`), those that reshape its answer; the rest in order;
/// `None` when nothing is left. Borrowed, and the same bytes, when it held none; when
/// one is taken out, empty pairs (`a=1&&b=2`) go with it.
pub fn upstream_query(query: &str, google: bool) -> Option<Cow<'_, str>> {
    let dropped = |pair: &&str| carries_credential(pair) || (google && reshapes(pair));
    if !query.split('&').any(|pair| dropped(&pair)) {
        return Some(Cow::Borrowed(query));
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !dropped(pair))
        .collect();
    (!kept.is_empty()).then(|| Cow::Owned(kept.join("&")))
}

/// A pair's name and value, percent-decoded when they hold escapes (`k%65y` is `key`
/// to the provider that decodes it).
fn decoded(pair: &str) -> (Cow<'_, str>, Cow<'_, str>) {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    (unescaped(name), unescaped(value))
}

fn unescaped(text: &str) -> Cow<'_, str> {
    if text.contains('%') {
        percent_decode_str(text).decode_utf8_lossy()
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether `name=value` (or a bare `name`) names a credential parameter.
fn carries_credential(pair: &str) -> bool {
    is_credential_param(&decoded(pair).0)
}

/// Whether `name=value` is a Google system parameter that reshapes the answer.
fn reshapes(pair: &str) -> bool {
    let (name, value) = decoded(pair);
    if name.eq_ignore_ascii_case("alt") {
        return !READABLE_ALT
            .iter()
            .any(|alt| value.eq_ignore_ascii_case(alt));
    }
    name.starts_with('$') || RESHAPING.iter().any(|p| name.eq_ignore_ascii_case(p))
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
            for google in [false, true] {
                let kept = upstream_query(query, google);
                assert!(
                    matches!(kept, Some(Cow::Borrowed(q)) if q == query),
                    "{query}"
                );
            }
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
            ("access_token=ya29.x&oauth_token=y&alt=sse", Some("alt=sse")),
            ("a=1&&key=x&", Some("a=1")),
        ] {
            assert_eq!(upstream_query(query, false).as_deref(), kept, "{query}");
        }
    }

    #[test]
    fn googles_reshaping_parameters_are_taken_out_at_google_only() {
        for (query, kept) in [
            ("alt=sse", Some("alt=sse")),
            ("alt=media&x=1", Some("alt=media&x=1")),
            ("alt=json", Some("alt=json")),
            ("alt=proto", None),
            ("$alt=json", None),
            ("fields=name&alt=sse", Some("alt=sse")),
            ("%24fields=name,metadata(state)", None),
            ("FIELDS=name&pageSize=5", Some("pageSize=5")),
            ("callback=f&key=x", None),
            ("a%6Ct=proto&b=2", Some("b=2")),
            ("%24httpMethod=DELETE", None),
            ("$ct=application/json%2Bprotobuf&alt=sse", Some("alt=sse")),
        ] {
            assert_eq!(upstream_query(query, true).as_deref(), kept, "{query}");
        }
        let other = "fields=name&alt=proto&callback=f";
        assert_eq!(upstream_query(other, false).as_deref(), Some(other));
    }
}
