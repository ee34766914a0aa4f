//! What each built-in provider type is, in one table: its name, where it lives, how it
//! authenticates, which format it speaks, how its model list is asked for, which
//! headers it gets by default. The gateway asks [`ProviderKind::facts`] rather than
//! matching on the type; a new type is one more entry here.

use super::kind::{AuthStyle, ProviderKind, WireFormat};
use crate::translate::{StreamUsage, TokenLimitField};

/// The fixed facts of one built-in provider type.
#[derive(Debug, PartialEq, Eq)]
pub struct KindFacts {
    /// The type's name as written in config and URLs.
    pub name: &'static str,
    /// Its name in OpenTelemetry's `gen_ai.provider.name` (the convention's well-known
    /// value where there is one).
    pub telemetry_name: &'static str,
    /// The public base URL used when config gives none.
    pub default_base_url: &'static str,
    /// Where the API the gateway speaks to it (`/v1` calls, the model list) sits when
    /// its base URL names a host alone: empty for most; Gemini's OpenAI-compatible API
    /// is at `/v1beta/openai`, its own API at the root (reached on `/p/`).
    pub api_path_at_root: &'static str,
    /// The native wire format.
    pub wire_format: WireFormat,
    /// How the credential is sent upstream on its native format.
    pub auth_style: AuthStyle,
    /// Whether requests are pointless without a credential. Self-hosted servers
    /// (vLLM, Ollama) usually run without one.
    pub requires_key: bool,
    /// Whether it serves the OpenAI Responses API (`/responses`) itself.
    pub serves_responses_api: bool,
    /// How a translated Chat Completions request names its output-token limit.
    pub chat_token_limit: TokenLimitField,
    /// How its Chat Completions streams report their usage (asked for, or unasked).
    pub stream_usage: StreamUsage,
    /// An assistant turn's thinking must come back as its `reasoning_content` (a
    /// thinking model's tool loop is refused without it).
    pub takes_reasoning_content_back: bool,
    /// Its Chat Completions take OpenAI's `user` member (some refuse unknown members).
    pub takes_user_field: bool,
    /// It refuses a Chat conversation whose roles follow each other in an order its
    /// own validator does not allow (Mistral: nothing but `assistant` or `tool` after
    /// `tool`, no `system` after `assistant`), where OpenAI takes any order.
    pub orders_messages_strictly: bool,
    /// It refuses a Chat request member its own API does not define (Mistral: 422
    /// `extra_forbidden`), OpenAI's among them: a Chat body forwarded to it loses
    /// OpenAI's hints and takes its names (see `proxy::chat_body_fit`).
    pub refuses_unknown_members: bool,
    /// Its Chat Completions take OpenAI's `developer` role; DeepSeek refuses it
    /// ("unknown variant"), and a Chat body forwarded to it says `system` instead.
    pub takes_developer_role: bool,
    /// It takes only tool-call ids of nine letters and digits (Mistral: 400, code
    /// 3280): other clients' ids are shortened on their way to it.
    pub short_tool_call_ids: bool,
    /// Its chat models take image parts; DeepSeek's read text only ("unknown variant
    /// `image_url`, expected `text`"), and get a note in their place, of a file too.
    pub takes_images: bool,
    /// Its Chat Completions take OpenAI's `file` content part (a PDF as `file_data`):
    /// OpenAI's own API and OpenRouter document it; other servers refuse the part type
    /// (vLLM: 400 "Unsupported chat content part type: 'file'"), and get a note in its
    /// place.
    pub takes_file_parts: bool,
    /// Appended to `GET {base}/models` so that one page holds the whole list.
    pub models_list_query: &'static str,
    /// Headers sent upstream unless the client sent its own.
    pub default_headers: &'static [(&'static str, &'static str)],
    /// Passthrough endpoints of its own API that live at the host's root, not below
    /// the base URL's path (Ollama's native `api/…` beside its OpenAI-compatible `/v1`).
    pub root_endpoints: &'static [&'static str],
    /// Lowercase model-name prefixes of its models (`claude-` → anthropic), which route
    /// a bare model name to it.
    pub model_families: &'static [&'static str],
}

/// The defaults most OpenAI-compatible types share.
const OPENAI_COMPATIBLE: KindFacts = KindFacts {
    name: "",
    telemetry_name: "",
    default_base_url: "",
    api_path_at_root: "",
    wire_format: WireFormat::OpenAi,
    auth_style: AuthStyle::Bearer,
    requires_key: true,
    serves_responses_api: false,
    chat_token_limit: TokenLimitField::MaxTokens,
    stream_usage: StreamUsage::OnRequest,
    takes_reasoning_content_back: false,
    takes_user_field: true,
    orders_messages_strictly: false,
    refuses_unknown_members: false,
    takes_developer_role: true,
    short_tool_call_ids: false,
    takes_images: true,
    takes_file_parts: false,
    models_list_query: "",
    default_headers: &[],
    root_endpoints: &[],
    model_families: &[],
};

const ANTHROPIC: KindFacts = KindFacts {
    name: "anthropic",
    telemetry_name: "anthropic",
    default_base_url: "https://api.anthropic.com/v1",
    wire_format: WireFormat::Anthropic,
    auth_style: AuthStyle::XApiKey,
    // It pages its model list (20 by default); 1000 is its largest page.
    models_list_query: "?limit=1000",
    model_families: &["claude-"],
    ..OPENAI_COMPATIBLE
};

const OPENAI: KindFacts = KindFacts {
    name: "openai",
    telemetry_name: "openai",
    default_base_url: "https://api.openai.com/v1",
    serves_responses_api: true,
    // Its reasoning models refuse `max_tokens`.
    chat_token_limit: TokenLimitField::MaxCompletionTokens,
    takes_file_parts: true,
    // Its embedding names only: Gemini's `text-embedding-004` is not OpenAI's.
    model_families: &[
        "gpt-",
        "chatgpt-",
        "o1",
        "o3",
        "o4",
        "text-embedding-3",
        "text-embedding-ada",
        "omni-moderation",
        "text-moderation",
    ],
    ..OPENAI_COMPATIBLE
};

const OPENROUTER: KindFacts = KindFacts {
    name: "openrouter",
    telemetry_name: "openrouter",
    default_base_url: "https://openrouter.ai/api/v1",
    // Its app attribution; a client's own values win.
    default_headers: &[
        ("http-referer", "https://aurora-gateway.local"),
        ("x-title", "Aurora"),
    ],
    // It reads a PDF `file` part for any model (its PDF inputs guide).
    takes_file_parts: true,
    ..OPENAI_COMPATIBLE
};

const ZAI: KindFacts = KindFacts {
    name: "zai",
    telemetry_name: "zai",
    default_base_url: "https://api.z.ai/api/paas/v4",
    ..OPENAI_COMPATIBLE
};

const VLLM: KindFacts = KindFacts {
    name: "vllm",
    telemetry_name: "vllm",
    default_base_url: "http://localhost:8000/v1",
    requires_key: false,
    ..OPENAI_COMPATIBLE
};

const DEEPSEEK: KindFacts = KindFacts {
    name: "deepseek",
    telemetry_name: "deepseek",
    default_base_url: "https://api.deepseek.com/v1",
    // Its thinking mode refuses a tool loop whose earlier turns lack their reasoning.
    takes_reasoning_content_back: true,
    takes_developer_role: false,
    takes_images: false,
    model_families: &["deepseek-"],
    ..OPENAI_COMPATIBLE
};

const GROQ: KindFacts = KindFacts {
    name: "groq",
    telemetry_name: "groq",
    default_base_url: "https://api.groq.com/openai/v1",
    ..OPENAI_COMPATIBLE
};

const XAI: KindFacts = KindFacts {
    name: "xai",
    telemetry_name: "x_ai",
    default_base_url: "https://api.x.ai/v1",
    serves_responses_api: true,
    model_families: &["grok-"],
    ..OPENAI_COMPATIBLE
};

const GEMINI: KindFacts = KindFacts {
    name: "gemini",
    telemetry_name: "gcp.gemini",
    default_base_url: "https://generativelanguage.googleapis.com/v1beta/openai",
    api_path_at_root: "/v1beta/openai",
    auth_style: AuthStyle::GoogApiKey,
    model_families: &["gemini-"],
    ..OPENAI_COMPATIBLE
};

const MISTRAL: KindFacts = KindFacts {
    name: "mistral",
    telemetry_name: "mistral_ai",
    default_base_url: "https://api.mistral.ai/v1",
    // Its last chunk carries the usage, and `stream_options` is refused (422), as is
    // any member it does not know, `user` among them.
    stream_usage: StreamUsage::Unasked,
    takes_user_field: false,
    // A user message right after tool results is refused (400, code 3230).
    orders_messages_strictly: true,
    refuses_unknown_members: true,
    short_tool_call_ids: true,
    ..OPENAI_COMPATIBLE
};

const OLLAMA: KindFacts = KindFacts {
    name: "ollama",
    telemetry_name: "ollama",
    default_base_url: "http://localhost:11434/v1",
    requires_key: false,
    // Its own client (`ollama`) calls `/api/chat`, `/api/tags`, … at the root.
    root_endpoints: &["api/"],
    ..OPENAI_COMPATIBLE
};

impl ProviderKind {
    /// The type's entry in the table: a static, so asking costs nothing.
    pub fn facts(self) -> &'static KindFacts {
        match self {
            ProviderKind::Anthropic => &ANTHROPIC,
            ProviderKind::OpenAi => &OPENAI,
            ProviderKind::OpenRouter => &OPENROUTER,
            ProviderKind::Zai => &ZAI,
            ProviderKind::Vllm => &VLLM,
            ProviderKind::DeepSeek => &DEEPSEEK,
            ProviderKind::Groq => &GROQ,
            ProviderKind::Xai => &XAI,
            ProviderKind::Gemini => &GEMINI,
            ProviderKind::Mistral => &MISTRAL,
            ProviderKind::Ollama => &OLLAMA,
        }
    }

    /// The type whose model family `model` belongs to (`claude-sonnet-4-5` →
    /// anthropic), by its name's prefix, case-insensitively.
    pub fn of_model_family(model: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| {
            kind.facts().model_families.iter().any(|prefix| {
                model
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_filled_in() {
        for kind in ProviderKind::ALL {
            let facts = kind.facts();
            assert!(!facts.name.is_empty(), "{kind:?}");
            assert!(!facts.telemetry_name.is_empty(), "{kind:?}");
            assert!(facts.default_base_url.contains("://"), "{kind:?}");
            assert!(
                facts.models_list_query.is_empty() || facts.models_list_query.starts_with('?'),
                "{kind:?}"
            );
            for prefix in facts.model_families {
                assert_eq!(*prefix, prefix.to_ascii_lowercase(), "{kind:?}");
            }
        }
    }

    #[test]
    fn each_name_is_its_own_types() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::from_name(kind.facts().name), Some(kind));
        }
    }

    #[test]
    fn anthropic_speaks_messages_with_x_api_key_and_lists_every_model_at_once() {
        let f = ProviderKind::Anthropic.facts();
        assert_eq!(f.wire_format, WireFormat::Anthropic);
        assert_eq!(f.auth_style, AuthStyle::XApiKey);
        assert_eq!(f.default_base_url, "https://api.anthropic.com/v1");
        assert_eq!(f.models_list_query, "?limit=1000");
        assert!(f.requires_key && !f.serves_responses_api);
        assert!(f.default_headers.is_empty());
    }

    #[test]
    fn openai_serves_responses_and_caps_output_with_max_completion_tokens() {
        let f = ProviderKind::OpenAi.facts();
        assert_eq!(f.wire_format, WireFormat::OpenAi);
        assert_eq!(f.auth_style, AuthStyle::Bearer);
        assert!(f.serves_responses_api);
        assert_eq!(f.chat_token_limit, TokenLimitField::MaxCompletionTokens);
        assert_eq!(f.models_list_query, "");
    }

    #[test]
    fn the_other_types_keep_their_own_differences() {
        assert_eq!(
            ProviderKind::Gemini.facts().auth_style,
            AuthStyle::GoogApiKey
        );
        assert_eq!(ProviderKind::Gemini.facts().telemetry_name, "gcp.gemini");
        assert_eq!(ProviderKind::Mistral.facts().telemetry_name, "mistral_ai");
        // Mistral refuses `stream_options`; every other OpenAI-format type is asked.
        assert_eq!(
            ProviderKind::Mistral.facts().stream_usage,
            StreamUsage::Unasked
        );
        assert_eq!(
            ProviderKind::OpenAi.facts().stream_usage,
            StreamUsage::OnRequest
        );
        assert!(ProviderKind::Mistral.facts().orders_messages_strictly);
        assert!(!ProviderKind::OpenAi.facts().orders_messages_strictly);
        assert!(ProviderKind::Mistral.facts().refuses_unknown_members);
        assert!(!ProviderKind::DeepSeek.facts().takes_developer_role);
        assert!(ProviderKind::Mistral.facts().short_tool_call_ids);
        assert!(!ProviderKind::DeepSeek.facts().takes_images);
        // A `file` part only where the API documents it.
        let takes_files: Vec<ProviderKind> = ProviderKind::ALL
            .into_iter()
            .filter(|k| k.facts().takes_file_parts)
            .collect();
        assert_eq!(
            takes_files,
            [ProviderKind::OpenAi, ProviderKind::OpenRouter]
        );
        assert!(ProviderKind::Xai.facts().serves_responses_api);
        assert_eq!(ProviderKind::Xai.facts().telemetry_name, "x_ai");
        assert!(!ProviderKind::Vllm.facts().requires_key);
        assert!(!ProviderKind::Ollama.facts().requires_key);
        assert_eq!(
            ProviderKind::OpenRouter.facts().default_headers,
            &[
                ("http-referer", "https://aurora-gateway.local"),
                ("x-title", "Aurora")
            ]
        );
        for kind in ProviderKind::ALL {
            let f = kind.facts();
            if kind != ProviderKind::Anthropic {
                assert_eq!(f.wire_format, WireFormat::OpenAi, "{kind}");
            }
            if kind != ProviderKind::OpenAi {
                assert_eq!(f.chat_token_limit, TokenLimitField::MaxTokens, "{kind}");
            }
        }
    }

    #[test]
    fn model_families_name_their_type_whatever_the_case() {
        let cases = [
            ("claude-sonnet-4-5", Some(ProviderKind::Anthropic)),
            ("GPT-4o", Some(ProviderKind::OpenAi)),
            ("chatgpt-4o-latest", Some(ProviderKind::OpenAi)),
            ("o3-mini", Some(ProviderKind::OpenAi)),
            ("o4", Some(ProviderKind::OpenAi)),
            ("gemini-2.5-pro", Some(ProviderKind::Gemini)),
            ("grok-4", Some(ProviderKind::Xai)),
            ("deepseek-chat", Some(ProviderKind::DeepSeek)),
            ("text-embedding-3-small", Some(ProviderKind::OpenAi)),
            ("text-embedding-ada-002", Some(ProviderKind::OpenAi)),
            ("text-embedding-004", None),
            ("omni-moderation-latest", Some(ProviderKind::OpenAi)),
            ("text-moderation-stable", Some(ProviderKind::OpenAi)),
            ("llama-3", None),
            ("o", None),
            ("é", None),
        ];
        for (model, kind) in cases {
            assert_eq!(ProviderKind::of_model_family(model), kind, "{model}");
        }
    }

    #[test]
    fn no_model_family_prefix_is_claimed_by_two_types() {
        let prefixes: Vec<(&str, ProviderKind)> = ProviderKind::ALL
            .into_iter()
            .flat_map(|k| k.facts().model_families.iter().map(move |p| (*p, k)))
            .collect();
        for (a, kind_a) in &prefixes {
            for (b, kind_b) in &prefixes {
                if kind_a != kind_b {
                    assert!(
                        !a.starts_with(b),
                        "`{a}` ({kind_a}) falls under `{b}` ({kind_b})"
                    );
                }
            }
        }
    }
}
