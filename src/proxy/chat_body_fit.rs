//! A Chat Completions body that goes to an OpenAI-format provider as the client wrote
//! it, fitted to a provider that refuses what OpenAI's API takes. Other providers get
//! the body unchanged, at the cost of one test.
//!
//! Mistral refuses any member its own API does not define (422 `extra_forbidden`):
//! OpenAI's members that change no answer ([`HINTS`]; `stream_options` too when it
//! reports a stream's usage unasked) are left out, and `max_completion_tokens` and
//! `seed` take its names, `max_tokens` and `random_seed`. Any other member it does not
//! take is left for it to refuse by name: leaving it out would change the answer the
//! client asked for without telling it.
//!
//! DeepSeek refuses the `developer` role ("unknown variant `developer`"), which OpenAI
//! clients send for the instructions of reasoning models: such messages go as
//! `system`, the role OpenAI's own API reads them as for older models.
//!
//! The body was held to JSON's rules as its model was read: here only its structure
//! is followed, and every member kept is copied as written (the whitespace between
//! top-level members aside).

use std::borrow::Cow;

use crate::providers::Provider;
use crate::translate::json_members::{ArrayElements, ObjectMembers};
use crate::translate::StreamUsage;

/// OpenAI's request members that change no answer (storage, attribution, caching,
/// billing tier), left out for a provider that refuses members it does not define.
const HINTS: [&str; 6] = [
    "store",
    "user",
    "metadata",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
];

/// OpenAI's names of members a provider that refuses members it does not define names
/// its own way, and its names.
const RENAMED: [(&str, &str); 2] = [
    ("max_completion_tokens", "max_tokens"),
    ("seed", "random_seed"),
];

/// A member that goes to the provider: its key as written between its quotes, and its
/// value's JSON text.
type KeptMember<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// How a forwarded Chat body is fitted to its provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatFit {
    /// Leave out OpenAI's [`HINTS`] and give [`RENAMED`] members the provider's names.
    own_members_only: bool,
    /// Leave out `stream_options`: the provider reports a stream's usage unasked.
    no_stream_options: bool,
    /// Send `developer` messages as `system`.
    developer_as_system: bool,
}

impl ChatFit {
    /// What `provider` needs of a forwarded Chat body.
    pub fn for_provider(provider: &Provider) -> Self {
        let own_members_only = provider.kind.facts().refuses_unknown_members;
        Self {
            own_members_only,
            no_stream_options: own_members_only && provider.stream_usage == StreamUsage::Unasked,
            developer_as_system: !provider.kind.facts().takes_developer_role,
        }
    }

    /// `body` fitted, or `None` when it needs no change (or is not a JSON object,
    /// which the provider then judges).
    pub fn apply(self, body: &[u8]) -> Option<Vec<u8>> {
        if self == Self::default() {
            return None;
        }
        let mut members = ObjectMembers::of(body)?;
        let mut all = Vec::new();
        while let Some(member) = members.next_front() {
            all.push((member.key(), member));
        }
        if members.broken() {
            return None;
        }
        // Given: present with a value other than `null`, which some clients write for
        // an option they leave unset.
        let has = |name: &[u8]| all.iter().any(|(key, _)| key.as_ref() == name);
        let given = |name: &[u8]| {
            all.iter()
                .any(|(key, m)| key.as_ref() == name && m.value.trim_ascii() != b"null")
        };
        let mut changed = false;
        let mut kept: Vec<KeptMember<'_>> = Vec::with_capacity(all.len());
        for (key, member) in &all {
            let name = key.as_ref();
            let left_out = (self.own_members_only && HINTS.iter().any(|h| h.as_bytes() == name))
                || (self.no_stream_options && name == b"stream_options");
            let renamed = RENAMED
                .iter()
                .find(|(from, _)| self.own_members_only && from.as_bytes() == name);
            // The provider's own name left unset (`null`) beside OpenAI's given: OpenAI's
            // value goes under it, in its place.
            let unset_twin = self.own_members_only
                && member.value.trim_ascii() == b"null"
                && RENAMED
                    .iter()
                    .any(|(from, to)| to.as_bytes() == name && given(from.as_bytes()));
            let value = match name {
                b"messages" if self.developer_as_system => {
                    developer_as_system(member.value).map(Cow::Owned)
                }
                _ => None,
            };
            changed |= value.is_some();
            let value = value.unwrap_or(Cow::Borrowed(member.value));
            match renamed {
                // Given both ways, the provider's own name wins; left unset both ways,
                // the provider's own stays alone.
                Some((_, to)) if given(to.as_bytes()) || (has(to.as_bytes()) && !given(name)) => {
                    changed = true
                }
                Some((_, to)) => {
                    changed = true;
                    kept.push((Cow::Borrowed(to.as_bytes()), value));
                }
                None if left_out || unset_twin => changed = true,
                None => kept.push((Cow::Borrowed(member.raw_key), value)),
            }
        }
        changed.then(|| {
            let size = kept
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>();
            let mut out = Vec::with_capacity(size + 2);
            out.push(b'{');
            for (i, (key, value)) in kept.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(key);
                out.extend_from_slice(b"\":");
                out.extend_from_slice(value);
            }
            out.push(b'}');
            out
        })
    }
}

/// `messages` with each `developer` role written `system`, or `None` when none is.
fn developer_as_system(messages: &[u8]) -> Option<Vec<u8>> {
    let mut roles = Vec::new();
    for message in ArrayElements::of(messages)? {
        let Some(mut members) = ObjectMembers::of(message) else {
            continue;
        };
        while let Some(member) = members.next_front() {
            if member.key().as_ref() == b"role" && is_developer(member.value) {
                // An element of `messages` is a slice of it.
                let start = member.value.as_ptr() as usize - messages.as_ptr() as usize;
                roles.push(start..start + member.value.len());
            }
        }
    }
    let last = roles.last()?.end;
    let mut out = Vec::with_capacity(messages.len());
    let mut at = 0;
    for role in roles {
        out.extend_from_slice(&messages[at..role.start]);
        out.extend_from_slice(br#""system""#);
        at = role.end;
    }
    out.extend_from_slice(&messages[last..]);
    Some(out)
}

/// Whether a role's JSON text says `developer` (escapes read).
fn is_developer(role: &[u8]) -> bool {
    role == br#""developer""#
        || (role.contains(&b'\\')
            && serde_json::from_slice::<String>(role).is_ok_and(|r| r == "developer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderKind;
    use serde_json::{json, Value};

    fn fitted(kind: ProviderKind, body: &Value) -> Option<Value> {
        let provider = Provider::unconfigured(kind);
        ChatFit::for_provider(&provider)
            .apply(body.to_string().as_bytes())
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn mistral_loses_openais_hints_and_gets_its_own_names() {
        let body = json!({"model": "mistral-small", "messages": [{"role": "user", "content": "hi"}],
            "stream": true, "stream_options": {"include_usage": true}, "store": false,
            "user": "u1", "metadata": {"a": "b"}, "max_completion_tokens": 64, "seed": 7,
            "temperature": 0.2, "logprobs": true});
        let got = fitted(ProviderKind::Mistral, &body).unwrap();
        assert_eq!(
            got,
            json!({"model": "mistral-small", "messages": [{"role": "user", "content": "hi"}],
                "stream": true, "max_tokens": 64, "random_seed": 7, "temperature": 0.2,
                "logprobs": true})
        );
    }

    #[test]
    fn a_member_given_both_ways_keeps_the_providers_name_alone() {
        let body = json!({"model": "m", "max_tokens": 10, "max_completion_tokens": 64});
        let got = fitted(ProviderKind::Mistral, &body).unwrap();
        assert_eq!(got, json!({"model": "m", "max_tokens": 10}));
    }

    #[test]
    fn a_providers_name_left_null_takes_the_value_given_under_openais() {
        let body = json!({"model": "m", "max_tokens": null, "max_completion_tokens": 64, "seed": 7, "random_seed": null});
        let got = fitted(ProviderKind::Mistral, &body).unwrap();
        assert_eq!(
            got,
            json!({"model": "m", "max_tokens": 64, "random_seed": 7})
        );
        // Both left unset: one `null` under the provider's name, no key twice.
        let unset = br#"{"model":"m","max_tokens":null,"max_completion_tokens":null}"#;
        let provider = Provider::unconfigured(ProviderKind::Mistral);
        let got = ChatFit::for_provider(&provider).apply(unset).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"{"model":"m","max_tokens":null}"#
        );
    }

    #[test]
    fn a_body_that_needs_nothing_or_a_provider_that_refuses_nothing_is_left_as_sent() {
        let plain = json!({"model": "m", "messages": [], "max_tokens": 10});
        assert_eq!(fitted(ProviderKind::Mistral, &plain), None);
        let hinted = json!({"model": "m", "store": true, "max_completion_tokens": 5});
        assert_eq!(fitted(ProviderKind::OpenAi, &hinted), None);
        assert_eq!(fitted(ProviderKind::Vllm, &hinted), None);
    }

    #[test]
    fn deepseek_gets_developer_messages_as_system_ones() {
        let body = br#"{"model":"deepseek-chat","messages":[{"role":"developer","content":"Be terse."},{"content":"hi","role" : "user"},{"role":"develop\u0065r","content":"Use French."}],"store":true}"#;
        let provider = Provider::unconfigured(ProviderKind::DeepSeek);
        let got = ChatFit::for_provider(&provider).apply(body).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"{"model":"deepseek-chat","messages":[{"role":"system","content":"Be terse."},{"content":"hi","role" : "user"},{"role":"system","content":"Use French."}],"store":true}"#
        );
        let plain = json!({"model": "m", "messages": [{"role": "system", "content": "x"}]});
        assert_eq!(fitted(ProviderKind::DeepSeek, &plain), None);
        let developer = json!({"model": "m", "messages": [{"role": "developer", "content": "x"}]});
        assert_eq!(fitted(ProviderKind::OpenAi, &developer), None);
    }

    #[test]
    fn members_kept_are_copied_as_written() {
        let body = br#"{ "model" : "m" , "x_future":{"a" : [1.50, "\u00e9"]}, "store":true }"#;
        let provider = Provider::unconfigured(ProviderKind::Mistral);
        let got = ChatFit::for_provider(&provider).apply(body).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"{"model":"m","x_future":{"a" : [1.50, "\u00e9"]}}"#
        );
    }
}
