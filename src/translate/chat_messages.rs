//! The `messages` array of a translated Chat Completions request, written one message
//! at a time into the request's buffer, in an order the provider takes.
//!
//! OpenAI takes its roles in any order; Mistral does not (400
//! `invalid_request_message_order`): after a `tool` message only `assistant` or `tool`,
//! after an `assistant` message no `system`. A Messages user turn holds its tool
//! results and its other blocks together (Claude Code's `<system-reminder>` text,
//! images a tool read), which become tool messages and then a user message. For a
//! provider that orders messages strictly:
//! - text that follows tool messages is added to the last one's content, after a
//!   blank line: the model reads it right after the results, where the client put it,
//!   and no turn is made up;
//! - images and files, which only a user message carries, follow a short assistant
//!   message ([`BRIDGE`]), the only role allowed there;
//! - a `system` message after an assistant or tool message is sent as user text.

use std::ops::Range;

use super::anthropic_to_openai_request::{write_joined, OpenAiRequestOptions};
use super::request_fields::Text;

/// The assistant message between tool messages and a user message carrying images,
/// for a provider that orders messages strictly.
const BRIDGE: &[u8] = br#"{"content":"(continued in the next message)","role":"assistant"}"#;

/// The role of a message written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChatRole {
    System,
    User,
    Assistant,
    Tool,
}

/// The `messages` array being written, one comma-separated message at a time.
#[derive(Default)]
pub(super) struct MessagesWriter {
    written: usize,
    /// The role of the last message written.
    last: Option<ChatRole>,
    /// Where the last tool message's content lies in the buffer, between its quotes.
    tool_content: Range<usize>,
    /// [`OpenAiRequestOptions::strict_message_order`].
    strict_order: bool,
    /// The assistant message's tool calls, reused from message to message.
    pub(super) tool_calls: Vec<u8>,
    /// [`OpenAiRequestOptions::reasoning_content_back`].
    pub(super) reasoning_content_back: bool,
    /// [`OpenAiRequestOptions::thought_signature_stand_in`].
    pub(super) thought_signature_stand_in: bool,
    /// [`OpenAiRequestOptions::short_tool_call_ids`].
    pub(super) short_tool_call_ids: bool,
    /// [`OpenAiRequestOptions::text_only`].
    pub(super) text_only: bool,
    /// [`OpenAiRequestOptions::file_parts`].
    pub(super) file_parts: bool,
}

impl MessagesWriter {
    /// A writer of the messages of a request translated with `opts`.
    pub(super) fn new(opts: &OpenAiRequestOptions) -> Self {
        Self {
            strict_order: opts.strict_message_order,
            reasoning_content_back: opts.reasoning_content_back,
            thought_signature_stand_in: opts.thought_signature_stand_in,
            short_tool_call_ids: opts.short_tool_call_ids,
            text_only: opts.text_only,
            file_parts: opts.file_parts,
            ..Self::default()
        }
    }

    /// The buffer to write the next message, of `role`, into, separator written; for a
    /// provider that orders messages strictly, a user message right after a tool
    /// message comes after [`BRIDGE`].
    pub(super) fn next<'o>(&mut self, out: &'o mut Vec<u8>, role: ChatRole) -> &'o mut Vec<u8> {
        if self.strict_order && self.last == Some(ChatRole::Tool) && role == ChatRole::User {
            self.separate(out);
            out.extend_from_slice(BRIDGE);
        }
        self.separate(out);
        self.last = Some(role);
        out
    }

    fn separate(&mut self, out: &mut Vec<u8>) {
        if self.written > 0 {
            out.push(b',');
        }
        self.written += 1;
    }

    /// Notes where the content of the tool message just written lies in `out`.
    pub(super) fn tool_content_at(&mut self, content: Range<usize>) {
        self.tool_content = content;
    }

    /// Writes a `system` message of `texts` joined with a blank line, unless there is
    /// nothing in them; after an assistant or tool message, to a provider that orders
    /// messages strictly, the texts go as a user's.
    pub(super) fn system(&mut self, out: &mut Vec<u8>, texts: &[Text<'_>]) {
        // Joined with separators, several texts are never empty.
        if texts.len() < 2 && texts.iter().all(|t| t.is_empty()) {
            return;
        }
        if self.strict_order && matches!(self.last, Some(ChatRole::Assistant | ChatRole::Tool)) {
            return self.user_text(out, texts);
        }
        let out = self.next(out, ChatRole::System);
        out.extend_from_slice(br#"{"content":""#);
        write_joined(out, texts, "\\n\\n");
        out.extend_from_slice(br#"","role":"system"}"#);
    }

    /// Writes a user message whose content is `texts` joined with a blank line; right
    /// after a tool message, to a provider that orders messages strictly, the texts
    /// end that message's content instead.
    pub(super) fn user_text<'t, 'a: 't>(
        &mut self,
        out: &mut Vec<u8>,
        texts: impl IntoIterator<Item = &'t Text<'a>> + Clone,
    ) {
        if self.strict_order && self.last == Some(ChatRole::Tool) {
            return self.append_to_tool_content(out, texts);
        }
        let out = self.next(out, ChatRole::User);
        out.extend_from_slice(br#"{"content":""#);
        write_joined(out, texts, "\\n\\n");
        out.extend_from_slice(br#"","role":"user"}"#);
    }

    /// Adds `texts` to the end of the last tool message's content, after a blank line.
    fn append_to_tool_content<'t, 'a: 't>(
        &mut self,
        out: &mut Vec<u8>,
        texts: impl IntoIterator<Item = &'t Text<'a>> + Clone,
    ) {
        if texts.clone().into_iter().all(|t| t.is_empty()) {
            return;
        }
        // What follows the content is the message's few closing members.
        let tail = out.split_off(self.tool_content.end);
        if !self.tool_content.is_empty() {
            out.extend_from_slice(b"\\n\\n");
        }
        write_joined(out, texts, "\\n\\n");
        self.tool_content.end = out.len();
        out.extend_from_slice(&tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn written(strict: bool, write: impl FnOnce(&mut MessagesWriter, &mut Vec<u8>)) -> Value {
        let mut messages = MessagesWriter {
            strict_order: strict,
            ..MessagesWriter::default()
        };
        let mut out = b"[".to_vec();
        write(&mut messages, &mut out);
        out.push(b']');
        serde_json::from_slice(&out).unwrap()
    }

    fn tool_message(messages: &mut MessagesWriter, out: &mut Vec<u8>, content: &str) {
        let out = messages.next(out, ChatRole::Tool);
        out.extend_from_slice(br#"{"content":""#);
        let start = out.len();
        out.extend_from_slice(content.as_bytes());
        messages.tool_content_at(start..out.len());
        out.extend_from_slice(br#"","role":"tool","tool_call_id":"a"}"#);
    }

    #[test]
    fn text_after_a_tool_message_ends_its_content_when_the_order_is_strict() {
        let texts = [Text::from("<system-reminder>"), Text::from("go on")];
        let got = written(true, |m, out| {
            tool_message(m, out, "a.txt");
            m.user_text(out, &texts);
            tool_message(m, out, "");
            m.system(out, &[Text::from("be brief")]);
        });
        assert_eq!(
            got,
            json!([
                {"content": "a.txt\n\n<system-reminder>\n\ngo on", "role": "tool", "tool_call_id": "a"},
                {"content": "be brief", "role": "tool", "tool_call_id": "a"}
            ])
        );
        let got = written(false, |m, out| {
            tool_message(m, out, "a.txt");
            m.user_text(out, &texts);
        });
        assert_eq!(
            got[1],
            json!({"content": "<system-reminder>\n\ngo on", "role": "user"})
        );
    }

    #[test]
    fn a_user_message_after_a_tool_message_follows_a_bridge_when_the_order_is_strict() {
        let got = written(true, |m, out| {
            tool_message(m, out, "(attached)");
            m.next(out, ChatRole::User)
                .extend_from_slice(br#"{"content":[],"role":"user"}"#);
        });
        let roles: Vec<&str> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["tool", "assistant", "user"]);
    }

    #[test]
    fn a_system_message_after_an_assistant_one_is_a_users_when_the_order_is_strict() {
        let write = |m: &mut MessagesWriter, out: &mut Vec<u8>| {
            m.next(out, ChatRole::Assistant)
                .extend_from_slice(br#"{"content":"hi","role":"assistant"}"#);
            m.system(out, &[Text::from("note")]);
        };
        assert_eq!(written(true, write)[1]["role"], "user");
        assert_eq!(written(false, write)[1]["role"], "system");
    }
}
