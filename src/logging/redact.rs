//! Takes credentials out of log text, whoever wrote the line: the value of a credential
//! header (as `name: value`, as Debug's `"name": "value"`, or inside a raw request
//! `name: value\r\n`), a `Bearer` token, and the `key`/`api_key` query parameters some
//! APIs take keys in.

use std::borrow::Cow;
use std::fmt;

use http::HeaderMap;

/// Headers whose values are credentials, lowercase: none of them is ever sent upstream
/// as the client sent it.
pub const CREDENTIAL_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-provider-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
];

/// Query parameters that carry credentials (Gemini's `?key=`, Google's OAuth
/// `access_token`), lowercase.
const CREDENTIAL_PARAMS: [&str; 4] = ["key", "api_key", "access_token", "oauth_token"];

/// What a credential is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Whether query parameter `name` (any case, as written) carries a credential.
pub fn is_credential_param(name: &str) -> bool {
    CREDENTIAL_PARAMS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
}

/// Whether header `name` (any case) carries a credential.
pub fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// `text` with every credential value replaced by [`REDACTED`]; borrowed when there
/// was none. A value that is already a placeholder (`<key>`, as in the gateway's own
/// help messages) is left alone.
pub fn redact(text: &str) -> Cow<'_, str> {
    redact_with(text, false)
}

/// [`redact`] for a line of the gateway's own access log, whose unquoted values never
/// hold a space (a value with one is quoted): the value after a credential header's
/// name (`x-api-key:…`, as a client may write its own request id) ends at the first
/// space, so that its redaction cannot take the fields after it with it.
pub fn redact_access_line(text: &str) -> Cow<'_, str> {
    redact_with(text, true)
}

/// [`redact`], a header value unquoted ending at a space when `fields` says so.
///
/// Linear in the text's length, whatever it holds: the names found are read in the
/// order they stand, and each scan for a value's end or a quote goes on from where
/// the last one stopped, so that a line of many names (`key=key=key=…`, as a client
/// can write in a path) costs no more than reading it once per name.
fn redact_with(text: &str, fields: bool) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let mut found: Vec<(usize, Name)> = Vec::new();
    for name in CREDENTIAL_HEADERS {
        found.extend(
            lower
                .match_indices(name)
                .map(|(at, _)| (at, Name::Header(name))),
        );
    }
    for name in CREDENTIAL_PARAMS {
        found.extend(
            lower
                .match_indices(name)
                .map(|(at, _)| (at, Name::Param(name))),
        );
    }
    found.extend(
        lower
            .match_indices("bearer")
            .map(|(at, _)| (at, Name::Bearer)),
    );
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    found.sort_unstable_by_key(|(at, _)| *at);
    let mut scan = Scanner::new(lower.as_bytes());
    let mut spans = credential_spans(&mut scan, found, fields);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in spans {
        if end <= copied {
            continue;
        }
        if start >= copied {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
        }
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The spans of the credential values after the names `found` (in the order they
/// stand in the text).
fn credential_spans(
    scan: &mut Scanner<'_>,
    found: Vec<(usize, Name)>,
    fields: bool,
) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (at, name) in found {
        let span = match name {
            Name::Header(name) => scan.value_after_name(at, name.len(), b":=", fields),
            Name::Param(name) => scan.value_after_name(at, name.len(), b"=", fields),
            Name::Bearer => scan.token_after_scheme(at, "bearer".len()),
        };
        spans.extend(span);
    }
    spans
}

/// A credential's name found in a text.
#[derive(Clone, Copy)]
enum Name {
    /// A header's, its value after `:` or `=`.
    Header(&'static str),
    /// A query parameter's, its value after `=`.
    Param(&'static str),
    /// The `Bearer` scheme, its token after a space.
    Bearer,
}

/// Header map contents for a log line, credential values shown as [`REDACTED`].
pub struct RedactedHeaders<'a>(pub &'a HeaderMap);

impl fmt::Display for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_credential_header(name.as_str()) || value.is_sensitive() {
                write!(f, "{name}: {REDACTED}")?;
            } else {
                write!(f, "{name}: {value:?}")?;
            }
        }
        f.write_str("}")
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether a word matched at `at` is not the tail of a longer name. A written-out
/// line break (`\r\n` in Debug output of raw bytes) counts as a boundary.
fn starts_alone(lower: &[u8], at: usize) -> bool {
    at == 0
        || !is_name_byte(lower[at - 1])
        || (at >= 2 && lower[at - 2] == b'\\' && matches!(lower[at - 1], b'n' | b'r' | b't'))
}

/// Reads one text for credential values, remembering how far each kind of scan has
/// gone: a scan that starts within a stretch an earlier one read through gets that
/// one's answer without reading it again.
struct Scanner<'a> {
    lower: &'a [u8],
    /// `(from, to)`: no value ends in `from..to`, one ends at `to` (or the text does).
    word_end: Option<(usize, usize)>,
    line_end: Option<(usize, usize)>,
    /// The same for a space, ending an access line's unquoted field.
    space: Option<(usize, usize)>,
    /// The same for the quote closing a quoted value.
    quote: Option<(usize, usize)>,
    /// How far the count of quotes from the start has gone: the place last asked
    /// about, the next position to read, and whether a quote is open there.
    quotes_read: (usize, usize, bool),
    /// Bytes the scans have read, all together.
    read: usize,
}

impl<'a> Scanner<'a> {
    fn new(lower: &'a [u8]) -> Self {
        Self {
            lower,
            word_end: None,
            line_end: None,
            space: None,
            quote: None,
            quotes_read: (0, 0, false),
            read: 0,
        }
    }

    /// The span of the value after the name matched at `at`: the name must stand
    /// alone, then come one of `separators` (after a closing `"` of a quoted name,
    /// spaces allowed).
    fn value_after_name(
        &mut self,
        at: usize,
        len: usize,
        separators: &[u8],
        fields: bool,
    ) -> Option<(usize, usize)> {
        let lower = self.lower;
        if !starts_alone(lower, at) {
            return None;
        }
        let mut i = at + len;
        if lower.get(i).is_some_and(|b| is_name_byte(*b)) {
            return None;
        }
        if lower.get(i) == Some(&b'"') {
            i += 1;
        }
        i = skip_spaces(lower, i);
        let separator = *lower.get(i)?;
        if !separators.contains(&separator) {
            return None;
        }
        if fields {
            return self.field_value_after(i + 1, separator);
        }
        i = skip_spaces(lower, i + 1);
        if lower.get(i) == Some(&b'"') {
            let start = i + 1;
            let end = self.closing_quote(start);
            return (end > start && !is_placeholder(lower, start, end)).then_some((start, end));
        }
        let end = self.unquoted_end(i, separator == b'=');
        (end > i && !is_placeholder(lower, i, end)).then_some((i, end))
    }

    /// The span of a credential's value at `start` in an access line, right after its
    /// `separator`. Every raw `"` of such a line delimits a field (a value's own are
    /// escaped), so none opens the credential's value: a value that would begin at
    /// one, or, outside quotes, at a space, is empty. Outside quotes the value ends at
    /// the next space (the next field), within them at the closing quote.
    fn field_value_after(&mut self, start: usize, separator: u8) -> Option<(usize, usize)> {
        let lower = self.lower;
        let within = self.within_quotes(start);
        let i = if within {
            skip_spaces(lower, start)
        } else {
            start
        };
        if matches!(lower.get(i), None | Some(b'"' | b' ')) {
            return None;
        }
        let end = if separator == b'=' {
            self.unquoted_end(i, true)
        } else if within {
            self.unquoted_end(i, false)
        } else {
            self.unquoted_end(i, false).min(self.field_end(i))
        };
        (end > i && !is_placeholder(lower, i, end)).then_some((i, end))
    }

    /// The span of the token after an auth scheme word matched at `at`.
    fn token_after_scheme(&mut self, at: usize, len: usize) -> Option<(usize, usize)> {
        let lower = self.lower;
        if !starts_alone(lower, at) {
            return None;
        }
        let i = at + len;
        if lower.get(i) != Some(&b' ') {
            return None;
        }
        let start = skip_spaces(lower, i);
        let end = self.unquoted_end(start, true);
        (end > start && lower[start] != b'<').then_some((start, end))
    }

    /// The index of the `"` closing a quoted value that starts at `start` (escaped
    /// quotes skipped), or the end of the text. `start` follows a `"`, so a scan that
    /// went past it read it in step (the quote before it was escaped), and its answer
    /// holds.
    fn closing_quote(&mut self, start: usize) -> usize {
        let lower = self.lower;
        remembered(&mut self.quote, &mut self.read, start, |start| {
            let mut i = start;
            while i < lower.len() {
                match lower[i] {
                    b'\\' => i += 2,
                    b'"' => return i,
                    _ => i += 1,
                }
            }
            lower.len()
        })
    }

    /// Where an unquoted value ends: at a line break (raw or written as `\r`/`\n`), a
    /// quote or backtick, and for a `=` parameter or a token also at a space, `&`,
    /// `;`, `,` or `#`.
    fn unquoted_end(&mut self, start: usize, word: bool) -> usize {
        let lower = self.lower;
        let memo = if word {
            &mut self.word_end
        } else {
            &mut self.line_end
        };
        let read = &mut self.read;
        remembered(memo, read, start, |start| {
            lower[start.min(lower.len())..]
                .iter()
                .position(|&b| {
                    matches!(b, b'\r' | b'\n' | b'\\' | b'"' | b'`' | b'\'')
                        || (word && matches!(b, b' ' | b'&' | b';' | b',' | b'#' | b'}' | b')'))
                })
                .map_or(lower.len(), |p| start + p)
        })
    }

    /// Where an unquoted value of an access line that starts at `start` ends: at a
    /// space.
    fn field_end(&mut self, start: usize) -> usize {
        let lower = self.lower;
        remembered(&mut self.space, &mut self.read, start, |start| {
            lower[start.min(lower.len())..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(lower.len(), |p| start + p)
        })
    }

    /// Whether `at` lies within a quoted value (a quote not escaped opened before it
    /// is not closed yet). Read on from the last answer when `at` is past it.
    fn within_quotes(&mut self, at: usize) -> bool {
        let lower = self.lower;
        let (asked, mut i, mut within) = self.quotes_read;
        if at < asked {
            // Asked about a place before the last: read again from the start (names
            // are read in order, so only a value starting before the last one's does).
            (i, within) = (0, false);
        }
        let from = i;
        while i < at.min(lower.len()) {
            match lower[i] {
                b'\\' => i += 2,
                b'"' => {
                    within = !within;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        self.read += i.saturating_sub(from);
        self.quotes_read = (at, i, within);
        within
    }
}

/// `scan(start)`, unless `memo` holds the answer of a scan that read through `start`.
fn remembered(
    memo: &mut Option<(usize, usize)>,
    read: &mut usize,
    start: usize,
    scan: impl FnOnce(usize) -> usize,
) -> usize {
    if let Some((from, to)) = *memo {
        if from <= start && start <= to {
            return to;
        }
    }
    let to = scan(start);
    *read += to.saturating_sub(start);
    *memo = Some((start, to));
    to
}

fn skip_spaces(lower: &[u8], mut i: usize) -> usize {
    while lower.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// A value like `<key>` or `Bearer <gateway key>`: the gateway's own help text.
fn is_placeholder(lower: &[u8], start: usize, end: usize) -> bool {
    let value = &lower[start..end];
    let value = value
        .strip_prefix(b"bearer ")
        .or_else(|| value.strip_prefix(b"basic "))
        .unwrap_or(value);
    value.first() == Some(&b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_lines_header_like_value_is_redacted_to_the_next_field_only() {
        let line = "request_id=x-api-key:abc path=/v1/messages status=200";
        assert_eq!(
            redact_access_line(line),
            "request_id=x-api-key:<redacted> path=/v1/messages status=200"
        );
        // Other text: the value runs to the end of the line.
        assert_eq!(redact(line), "request_id=x-api-key:<redacted>");
        // Quoted, to its quote.
        let quoted = r#"error="authorization: Basic dXNlcjpwYXNz x" status=401"#;
        assert_eq!(
            redact_access_line(quoted),
            r#"error="authorization: <redacted>" status=401"#
        );
        // A value ending in a credential's name and separator erases no other field,
        // in the text format or JSON.
        for line in [
            "request_id=x-api-key: upstream_request_id=- path=/v1/x-api-key: route=p",
            r#"model="x-api-key: " key_name=team status=200"#,
            r#"{"request_id":"x-api-key:","upstream_request_id":"-","status":200}"#,
        ] {
            assert_eq!(redact_access_line(line), line);
        }
    }

    /// The bytes the scans read to redact `text`.
    fn bytes_read(text: &str, fields: bool) -> usize {
        let lower = text.to_ascii_lowercase();
        let mut found: Vec<(usize, Name)> = CREDENTIAL_HEADERS
            .iter()
            .flat_map(|name| {
                lower
                    .match_indices(name)
                    .map(|(at, _)| (at, Name::Header(name)))
            })
            .chain(CREDENTIAL_PARAMS.iter().flat_map(|name| {
                lower
                    .match_indices(name)
                    .map(|(at, _)| (at, Name::Param(name)))
            }))
            .collect();
        found.sort_unstable_by_key(|(at, _)| *at);
        let mut scan = Scanner::new(lower.as_bytes());
        credential_spans(&mut scan, found, fields);
        scan.read
    }

    #[test]
    fn redaction_is_linear_in_line_length() {
        // A client can write a path or a model of many names; each value would
        // otherwise be read to the end of the line, once per name.
        let names = "key=".repeat(1 << 14);
        let headers = "x-api-key:".repeat(1 << 12);
        let fielded =
            format!(r#"path=/{names} model="{headers}" error="{headers} {names}" status=401"#);
        for (text, fields) in [
            (names.as_str(), true),
            (names.as_str(), false),
            (headers.as_str(), false),
            (fielded.as_str(), true),
            (fielded.as_str(), false),
        ] {
            let read = bytes_read(text, fields);
            assert!(
                read <= 4 * text.len(),
                "{read} bytes read for {}",
                text.len()
            );
        }
        assert_eq!(redact_access_line(&names), "key=<redacted>");
        assert_eq!(redact(&headers), "x-api-key:<redacted>");
        let out = redact_access_line(&fielded);
        assert!(out.ends_with(" status=401"), "{}", &out[out.len() - 40..]);
    }

    #[test]
    fn redacts_debug_header_maps() {
        let line = r#"headers: {"host": "gw", "authorization": "Bearer gw-secret", "x-api-key": "sk-secret", "accept": "*/*"}"#;
        assert_eq!(
            redact(line),
            r#"headers: {"host": "gw", "authorization": "<redacted>", "x-api-key": "<redacted>", "accept": "*/*"}"#
        );
    }

    #[test]
    fn redacts_raw_request_bytes_in_any_case() {
        let line = r#"Writing request header: b"POST /v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-one\r\nX-Goog-Api-Key: AIza-two\r\nCookie: s=three; t=four\r\n\r\n""#;
        let out = redact(line);
        for secret in ["sk-one", "AIza-two", "three", "four"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains(r"Host: x\r\n"), "{out}");
        assert!(out.contains(r"X-Goog-Api-Key: <redacted>\r\n"), "{out}");
    }

    #[test]
    fn redacts_real_line_breaks_and_every_credential_header() {
        for name in CREDENTIAL_HEADERS {
            let line = format!("{name}: secret-value\nnext: kept");
            assert_eq!(redact(&line), format!("{name}: <redacted>\nnext: kept"));
        }
    }

    #[test]
    fn redacts_key_query_parameters_but_not_other_parameters() {
        assert_eq!(
            redact("GET /v1beta/models?alt=sse&key=AIza-secret&x=1 HTTP/1.1"),
            "GET /v1beta/models?alt=sse&key=<redacted>&x=1 HTTP/1.1"
        );
        assert_eq!(redact("uri: /x?api_key=abc"), "uri: /x?api_key=<redacted>");
        assert_eq!(redact("uri: /x?monkey=abc"), "uri: /x?monkey=abc");
    }

    #[test]
    fn redacts_bearer_tokens_wherever_they_appear() {
        assert_eq!(
            redact("upstream said: bad token Bearer sk-leak, try again"),
            "upstream said: bad token Bearer <redacted>, try again"
        );
    }

    #[test]
    fn leaves_placeholders_and_names_inside_other_words_alone() {
        let help =
            "missing gateway key: send it as `Authorization: Bearer <key>` or `X-Api-Key: <key>`";
        assert!(matches!(redact(help), Cow::Borrowed(_)));
        let plain = "request_id=abc method=POST path=/p/openai/keys route=passthrough";
        assert!(matches!(redact(plain), Cow::Borrowed(_)));
        assert_eq!(redact("x-authorization-hint: 1"), "x-authorization-hint: 1");
    }

    #[test]
    fn proxy_authorization_is_redacted_whole() {
        assert_eq!(
            redact(r#""proxy-authorization": "Basic dXNlcjpwYXNz""#),
            r#""proxy-authorization": "<redacted>""#
        );
    }

    #[test]
    fn redacted_headers_hide_credential_values_only() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-secret".parse().unwrap());
        h.insert("x-goog-api-key", "AIza-secret".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        // A value marked sensitive (a configured provider header: Azure's `api-key`).
        let mut azure: http::HeaderValue = "azure-secret".parse().unwrap();
        azure.set_sensitive(true);
        h.insert("api-key", azure);
        let shown = RedactedHeaders(&h).to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("api-key: <redacted>"), "{shown}");
        assert!(shown.contains("authorization: <redacted>"), "{shown}");
        assert!(
            shown.contains(r#"content-type: "application/json""#),
            "{shown}"
        );
    }
}
