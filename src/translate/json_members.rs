//! The members of a JSON object, taken from either end of the document, and the
//! elements of a JSON array, without reading the values between them.
//!
//! Only the structure is followed here (quotes, escapes, brackets), with `memchr`
//! through strings; the values a caller wants are then read by `serde_json`, which
//! checks them. Two callers:
//! - answers name their model near the front and report their usage near the back,
//!   with the generated content in between: reading members from both ends finds
//!   both without going through the content, so metering an answer costs the same
//!   whatever its length;
//! - a request body already held to JSON's rules is read one level at a time by the
//!   request translators, and each level's values are skipped here rather than
//!   through a parser that checks them again (a coding agent's conversation puts
//!   its tool outputs five levels deep).
//!
//! A string's quote is told from an escaped one by the backslashes before it, which
//! makes the structure readable backwards as well as forwards.

use std::borrow::Cow;

use memchr::{memchr, memrchr};

/// One member: its key as written (escapes left in) and its value's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key between its quotes, escapes as written.
    pub raw_key: &'a [u8],
    /// The value's JSON text.
    pub value: &'a [u8],
}

impl<'a> Member<'a> {
    /// The key once its escapes are read: as written when it has none (most keys),
    /// else decoded; a key whose escapes do not read is left as written.
    pub fn key(&self) -> Cow<'a, [u8]> {
        if !self.raw_key.contains(&b'\\') {
            return Cow::Borrowed(self.raw_key);
        }
        let mut quoted = Vec::with_capacity(self.raw_key.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(self.raw_key);
        quoted.push(b'"');
        match serde_json::from_slice::<String>(&quoted) {
            Ok(key) => Cow::Owned(key.into_bytes()),
            Err(_) => Cow::Borrowed(self.raw_key),
        }
    }
}

/// The inside of one object or array not yet read, and how reading it ended.
#[derive(Debug)]
struct Inside<'a> {
    doc: &'a [u8],
    /// Where the next item from the front starts (after its comma, if any).
    front: usize,
    /// Where the items not yet taken from the back end (before the closing bracket
    /// or a comma).
    back: usize,
    /// No item remains, or the text stopped being readable.
    done: bool,
    /// The text stopped being readable as JSON.
    broken: bool,
    /// The document is cut: `doc` is its first bytes (`Cut::Back`) or its last
    /// (`Cut::Front`). An item that reaches the cut is not taken: its text may go on
    /// past it (a number, say), or start before it (a quote whose backslash was cut
    /// off reads as unescaped).
    cut: Option<Cut>,
}

/// Which end of a document was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Front,
    Back,
}

impl<'a> Inside<'a> {
    /// The inside of `doc`, when it is one value between `open` and `close`
    /// (whitespace around it allowed).
    fn of(doc: &'a [u8], open: u8, close: u8) -> Option<Self> {
        let start = skip_ws(doc, 0);
        let end = skip_ws_back(doc, doc.len());
        if start >= end || doc[start] != open || doc[end - 1] != close {
            return None;
        }
        let (front, back) = (skip_ws(doc, start + 1), skip_ws_back(doc, end - 1));
        Some(Self {
            doc,
            front,
            back,
            done: front >= back,
            broken: false,
            cut: None,
        })
    }

    /// The inside of the one value `doc` starts (whitespace before it allowed), of
    /// which `doc` holds only the first bytes.
    fn head_of(doc: &'a [u8], open: u8) -> Option<Self> {
        let start = skip_ws(doc, 0);
        if doc.get(start) != Some(&open) {
            return None;
        }
        Some(Self {
            doc,
            front: skip_ws(doc, start + 1),
            back: doc.len(),
            done: false,
            broken: false,
            cut: Some(Cut::Back),
        })
    }

    /// The inside of the one value `doc` ends (whitespace after it allowed), of which
    /// `doc` holds only the last bytes.
    fn tail_of(doc: &'a [u8], close: u8) -> Option<Self> {
        let end = skip_ws_back(doc, doc.len());
        if end == 0 || doc[end - 1] != close {
            return None;
        }
        Some(Self {
            doc,
            front: 0,
            back: skip_ws_back(doc, end - 1),
            done: false,
            broken: false,
            cut: Some(Cut::Front),
        })
    }

    /// What `read` finds; once it finds nothing, no end gives any more.
    fn take<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.done {
            return None;
        }
        let taken = read(self);
        if taken.is_none() {
            // A reader finds nothing only where the text is not JSON: at the last
            // item it marks the end itself.
            self.done = true;
            self.broken = true;
        }
        taken
    }

    /// Moves the front past the item ending at `end` and the comma after it, or
    /// marks the end; `None` when neither follows the item.
    fn pass_front(&mut self, end: usize) -> Option<()> {
        let doc = &self.doc[..self.back];
        let after = skip_ws(doc, end);
        let cut_back = self.cut == Some(Cut::Back);
        if after == doc.len() {
            // At the cut, a number or literal may go on past it; an object, an array
            // or a string that closed here is whole.
            if cut_back && !matches!(doc.get(end.wrapping_sub(1)), Some(b'}' | b']' | b'"')) {
                return None;
            }
            self.done = true;
        } else if doc[after] == b',' {
            self.front = skip_ws(doc, after + 1);
            if self.front >= self.back {
                // A comma at the cut: what follows was cut off. Before the end
                // (`[1,]`, `{"a":1,}`), it is not JSON.
                if !cut_back {
                    return None;
                }
                self.done = true;
            }
        } else {
            return None;
        }
        Some(())
    }
}

/// The members of one object not yet taken from either end.
#[derive(Debug)]
pub struct ObjectMembers<'a>(Inside<'a>);

impl<'a> ObjectMembers<'a> {
    /// The members of `doc`, when it is one JSON object (whitespace around it allowed).
    pub fn of(doc: &'a [u8]) -> Option<Self> {
        Inside::of(doc, b'{', b'}').map(Self)
    }

    /// The members of the object `doc` starts, when `doc` is only its first bytes:
    /// taken from the front, up to the last one that ends before the cut.
    pub fn of_head(doc: &'a [u8]) -> Option<Self> {
        Inside::head_of(doc, b'{').map(Self)
    }

    /// The members of the object `doc` ends, when `doc` is only its last bytes:
    /// taken from the back, down to the last one that starts after the cut.
    pub fn of_tail(doc: &'a [u8]) -> Option<Self> {
        Inside::tail_of(doc, b'}').map(Self)
    }

    /// Whether the text stopped being readable as JSON before all its members were
    /// taken.
    pub fn broken(&self) -> bool {
        self.0.broken
    }

    /// The next member from the front; `None` once all are taken or the text is not
    /// readable as JSON.
    pub fn next_front(&mut self) -> Option<Member<'a>> {
        self.0.take(read_front)
    }

    /// The next member from the back; `None` once all are taken or the text is not
    /// readable as JSON.
    pub fn next_back(&mut self) -> Option<Member<'a>> {
        self.0.take(read_back)
    }
}

fn read_front<'a>(inside: &mut Inside<'a>) -> Option<Member<'a>> {
    if inside.cut == Some(Cut::Front) {
        return None;
    }
    let doc = &inside.doc[..inside.back];
    let key_start = inside.front;
    if doc.get(key_start) != Some(&b'"') {
        return None;
    }
    let key_end = string_end(doc, key_start)?;
    let colon = skip_ws(doc, key_end);
    if doc.get(colon) != Some(&b':') {
        return None;
    }
    let value_start = skip_ws(doc, colon + 1);
    let value_end = value_end(doc, value_start)?;
    inside.pass_front(value_end)?;
    Some(Member {
        raw_key: &doc[key_start + 1..key_end - 1],
        value: &doc[value_start..value_end],
    })
}

fn read_back<'a>(inside: &mut Inside<'a>) -> Option<Member<'a>> {
    if inside.cut == Some(Cut::Back) {
        return None;
    }
    let doc = &inside.doc[inside.front..inside.back];
    let value_end = doc.len();
    let value_start = value_start(doc, value_end)?;
    let colon = skip_ws_back(doc, value_start);
    if colon == 0 || doc[colon - 1] != b':' {
        return None;
    }
    let key_end = skip_ws_back(doc, colon - 1);
    if key_end == 0 || doc[key_end - 1] != b'"' {
        return None;
    }
    let key_start = string_start(doc, key_end)?;
    let before = skip_ws_back(doc, key_start);
    if before == 0 && inside.cut == Some(Cut::Front) {
        return None;
    }
    if before == 0 {
        inside.done = true;
    } else if doc[before - 1] == b',' {
        let back = skip_ws_back(doc, before - 1);
        if back == 0 {
            return None;
        }
        inside.back = inside.front + back;
    } else {
        return None;
    }
    Some(Member {
        raw_key: &doc[key_start + 1..key_end - 1],
        value: &doc[value_start..value_end],
    })
}

/// The elements of one array not yet taken, from the front.
#[derive(Debug)]
pub struct ArrayElements<'a>(Inside<'a>);

impl<'a> ArrayElements<'a> {
    /// The elements of `doc`, when it is one JSON array (whitespace around it allowed).
    pub fn of(doc: &'a [u8]) -> Option<Self> {
        Inside::of(doc, b'[', b']').map(Self)
    }

    /// The elements of the array `doc` starts, when `doc` is only its first bytes:
    /// up to the last one that ends before the cut.
    pub fn of_head(doc: &'a [u8]) -> Option<Self> {
        Inside::head_of(doc, b'[').map(Self)
    }

    /// Whether the text stopped being readable as JSON before all its elements were
    /// taken.
    pub fn broken(&self) -> bool {
        self.0.broken
    }
}

impl<'a> Iterator for ArrayElements<'a> {
    /// An element's JSON text.
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.0.take(|inside| {
            let start = inside.front;
            let end = value_end(&inside.doc[..inside.back], start)?;
            inside.pass_front(end)?;
            Some(&inside.doc[start..end])
        })
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether `b` cannot be part of a number, `true`, `false` or `null`.
pub fn ends_scalar(b: u8) -> bool {
    matches!(b, b',' | b':' | b'"' | b'{' | b'}' | b'[' | b']') || is_ws(b)
}

/// The first position at or after `at` that is not whitespace.
pub fn skip_ws(doc: &[u8], mut at: usize) -> usize {
    while at < doc.len() && is_ws(doc[at]) {
        at += 1;
    }
    at
}

/// Where the value starts of the member whose key (a string) ends just before
/// `after_key`; `None` when no colon follows, and the string is a value, not a key.
pub fn member_value(doc: &[u8], after_key: usize) -> Option<usize> {
    let colon = skip_ws(doc, after_key);
    (doc.get(colon) == Some(&b':')).then(|| skip_ws(doc, colon + 1))
}

/// The end of the text before `end` once whitespace there is left out.
fn skip_ws_back(doc: &[u8], mut end: usize) -> usize {
    while end > 0 && is_ws(doc[end - 1]) {
        end -= 1;
    }
    end
}

/// Just past the closing quote of the string whose opening quote is at `open`.
pub fn string_end(doc: &[u8], open: usize) -> Option<usize> {
    // Quote to quote, each told from an escaped one by the backslashes before it:
    // text is escaped far more often (every line break of a file a tool read) than
    // it holds a quote, so this stops less often than at every backslash.
    let mut at = open + 1;
    loop {
        at += memchr(b'"', doc.get(at..)?)?;
        if !escaped(doc, at) {
            return Some(at + 1);
        }
        at += 1;
    }
}

/// Where the opening quote is of the string whose closing quote is at `close_end - 1`.
fn string_start(doc: &[u8], close_end: usize) -> Option<usize> {
    let mut end = close_end - 1;
    loop {
        let quote = memrchr(b'"', &doc[..end])?;
        if !escaped(doc, quote) {
            return Some(quote);
        }
        end = quote;
    }
}

/// Whether the quote at `at` is escaped: an odd run of backslashes before it.
fn escaped(doc: &[u8], at: usize) -> bool {
    let run = doc[..at].iter().rev().take_while(|&&b| b == b'\\').count();
    run % 2 == 1
}

/// Just past the value starting at `start`: the value is followed, not checked.
pub fn value_end(doc: &[u8], start: usize) -> Option<usize> {
    match *doc.get(start)? {
        b'"' => string_end(doc, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = start;
            while at < doc.len() {
                match doc[at] {
                    b'"' => {
                        at = string_end(doc, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
            None
        }
        _ => {
            let len = doc[start..]
                .iter()
                .position(|&b| ends_scalar(b))
                .unwrap_or(doc.len() - start);
            (len > 0).then_some(start + len)
        }
    }
}

/// Where the value ending at `end` starts.
fn value_start(doc: &[u8], end: usize) -> Option<usize> {
    let last = *doc.get(end.checked_sub(1)?)?;
    match last {
        b'"' => string_start(doc, end),
        b'}' | b']' => {
            let mut depth = 0usize;
            let mut at = end;
            while at > 0 {
                at -= 1;
                match doc[at] {
                    b'"' => {
                        at = string_start(doc, at + 1)?;
                    }
                    b'}' | b']' => depth += 1,
                    b'{' | b'[' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(at);
                        }
                    }
                    _ => {}
                }
            }
            None
        }
        _ => {
            let len = doc[..end]
                .iter()
                .rev()
                .position(|&b| ends_scalar(b))
                .unwrap_or(end);
            (len > 0).then_some(end - len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_front(doc: &str) -> Vec<(String, String)> {
        let mut m = ObjectMembers::of(doc.as_bytes()).expect("an object");
        std::iter::from_fn(|| m.next_front()).map(owned).collect()
    }

    fn keys_back(doc: &str) -> Vec<(String, String)> {
        let mut m = ObjectMembers::of(doc.as_bytes()).expect("an object");
        std::iter::from_fn(|| m.next_back()).map(owned).collect()
    }

    fn owned(m: Member<'_>) -> (String, String) {
        (
            String::from_utf8_lossy(m.raw_key).into_owned(),
            String::from_utf8_lossy(m.value).into_owned(),
        )
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    const DOC: &str = r#" { "id" : "a\"}b" , "n":-1.5e3,"t":true,
        "nested": {"x": ["}", {"y": "\\"}], "z": null}, "list":[1, [2], "]"],
        "s": "ends with a backslash \\" }
    "#;

    #[test]
    fn members_read_from_the_front_are_every_member_in_order() {
        assert_eq!(
            keys_front(DOC),
            vec![
                pair("id", r#""a\"}b""#),
                pair("n", "-1.5e3"),
                pair("t", "true"),
                pair("nested", r#"{"x": ["}", {"y": "\\"}], "z": null}"#),
                pair("list", r#"[1, [2], "]"]"#),
                pair("s", r#""ends with a backslash \\""#),
            ]
        );
    }

    #[test]
    fn members_read_from_the_back_are_the_same_in_reverse() {
        let mut front = keys_front(DOC);
        front.reverse();
        assert_eq!(keys_back(DOC), front);
    }

    #[test]
    fn both_ends_meet_without_taking_a_member_twice() {
        let doc = r#"{"a":1,"b":{"c":2},"d":"e","f":[]}"#;
        for from_front in 0..=4 {
            let mut m = ObjectMembers::of(doc.as_bytes()).unwrap();
            let mut seen: Vec<_> = (0..from_front).filter_map(|_| m.next_front()).collect();
            seen.extend(std::iter::from_fn(|| m.next_back()));
            let mut keys: Vec<_> = seen.iter().map(|m| m.raw_key.to_vec()).collect();
            keys.sort();
            assert_eq!(
                keys,
                [b"a", b"b", b"d", b"f"],
                "{from_front} from the front"
            );
        }
    }

    #[test]
    fn a_cut_object_gives_the_members_that_end_before_its_cut_and_no_more() {
        let doc = DOC.as_bytes();
        let all = keys_front(DOC);
        for cut in 0..=doc.len() {
            let (head, tail) = doc.split_at(cut);
            // From the front of the head: the first members, each as in the whole.
            let front: Vec<_> = ObjectMembers::of_head(head)
                .map(|mut m| std::iter::from_fn(|| m.next_front()).map(owned).collect())
                .unwrap_or_default();
            assert_eq!(front[..], all[..front.len()], "head cut at {cut}");
            // From the back of the tail: the last members, each as in the whole.
            let back: Vec<_> = ObjectMembers::of_tail(tail)
                .map(|mut m| std::iter::from_fn(|| m.next_back()).map(owned).collect())
                .unwrap_or_default();
            let n = back.len();
            let mut expected = all[all.len() - n..].to_vec();
            expected.reverse();
            assert_eq!(back, expected, "tail cut at {cut}");
            // Nothing is taken that reaches the cut: all of them only from a whole end.
            if cut > 0 && cut < doc.len() - 10 {
                assert!(n < all.len(), "tail cut at {cut}");
            }
            // The wrong end of a cut document gives nothing.
            if let Some(mut m) = ObjectMembers::of_head(head) {
                assert_eq!(m.next_back(), None);
            }
            if let Some(mut m) = ObjectMembers::of_tail(tail) {
                assert_eq!(m.next_front(), None);
            }
        }
    }

    #[test]
    fn a_cut_array_gives_the_elements_that_closed_before_its_cut() {
        let elements = |head: &str| {
            ArrayElements::of_head(head.as_bytes())
                .map(|e| {
                    e.map(|e| String::from_utf8_lossy(e).into_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let one = r#"{"a":[1,"}"]}"#;
        for (head, expected) in [
            (format!("[{one}"), vec![one]),
            (format!("[{one} "), vec![one]),
            (format!("[{one},"), vec![one]),
            (format!("[{one},\n{{\"b\""), vec![one]),
            (format!("[{one},12"), vec![one]),
            (format!("[{one},\"x\""), vec![one, "\"x\""]),
            ("[{\"a\":1".to_string(), vec![]),
        ] {
            assert_eq!(elements(&head), expected, "{head}");
        }
    }

    #[test]
    fn a_tail_takes_nothing_from_a_string_it_cuts_nor_a_member_at_its_cut() {
        let keys = |tail: &[u8]| {
            let mut m = ObjectMembers::of_tail(tail).unwrap();
            std::iter::from_fn(|| m.next_back())
                .map(|m| String::from_utf8_lossy(m.raw_key).into_owned())
                .collect::<Vec<_>>()
        };
        // Cut between `\` and `"`: that quote reads as unescaped.
        let doc = br#"{"text":"say \"usage\":{\"prompt_tokens\":1}","n":2}"#;
        let at = doc.windows(2).position(|w| w == br#"\""#).unwrap() + 1;
        assert_eq!(keys(&doc[at..]), ["n"]);
        // Cut just before a key: its quote might have been an escaped one.
        assert_eq!(keys(br#""usage":{"prompt_tokens":1},"n":2}"#), ["n"]);
    }

    #[test]
    fn an_empty_object_has_no_members() {
        assert_eq!(keys_front(" {} "), vec![]);
        assert_eq!(keys_back("{\n}"), vec![]);
    }

    #[test]
    fn what_is_not_one_object_has_no_members() {
        for doc in ["", "[1]", "{\"a\":1", "\"{}\"", "{", "}"] {
            assert!(ObjectMembers::of(doc.as_bytes()).is_none(), "{doc:?}");
        }
    }

    #[test]
    fn unreadable_structure_ends_the_members() {
        for doc in [
            r#"{"a":"unterminated}"#,
            r#"{"a":tr"ue}"#,
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{a:1}"#,
            r#"{"a":{"b":1}"#,
        ] {
            let mut m = ObjectMembers::of(doc.as_bytes()).unwrap();
            let front: Vec<_> = std::iter::from_fn(|| m.next_front()).collect();
            assert!(m.broken(), "{doc}: read to its end");
            let mut m = ObjectMembers::of(doc.as_bytes()).unwrap();
            let back: Vec<_> = std::iter::from_fn(|| m.next_back()).collect();
            assert!(
                front.len() < 2 && back.len() < 2,
                "{doc}: {front:?} {back:?}"
            );
            // What is taken is whole: a value never runs into the text around it.
            for m in front.iter().chain(&back) {
                let value = std::str::from_utf8(m.value).unwrap();
                assert!(
                    serde_json::from_str::<serde_json::Value>(value).is_ok(),
                    "{doc}: {value}"
                );
            }
        }
    }

    #[test]
    fn a_key_is_read_with_its_escapes() {
        let mut m = ObjectMembers::of(br#"{"us\u0061ge":1,"usage\n":2}"#).unwrap();
        assert_eq!(&*m.next_front().unwrap().key(), b"usage");
        assert_eq!(&*m.next_front().unwrap().key(), b"usage\n");
        let mut m = ObjectMembers::of(br#"{"plain":1,"bad\u12":2}"#).unwrap();
        assert!(matches!(
            m.next_front().unwrap().key(),
            Cow::Borrowed(b"plain")
        ));
        assert_eq!(
            &*m.next_front().unwrap().key(),
            br"bad\u12",
            "left as written"
        );
    }

    #[test]
    fn elements_are_read_whole_and_in_order() {
        let doc = br#" [ {"a": [1, "]"]} , "x\"]" ,null,-1.5e3, [] ] "#;
        let mut items = ArrayElements::of(doc).unwrap();
        let read: Vec<&[u8]> = items.by_ref().collect();
        assert_eq!(
            read,
            [
                br#"{"a": [1, "]"]}"#.as_slice(),
                br#""x\"]""#,
                b"null",
                b"-1.5e3",
                b"[]"
            ]
        );
        assert!(!items.broken());
        let mut empty = ArrayElements::of(b"[ ]").unwrap();
        assert_eq!(empty.next(), None);
        assert!(!empty.broken());
        assert!(ArrayElements::of(br#"{"a":1}"#).is_none());
    }

    #[test]
    fn an_unreadable_array_is_broken() {
        for doc in ["[1,]", "[,1]", "[1 2]", r#"["open]"#, "[1,,2]"] {
            let mut items = ArrayElements::of(doc.as_bytes()).unwrap();
            let read: Vec<_> = items.by_ref().collect();
            assert!(items.broken(), "{doc}: {read:?}");
        }
    }
}
