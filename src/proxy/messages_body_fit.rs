//! A Messages body that goes to an Anthropic-format provider as the client wrote it,
//! without the thinking blocks that provider cannot take back.
//!
//! A conversation carried on another model through the gateway holds that model's
//! thinking: Gemini's, its thought signature tagged `gemini:` by the gateway, and a
//! chat server's reasoning, with an empty signature. Claude Code keeps those blocks
//! when its user switches the model (`/model`) to Claude, and Anthropic refuses each
//! on every later turn ("Invalid `signature` in `thinking` block"): the session is
//! stuck. Gemini's signature is no other provider's to read, so its blocks never go to
//! an Anthropic-format provider; an unsigned one does not go to a provider that checks
//! signatures (Anthropic's own API; Kimi's and others' Anthropic-compatible ones take
//! unsigned thinking back, and may need it). With thinking on, Anthropic wants the
//! turn whose tool calls are being answered to start with its thinking: when it does
//! not (the thinking it started with was left out, or Claude made it on a call whose
//! thinking was turned off so), thinking is turned off for the call.
//!
//! Only bodies that hold such a signature are read (one search for `"signature"`);
//! the others, and every member of the ones fitted but those changed, go as written.

use memchr::memmem;

use crate::providers::Provider;
use crate::translate::json_members::{member_value, ArrayElements, ObjectMembers};
use crate::translate::GEMINIS_TAG;

/// How a forwarded Messages body is fitted to its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagesFit {
    /// The provider checks thinking signatures: an unsigned block is left out too.
    checks_signatures: bool,
}

/// Thinking turned off, for a call whose answered turn lost the thinking it led with.
const THINKING_OFF: &[u8] = br#"{"type":"disabled"}"#;

impl MessagesFit {
    /// What `provider` needs of a forwarded Messages body.
    pub fn for_provider(provider: &Provider) -> Self {
        Self {
            checks_signatures: provider.checks_thinking_signatures,
        }
    }

    /// `body` without the thinking blocks its provider cannot take, or `None` when it
    /// holds none (or is not a JSON object, which the provider then judges).
    pub fn apply(self, body: &[u8]) -> Option<Vec<u8>> {
        if !self.may_hold_foreign_thinking(body) {
            return None;
        }
        let mut top = ObjectMembers::of(body)?;
        let (mut messages, mut thinking) = (None, None);
        while let Some(member) = top.next_front() {
            match member.key().as_ref() {
                b"messages" => messages = Some(member.value),
                b"thinking" => thinking = Some(member.value),
                _ => {}
            }
        }
        if top.broken() {
            return None;
        }
        let messages = messages?;
        let fitted = self.fit_messages(messages)?;
        let mut edits = vec![(within(body, messages), fitted.text)];
        if let Some(thinking) = thinking.filter(|t| fitted.answered_turn_lacks_lead && is_on(t)) {
            edits.push((within(body, thinking), THINKING_OFF.to_vec()));
        }
        Some(edited(body, edits))
    }

    /// Whether any `signature` in `body` is one this provider cannot take: a quick
    /// look, by the bytes after each `"signature":`.
    fn may_hold_foreign_thinking(self, body: &[u8]) -> bool {
        memmem::find_iter(body, b"\"signature\"").any(|at| {
            member_value(body, at + b"\"signature\"".len())
                .is_some_and(|value| self.is_foreign(&body[value..]))
        })
    }

    /// Whether the signature whose JSON text starts `text` is one this provider cannot
    /// take.
    fn is_foreign(self, text: &[u8]) -> bool {
        let gemini = text
            .strip_prefix(b"\"")
            .is_some_and(|s| s.starts_with(GEMINIS_TAG.as_bytes()));
        gemini || (self.checks_signatures && text.starts_with(b"\"\""))
    }

    /// `messages` without the foreign thinking blocks of assistant turns, or `None`
    /// when it holds none. A turn left with no block goes too (Anthropic takes two
    /// user turns in a row as one).
    fn fit_messages(self, messages: &[u8]) -> Option<FittedMessages> {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut changed = false;
        // Where the last assistant turn kept is.
        let mut last_assistant: Option<usize> = None;
        let mut elements = ArrayElements::of(messages)?;
        for message in elements.by_ref() {
            match self.fit_turn(message) {
                TurnFit::Kept { assistant } => {
                    if assistant {
                        last_assistant = Some(kept.len());
                    }
                    kept.push(message.to_vec());
                }
                TurnFit::Fitted(text) => {
                    changed = true;
                    last_assistant = Some(kept.len());
                    kept.push(text);
                }
                TurnFit::Emptied => changed = true,
            }
        }
        if elements.broken() || !changed {
            return None;
        }
        // Whether this turn lost its thinking here or came without (Claude's answer to
        // the call thinking was turned off for), Anthropic would refuse it with thinking.
        let answered_turn_lacks_lead = last_assistant
            .is_some_and(|at| ObjectMembers::of(&kept[at]).is_some_and(lacks_leading_thinking));
        Some(FittedMessages {
            text: joined(&kept),
            answered_turn_lacks_lead,
        })
    }

    /// One turn as it goes: an assistant turn without its foreign thinking.
    fn fit_turn(self, message: &[u8]) -> TurnFit {
        let Some(mut members) = ObjectMembers::of(message) else {
            return TurnFit::Kept { assistant: false };
        };
        let (mut assistant, mut content) = (false, None);
        while let Some(member) = members.next_front() {
            match member.key().as_ref() {
                b"role" => assistant = member.value == br#""assistant""#,
                b"content" => content = Some(member.value),
                _ => {}
            }
        }
        let Some(content) = content.filter(|_| assistant && !members.broken()) else {
            return TurnFit::Kept { assistant };
        };
        let Some(blocks) = ArrayElements::of(content) else {
            return TurnFit::Kept { assistant };
        };
        let all: Vec<&[u8]> = blocks.collect();
        let kept: Vec<&[u8]> = all
            .iter()
            .copied()
            .filter(|block| !self.is_foreign_thinking(block))
            .collect();
        if kept.len() == all.len() {
            TurnFit::Kept { assistant }
        } else if kept.is_empty() {
            TurnFit::Emptied
        } else {
            let content_text = joined(&kept);
            TurnFit::Fitted(edited(
                message,
                vec![(within(message, content), content_text)],
            ))
        }
    }

    /// Whether `block` is a thinking block whose signature this provider cannot take.
    fn is_foreign_thinking(self, block: &[u8]) -> bool {
        let Some(mut members) = ObjectMembers::of(block) else {
            return false;
        };
        let (mut thinking, mut foreign) = (false, false);
        while let Some(member) = members.next_front() {
            match member.key().as_ref() {
                b"type" => thinking = member.value == br#""thinking""#,
                b"signature" => foreign = self.is_foreign(member.value),
                _ => {}
            }
        }
        thinking && foreign
    }
}

/// What became of one turn.
enum TurnFit {
    /// As written; whether it is the assistant's.
    Kept { assistant: bool },
    /// Without some of its blocks: its text.
    Fitted(Vec<u8>),
    /// Without any block: it goes.
    Emptied,
}

/// `messages` fitted.
struct FittedMessages {
    text: Vec<u8>,
    /// The last assistant turn makes tool calls without starting with thinking.
    answered_turn_lacks_lead: bool,
}

/// Whether an assistant turn makes tool calls without thinking before them.
fn lacks_leading_thinking(mut members: ObjectMembers<'_>) -> bool {
    let Some(content) = std::iter::from_fn(|| members.next_front())
        .find(|m| m.key().as_ref() == b"content")
        .map(|m| m.value)
    else {
        return false;
    };
    let Some(blocks) = ArrayElements::of(content) else {
        return false;
    };
    let types: Vec<Vec<u8>> = blocks.map(block_type).collect();
    let leads_with_thinking = types
        .first()
        .is_some_and(|t| t == br#""thinking""# || t == br#""redacted_thinking""#);
    !leads_with_thinking && types.iter().any(|t| t == br#""tool_use""#)
}

/// A block's `type` as written.
fn block_type(block: &[u8]) -> Vec<u8> {
    let Some(mut members) = ObjectMembers::of(block) else {
        return Vec::new();
    };
    std::iter::from_fn(|| members.next_front())
        .find(|m| m.key().as_ref() == b"type")
        .map(|m| m.value.to_vec())
        .unwrap_or_default()
}

/// Whether a `thinking` setting turns thinking on (`enabled` or `adaptive`).
fn is_on(thinking: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Setting<'a> {
        #[serde(borrow, rename = "type")]
        kind: Option<&'a str>,
    }
    serde_json::from_slice::<Setting<'_>>(thinking)
        .ok()
        .and_then(|s| s.kind)
        .is_some_and(|kind| kind != "disabled")
}

/// Elements written as one JSON array.
fn joined<T: AsRef<[u8]>>(elements: &[T]) -> Vec<u8> {
    let size = elements.iter().map(|e| e.as_ref().len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'[');
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(element.as_ref());
    }
    out.push(b']');
    out
}

/// Where `part`, a slice of `doc`, lies in it.
fn within(doc: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - doc.as_ptr() as usize;
    start..start + part.len()
}

/// `doc` with each range replaced by its text (ranges in order, apart).
fn edited(doc: &[u8], edits: Vec<(std::ops::Range<usize>, Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let mut at = 0;
    for (range, text) in edits {
        out.extend_from_slice(&doc[at..range.start]);
        out.extend_from_slice(&text);
        at = range.end;
    }
    out.extend_from_slice(&doc[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const CLAUDES: &str = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgx";

    fn fit(checks: bool, body: &Value) -> Option<Value> {
        MessagesFit {
            checks_signatures: checks,
        }
        .apply(body.to_string().as_bytes())
        .map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn thinking(signature: &str) -> Value {
        json!({"type": "thinking", "thinking": "reasoned", "signature": signature})
    }

    fn call(id: &str) -> Value {
        json!({"type": "tool_use", "id": id, "name": "Bash", "input": {"command": "ls"}})
    }

    fn result(id: &str) -> Value {
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "ok"}]})
    }

    #[test]
    fn geminis_thinking_never_goes_and_unsigned_thinking_not_where_signatures_are_checked() {
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [
            {"role": "user", "content": "list"},
            {"role": "assistant", "content": [thinking("gemini:CiQBsig"), {"type": "text", "text": "Listing."}]},
            {"role": "user", "content": "and now?"},
            {"role": "assistant", "content": [thinking(""), {"type": "text", "text": "Done."}]},
            {"role": "user", "content": "thanks"}]});
        let strict = fit(true, &body).unwrap();
        assert_eq!(
            strict["messages"][1]["content"],
            json!([{"type": "text", "text": "Listing."}])
        );
        assert_eq!(
            strict["messages"][3]["content"],
            json!([{"type": "text", "text": "Done."}])
        );
        let lenient = fit(false, &body).unwrap();
        assert_eq!(
            lenient["messages"][1]["content"],
            json!([{"type": "text", "text": "Listing."}])
        );
        assert_eq!(lenient["messages"][3], body["messages"][3]);
        assert_eq!(lenient["model"], body["model"]);
    }

    #[test]
    fn claudes_own_thinking_and_a_body_without_foreign_thinking_go_as_written() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [thinking(CLAUDES), {"type": "text", "text": "a"}]},
            {"role": "user", "content": "the text says \"signature\": \"\" and gemini:x"}]});
        assert_eq!(fit(true, &body), None);
        // Another turn's text that merely looks like a signature changes nothing.
        let quoted = json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "{\"signature\":\"gemini:x\"}"}]}]});
        assert_eq!(fit(true, &quoted), None);
    }

    #[test]
    fn only_the_changed_turns_are_written_anew_the_rest_as_sent() {
        let body = br#"{"model" : "m","messages":[ {"role":"user","content":"q"} ,{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"gemini:abc"} , {"type":"text","text":"a"}]}],"stream":true}"#;
        let got = MessagesFit {
            checks_signatures: false,
        }
        .apply(body)
        .unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"{"model" : "m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"text","text":"a"}]}],"stream":true}"#
        );
    }

    #[test]
    fn a_turn_of_foreign_thinking_alone_goes_whole() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [thinking("gemini:abc")]},
            {"role": "user", "content": "again"}]});
        let got = fit(false, &body).unwrap();
        assert_eq!(
            got["messages"],
            json!([{"role": "user", "content": "q"}, {"role": "user", "content": "again"}])
        );
    }

    #[test]
    fn thinking_stays_off_through_the_tool_loop_claude_answered_without_it() {
        // The call after the switch went without thinking; Claude's answer to it, a
        // tool call without thinking, is the turn the next call answers.
        let body = json!({"model": "m", "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [
            {"role": "user", "content": "list"},
            {"role": "assistant", "content": [thinking("gemini:a"), {"type": "text", "text": "x"}]},
            {"role": "user", "content": "count them"},
            {"role": "assistant", "content": [call("toolu_3")]},
            result("toolu_3")]});
        let got = fit(false, &body).unwrap();
        assert_eq!(got["thinking"], json!({"type": "disabled"}));
        assert_eq!(got["messages"][3], body["messages"][3]);
    }

    #[test]
    fn thinking_goes_off_when_the_answered_turn_lost_the_thinking_it_led_with() {
        let body = json!({"model": "m", "max_tokens": 20000,
            "thinking": {"type": "enabled", "budget_tokens": 10000}, "messages": [
            {"role": "user", "content": "list"},
            {"role": "assistant", "content": [thinking(""), call("toolu_1")]},
            result("toolu_1")]});
        let got = fit(true, &body).unwrap();
        assert_eq!(got["thinking"], json!({"type": "disabled"}));
        assert_eq!(got["messages"][1]["content"], json!([call("toolu_1")]));
        // An earlier turn's thinking left out leaves the answered turn's, and thinking.
        let earlier = json!({"model": "m", "thinking": {"type": "adaptive"}, "messages": [
            {"role": "user", "content": "list"},
            {"role": "assistant", "content": [thinking("gemini:a"), {"type": "text", "text": "x"}]},
            {"role": "user", "content": "go on"},
            {"role": "assistant", "content": [thinking(CLAUDES), call("toolu_2")]},
            result("toolu_2")]});
        let got = fit(true, &earlier).unwrap();
        assert_eq!(got["thinking"], json!({"type": "adaptive"}));
        assert_eq!(got["messages"][3], earlier["messages"][3]);
    }
}
