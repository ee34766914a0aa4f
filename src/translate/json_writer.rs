//! Writing JSON text straight into a byte buffer, for the request
//! translators: strings escaped exactly as `serde_json` escapes them, and
//! values copied from the client's body with insignificant whitespace
//! removed. Writing never fails, so callers need no error paths.

use serde_json::Number;

/// Room a translated body may keep unused: below it, giving the rest back would cost
/// a copy of the body for a few hundred bytes.
const SPARE_KEPT: usize = 4096;

/// Gives back the room `out` was allocated with and did not use, when there is more
/// of it than [`SPARE_KEPT`] (a request translator sizes its buffer for the longest
/// translation of the body).
pub(super) fn release_spare(out: &mut Vec<u8>) {
    if out.capacity() - out.len() > SPARE_KEPT {
        out.shrink_to_fit();
    }
}

/// Appends `s` as a JSON string literal, quotes included.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_fragment(out, s);
    out.push(b'"');
}

/// Appends `strings` as a JSON array of string literals.
pub(super) fn write_str_array<S: AsRef<str>>(out: &mut Vec<u8>, strings: &[S]) {
    out.push(b'[');
    for (k, s) in strings.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_str(out, s.as_ref());
    }
    out.push(b']');
}

/// Appends the escaped contents of a JSON string without the quotes, so a
/// string can be written in pieces (joined texts, data URLs).
pub(super) fn write_str_fragment(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len());
    let mut start = 0;
    loop {
        let i = start + plain_prefix_len(&bytes[start..]);
        out.extend_from_slice(&bytes[start..i]);
        let Some(&b) = bytes.get(i) else {
            return;
        };
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            _ => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xF)],
            ],
        };
        out.extend_from_slice(escape);
        start = i + 1;
    }
}

/// How many leading bytes of `bytes` a JSON string holds as they are: up to
/// the first control character, quote or backslash. Text is mostly plain, so
/// eight bytes are tested at a time.
fn plain_prefix_len(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut words = bytes.chunks_exact(8);
    let mut skipped = 0;
    for word in words.by_ref() {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        // A byte's high bit is set in each mask when the byte is below 0x20,
        // a quote or a backslash; a byte with its own high bit set is none.
        let control = w.wrapping_sub(ONES * 0x20);
        let quote = (w ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
        let backslash = (w ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
        let found = (control | quote | backslash) & !w & HIGH;
        if found != 0 {
            return skipped + (found.trailing_zeros() / 8) as usize;
        }
        skipped += 8;
    }
    skipped
        + words
            .remainder()
            .iter()
            .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
            .unwrap_or(words.remainder().len())
}

/// Text collected piece by piece and kept escaped as the contents of a JSON
/// string, so text written several times (a stream's deltas, then its
/// `.done` events and the final answer) is escaped only once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct JsonText {
    escaped: Vec<u8>,
}

impl JsonText {
    /// Appends `piece` to the text.
    pub(super) fn push(&mut self, piece: &str) {
        write_str_fragment(&mut self.escaped, piece);
    }

    /// Appends `piece` to `out` as a JSON string literal and to the text,
    /// escaping it once for both.
    pub(super) fn push_and_write(&mut self, piece: &str, out: &mut Vec<u8>) {
        out.push(b'"');
        let start = out.len();
        write_str_fragment(out, piece);
        self.escaped.extend_from_slice(&out[start..]);
        out.push(b'"');
    }

    /// Whether no text was added.
    pub(super) fn is_empty(&self) -> bool {
        self.escaped.is_empty()
    }

    /// The text, unescaped; `None` if it is not valid UTF-8 once unescaped (text
    /// pushed here never is).
    pub(super) fn text(&self) -> Option<String> {
        let mut quoted = Vec::with_capacity(self.escaped.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(&self.escaped);
        quoted.push(b'"');
        serde_json::from_slice(&quoted).ok()
    }

    /// Replaces the text with `text`.
    pub(super) fn replace(&mut self, text: &str) {
        self.escaped.clear();
        self.push(text);
    }
}

/// Text written as a JSON string literal: plain text, escaped as it is
/// written, or a [`JsonText`] escaped already.
pub(super) trait JsonString {
    /// Appends the text as a JSON string literal, quotes included.
    fn write_json(&self, out: &mut Vec<u8>);
    /// Whether the text is empty.
    fn is_empty_text(&self) -> bool;
}

impl JsonString for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }

    fn is_empty_text(&self) -> bool {
        self.is_empty()
    }
}

impl JsonString for JsonText {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.reserve(self.escaped.len() + 2);
        out.push(b'"');
        out.extend_from_slice(&self.escaped);
        out.push(b'"');
    }

    fn is_empty_text(&self) -> bool {
        self.is_empty()
    }
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// Appends `"key":`.
pub(super) fn write_key(out: &mut Vec<u8>, key: &str) {
    write_str(out, key);
    out.push(b':');
}

/// Appends a number the way `serde_json` serializes it.
pub(super) fn write_number(out: &mut Vec<u8>, n: &Number) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// Appends an unsigned integer in decimal. Written digit by digit rather
/// than through `Number`, whose `to_string` allocates: streams write one or
/// more per event.
pub(super) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a float the way `serde_json` serializes it (`null` for the
/// non-finite values JSON cannot hold).
pub(super) fn write_f64(out: &mut Vec<u8>, f: f64) {
    match Number::from_f64(f) {
        Some(n) => write_number(out, &n),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends valid JSON text with the whitespace between tokens removed;
/// strings are copied as they are.
pub(super) fn write_compact(out: &mut Vec<u8>, json: &str) {
    for_each_compact_run(json, |run| out.extend_from_slice(run.as_bytes()));
}

/// Appends valid JSON text, compacted as by [`write_compact`], as a JSON
/// string literal (how OpenAI carries tool-call arguments).
pub(super) fn write_compact_as_str(out: &mut Vec<u8>, json: &str) {
    out.push(b'"');
    for_each_compact_run(json, |run| write_str_fragment(out, run));
    out.push(b'"');
}

/// Calls `f` with the pieces of `json` left once the whitespace between
/// tokens is cut out. Only ASCII bytes are cut, so every piece is a `str`.
fn for_each_compact_run(json: &str, mut f: impl FnMut(&str)) {
    let mut in_string = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, b) in json.bytes().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if start < i {
                f(&json[start..i]);
            }
            start = i + 1;
        }
    }
    if start < json.len() {
        f(&json[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_leftover_is_given_back_and_a_small_one_kept() {
        let mut large = Vec::with_capacity(2 * 1024 * 1024);
        large.extend_from_slice(&[b'x'; 1000]);
        release_spare(&mut large);
        assert!(
            large.capacity() - large.len() <= SPARE_KEPT,
            "{}",
            large.capacity()
        );
        assert_eq!(large.len(), 1000);

        let mut small = Vec::with_capacity(600);
        small.extend_from_slice(&[b'x'; 250]);
        let room = small.capacity();
        release_spare(&mut small);
        assert_eq!(small.capacity(), room, "a copy is not worth 350 bytes");
    }

    fn as_string(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é — 😊 \u{2028}\u{7f}");
        for s in [all.as_str(), "", "plain", "a\"b\\c", "\u{0}\u{1f}"] {
            assert_eq!(
                as_string(|o| write_str(o, s)),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn escapes_are_found_at_every_position_of_long_text() {
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for at in 0..24 {
                let mut chars: Vec<char> = "é plain ascii text 😊 and more".chars().collect();
                chars.insert(at, special);
                let s: String = chars
                    .into_iter()
                    .chain("\u{7f}\u{80}tail".chars())
                    .collect();
                assert_eq!(
                    as_string(|o| write_str(o, &s)),
                    serde_json::to_string(&s).unwrap()
                );
            }
        }
    }

    #[test]
    fn collected_text_is_written_like_the_joined_string() {
        let pieces = ["a \"quoted\"", "", "\n\u{0}é", "\\ 😊"];
        let mut text = JsonText::default();
        let mut out = Vec::new();
        for (k, piece) in pieces.iter().enumerate() {
            if k % 2 == 0 {
                text.push(piece);
            } else {
                text.push_and_write(piece, &mut out);
            }
        }
        let joined = pieces.concat();
        assert_eq!(
            as_string(|o| text.write_json(o)),
            serde_json::to_string(&joined).unwrap()
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(pieces[1]).unwrap() + &serde_json::to_string(pieces[3]).unwrap()
        );
        assert!(JsonText::default().is_empty() && !text.is_empty());
    }

    #[test]
    fn numbers_are_written_like_serde_json() {
        for f in [0.0, 1.0, 0.1, 1.7, -2.5e-8, 1e300, 123456789.125] {
            assert_eq!(
                as_string(|o| write_f64(o, f)),
                serde_json::to_string(&f).unwrap()
            );
        }
        for n in [0, 7, 10, 99, 100, 1_234_567, u64::MAX] {
            assert_eq!(as_string(|o| write_u64(o, n)), n.to_string());
        }
        assert_eq!(as_string(|o| write_f64(o, f64::NAN)), "null");
    }

    #[test]
    fn compact_removes_whitespace_between_tokens_only() {
        let json = " {\n\t\"a b\" : [1, 2 ,\r\n {\"c\":\" \\\" x \\\\\"}],\"d\" :null } ";
        assert_eq!(
            as_string(|o| write_compact(o, json)),
            r#"{"a b":[1,2,{"c":" \" x \\"}],"d":null}"#
        );
    }

    #[test]
    fn compact_as_str_is_the_string_of_the_compact_json() {
        let got = as_string(|o| write_compact_as_str(o, "{ \"k\": \"é\\n\" }"));
        let decoded: String = serde_json::from_str(&got).unwrap();
        assert_eq!(decoded, "{\"k\":\"é\\n\"}");
    }
}
