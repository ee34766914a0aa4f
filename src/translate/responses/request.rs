//! Responses API request → Anthropic Messages request (the hub format).
//!
//! Choices made where the formats do not line up:
//! - `instructions`, then every `system` and `developer` input message in order,
//!   become the top-level `system`, joined with a blank line.
//! - Input items become messages: consecutive items of one role form one
//!   message (a `reasoning` item, assistant text and `function_call`s are one
//!   assistant turn; `function_call_output`s and user messages one user turn,
//!   tool results first, as Anthropic requires). A string `input` is one user
//!   message.
//! - `input_image` and `input_file` (data URL or URL) become image and
//!   document blocks; a `file_id` reference cannot be resolved and is refused.
//!   A base64 image gets the media type its first bytes show, else the one its
//!   data URL names, `image/jpg` made `image/jpeg` (as for Chat Completions).
//! - `function_call` arguments must encode an object (they become the tool
//!   call's `input`).
//! - A `reasoning` item whose `encrypted_content` the gateway made becomes the
//!   thinking (or redacted thinking) block it came from, so a tool loop with
//!   thinking continues with `store: false`; any other reasoning item is
//!   dropped (another provider's state means nothing here).
//! - Function tools keep their schema; `namespace` tools are flattened to
//!   `{namespace}__{name}` (see [`ToolNames`]). Hosted tools the provider
//!   cannot run (`web_search`, `file_search`, `code_interpreter`,
//!   `computer_use`, …) and freeform `custom` tools are left out and reported
//!   in [`ResponsesRequest::omitted_tools`]; a `tool_choice` forcing one of
//!   them is refused.
//! - `tool_choice` `auto` / `required` / `none` / a function become Anthropic's
//!   `auto` / `any` / `none` / `tool`; `parallel_tool_calls: false` sets
//!   `disable_parallel_tool_use`.
//! - `reasoning.effort` gives a thinking budget as for Chat Completions
//!   (`minimal`/`low` 1024, `medium` 4096, `high`/`xhigh` 16384; `none` none). For
//!   an Anthropic-format provider ([`ResponsesRequestOptions::anthropic_target`]),
//!   what Anthropic refuses is made acceptable: `max_tokens` is raised above the
//!   budget when needed; thinking drops `temperature` and `top_p`, and goes when the
//!   turn answers tool calls whose thinking was not kept or when a tool is forced
//!   (refused); `temperature` is clamped to 1, and `top_p` is sent only without it
//!   (Claude 4.5 and later refuse both). A chat server gets them all as sent, the
//!   budget becoming its `reasoning_effort` on every turn.
//! - `max_output_tokens` becomes `max_tokens`; when absent, the limit the gateway
//!   gives (Anthropic requires one: the model's ceiling), or none for a chat server,
//!   which then answers up to the model's maximum as OpenAI does; `user` /
//!   `safety_identifier` becomes `metadata.user_id`.
//! - Hints with no counterpart are not sent: `prompt_cache_key`,
//!   `client_metadata`, `reasoning.summary`, `include`, `store`, `metadata`,
//!   `service_tier`, `truncation`, `top_logprobs`, `text.verbosity`.
//! - `text.format` `json_schema` becomes `output_config.format` (`type:
//!   json_schema`, the schema): Anthropic answers with the JSON as text, the
//!   `output_text` the client reads. For a chat server the hub keeps the schema's
//!   `name`, `description` and `strict` there too, and takes `json_object`, for its
//!   `response_format`; Anthropic, which refuses other members and has no JSON
//!   object mode, gets the schema alone, and `json_object` is refused.
//! - Refused: `background`, `conversation`, `prompt`, `item_reference` items.

use std::borrow::Cow;

use super::reasoning_state::ReasoningState;
use super::tool_names::ToolNames;
use crate::translate::error::TranslateError;
use crate::translate::image_media_type::anthropic_image_media_type;
use crate::translate::tool_call_id::anthropic_tool_use_id;
// Thinking budgets for `reasoning.effort`, as for Chat Completions.
use crate::translate::json_writer::{
    write_compact, write_f64, write_key, write_str, write_str_fragment, write_u64,
};
use crate::translate::openai_to_anthropic_request::{
    ANSWER_ROOM_PAST_THINKING, BUDGET_HIGH, BUDGET_LOW, BUDGET_MEDIUM,
};
use crate::translate::request_fields::{
    field, json_object, parse_text, stream_flag, CheckedBody, Json, Text,
};

/// Settings for [`responses_to_anthropic_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesRequestOptions {
    /// The model the provider gets, routing prefix already removed.
    pub model: String,
    /// `max_tokens` when the client gives no `max_output_tokens`; none leaves the
    /// limit to the provider (a chat server's own is the model's maximum).
    pub default_max_tokens: Option<u32>,
    /// A reasoning item without the gateway's state comes back as thinking from its
    /// summary: for a chat server that wants its reasoning back (DeepSeek refuses a
    /// tool loop without it, and its reasoning is what the summary holds); Anthropic
    /// takes back only the thinking it signed.
    pub summaries_as_thinking: bool,
    /// The provider is Anthropic-format: the request is held to the rules only
    /// Anthropic has (see the module doc); a chat server, which gets the hub request
    /// translated again, is not held to them.
    pub anthropic_target: bool,
}

/// A translated request, and what the answer needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesRequest {
    /// The Messages request.
    pub body: Vec<u8>,
    /// The client asked for a stream.
    pub stream: bool,
    /// The response is to be kept for `previous_response_id` and retrieval
    /// (`store`, true unless the client says false).
    pub store: bool,
    /// Namespace tools flattened for the provider.
    pub tool_names: ToolNames,
    /// Hosted tools offered but left out, by type.
    pub omitted_tools: Vec<String>,
    /// `include` asks for `reasoning.encrypted_content`.
    pub include_encrypted_reasoning: bool,
    /// The request parameters the `response` object echoes, as JSON members.
    pub echo: String,
    /// The request's own input as a JSON array of items (a string input as one
    /// user message), to be stored with the response.
    pub input_items: Vec<u8>,
}

/// Anthropic's schema when a function tool has no `parameters`.
const EMPTY_SCHEMA: &[u8] = br#"{"properties":{},"type":"object"}"#;

/// Hosted tools only OpenAI runs.
const HOSTED_TOOLS: [&str; 10] = [
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "computer_use",
    "computer_use_preview",
    "image_generation",
    "local_shell",
    "mcp",
    "custom",
];

json_object!(
    /// The members of a Responses request that translation reads.
    struct Request {
        input,
        instructions,
        max_output_tokens,
        temperature,
        top_p,
        tools,
        tool_choice,
        parallel_tool_calls,
        reasoning,
        text,
        stream,
        store,
        include,
        user,
        safety_identifier,
        background,
        conversation,
        prompt,
        previous_response_id,
        metadata,
        truncation,
    }
);

json_object!(
    struct Item {
        kind = "type",
        role,
        content,
        call_id,
        name,
        namespace,
        arguments,
        output,
        encrypted_content,
        summary,
        input,
        action,
    }
);

json_object!(
    struct Part {
        kind = "type",
        text,
        refusal,
        image_url,
        file_data,
        file_url,
        file_id,
        filename,
    }
);

json_object!(
    struct Tool {
        kind = "type",
        name,
        description,
        parameters,
        tools,
    }
);

/// Translates a Responses request body into a Messages request body. `history` is
/// the items of the stored response named by `previous_response_id` (a JSON array),
/// read before the request's own input.
pub fn responses_to_anthropic_request(
    body: CheckedBody<'_>,
    history: Option<&[u8]>,
    opts: &ResponsesRequestOptions,
) -> Result<ResponsesRequest, TranslateError> {
    let value = body.value();
    if !value.is_object() {
        return Err(TranslateError::InvalidJson("expected an object".into()));
    }
    let req = Request::read(value);
    for (key, member) in [
        ("background", req.background),
        ("conversation", req.conversation),
        ("prompt", req.prompt),
    ] {
        let set = field(member).is_some_and(|v| v.as_bool() != Some(false));
        if set {
            return Err(TranslateError::unsupported(
                key,
                format!("`{key}` needs OpenAI's own servers; remove it to use this model"),
            ));
        }
    }
    let stream = stream_flag(req.stream)?;
    let store = field(req.store).and_then(Json::as_bool).unwrap_or(true);
    // A stored response keeps its reasoning state too: `previous_response_id` replays
    // it, and Anthropic refuses a thinking tool loop whose turn lost its thinking. The
    // answer the client gets is the one stored, so it carries the state as well.
    let include_encrypted_reasoning = store
        || field(req.include)
            .and_then(Json::elements)
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i.as_str().as_deref() == Some("reasoning.encrypted_content"))
            });
    let output_format = output_format(req.text, opts.anthropic_target)?;

    let mut system: Vec<Cow<'_, str>> = Vec::new();
    if let Some(instructions) = field(req.instructions) {
        let text = instructions
            .as_str()
            .ok_or_else(|| TranslateError::invalid_field("instructions", "must be a string"))?;
        if !text.is_empty() {
            system.push(text);
        }
    }

    let mut tool_names = ToolNames::default();
    let mut omitted_tools = Vec::new();
    let tools = convert_tools(req.tools, &mut tool_names, &mut omitted_tools)?;

    let mut conv = Conversation::with_capacity(body.text().len() + history.map_or(0, <[u8]>::len));
    conv.summaries_as_thinking = opts.summaries_as_thinking;
    conv.anthropic_target = opts.anthropic_target;
    let history = match history {
        Some(h) => Some(
            parse_text(
                std::str::from_utf8(h)
                    .map_err(|e| TranslateError::InvalidJson(format!("stored items: {e}")))?,
            )
            .map_err(|e| TranslateError::InvalidJson(format!("stored items: {e}")))?,
        ),
        None => None,
    };
    if let Some(items) = history.and_then(Json::elements) {
        for (i, item) in items.into_iter().enumerate() {
            // Stored items were checked when they were sent; a path into them would
            // mean nothing to the client.
            convert_item(
                item,
                &format!("previous_response_id items[{i}]"),
                &mut conv,
                &mut system,
            )?;
        }
    }
    let input_items = match field(req.input) {
        None => {
            return Err(TranslateError::invalid_field(
                "input",
                "is required: a string or an array of input items",
            ))
        }
        Some(input) => {
            if let Some(text) = input.as_text() {
                conv.block(Role::User, false, |out| write_text_block(out, &text));
                let mut items = br#"[{"content":[{"text":"#.to_vec();
                text.write(&mut items);
                items.extend_from_slice(
                    br#","type":"input_text"}],"role":"user","type":"message"}]"#,
                );
                items
            } else if let Some(items) = input.elements() {
                for (i, item) in items.into_iter().enumerate() {
                    convert_item(item, &format!("input[{i}]"), &mut conv, &mut system)?;
                }
                input.text().as_bytes().to_vec()
            } else {
                return Err(TranslateError::invalid_field(
                    "input",
                    "must be a string or an array of input items",
                ));
            }
        }
    };
    let answers_calls_without_thinking = conv.answers_calls_without_thinking();
    let messages = conv.finish();
    if messages.is_empty() || messages == b"[]" {
        return Err(TranslateError::invalid_field(
            "input",
            "holds no message for the model",
        ));
    }

    let budget = match field(req.reasoning)
        .and_then(|r| r.get("effort"))
        .and_then(Json::non_null)
    {
        None => None,
        Some(effort) => match effort.as_str().as_deref() {
            Some("none") => None,
            Some("minimal" | "low") => Some(BUDGET_LOW),
            Some("medium") => Some(BUDGET_MEDIUM),
            Some("high" | "xhigh") => Some(BUDGET_HIGH),
            _ => {
                return Err(TranslateError::invalid_field(
                    "reasoning.effort",
                    "must be one of none, minimal, low, medium, high, xhigh",
                ))
            }
        },
    };
    // Anthropic would refuse it: the turn goes without thinking, as its error advises.
    let anthropic = opts.anthropic_target;
    let budget = budget.filter(|_| !(anthropic && answers_calls_without_thinking));
    let mut max_tokens = match field(req.max_output_tokens) {
        Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            TranslateError::invalid_field("max_output_tokens", "must be a positive integer")
        })?),
        None => opts.default_max_tokens.map(u64::from),
    };
    if let (Some(budget), Some(max), true) = (budget, max_tokens.as_mut(), anthropic) {
        if *max <= budget {
            *max = budget + ANSWER_ROOM_PAST_THINKING;
        }
    }
    let number = |key: &str, value: Option<Json<'_>>| match field(value) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| TranslateError::invalid_field(key, "must be a number")),
    };
    let temperature = number("temperature", req.temperature)?;
    let temperature = temperature.map(|t| if anthropic { t.min(1.0) } else { t });
    // Claude 4.5 and later refuse both at once: the temperature is the one kept.
    let top_p = number("top_p", req.top_p)?.filter(|_| !anthropic || temperature.is_none());
    // Anthropic refuses thinking with them.
    let (temperature, top_p) = match budget {
        Some(_) if anthropic => (None, None),
        _ => (temperature, top_p),
    };
    let choice = tool_choice(req.tool_choice, req.parallel_tool_calls)?;
    if anthropic && budget.is_some() && choice.as_ref().is_some_and(|c| c.forced) {
        return Err(TranslateError::unsupported(
            "reasoning.effort",
            "Anthropic models cannot think while forced to call a tool; remove `reasoning.effort` or set `tool_choice` to auto",
        ));
    }
    let user = [req.safety_identifier, req.user]
        .into_iter()
        .find_map(|v| field(v).and_then(Json::as_str));

    let mut out = Vec::with_capacity(messages.len() + tools.as_ref().map_or(0, Vec::len) + 512);
    out.push(b'{');
    if let Some(max_tokens) = max_tokens {
        write_key(&mut out, "max_tokens");
        write_u64(&mut out, max_tokens);
        out.push(b',');
    }
    out.extend_from_slice(br#""messages":"#);
    out.extend_from_slice(&messages);
    drop(messages);
    if let Some(user) = user {
        out.extend_from_slice(br#","metadata":{"user_id":"#);
        write_str(&mut out, &user);
        out.push(b'}');
    }
    out.extend_from_slice(br#","model":"#);
    write_str(&mut out, &opts.model);
    if let Some(format) = output_format {
        out.extend_from_slice(br#","output_config":{"format":"#);
        out.extend_from_slice(&format);
        out.push(b'}');
    }
    if stream {
        out.extend_from_slice(br#","stream":true"#);
    }
    if !system.is_empty() {
        out.extend_from_slice(br#","system":""#);
        for (k, text) in system.iter().enumerate() {
            if k > 0 {
                out.extend_from_slice(b"\\n\\n");
            }
            write_str_fragment(&mut out, text);
        }
        out.push(b'"');
    }
    if let Some(t) = temperature {
        out.extend_from_slice(br#","temperature":"#);
        write_f64(&mut out, t);
    }
    if let Some(budget) = budget {
        out.extend_from_slice(br#","thinking":{"budget_tokens":"#);
        write_u64(&mut out, budget);
        out.extend_from_slice(br#","type":"enabled"}"#);
    }
    let has_tools = tools.as_ref().is_some_and(|t| t.len() > 2);
    if has_tools {
        if let Some(choice) = &choice {
            out.extend_from_slice(br#","tool_choice":"#);
            out.extend_from_slice(&choice.json);
        }
        out.extend_from_slice(br#","tools":"#);
        out.extend_from_slice(tools.as_deref().unwrap_or(b"[]"));
    }
    if let Some(p) = top_p {
        out.extend_from_slice(br#","top_p":"#);
        write_f64(&mut out, p);
    }
    out.push(b'}');

    Ok(ResponsesRequest {
        body: out,
        stream,
        store,
        tool_names,
        omitted_tools,
        include_encrypted_reasoning,
        echo: echo(&req, store),
        input_items,
    })
}

/// `text.format` as the hub's `output_config.format`, written; `None` for plain text.
/// Anthropic takes the schema alone (and refuses any other member); a chat server's
/// `response_format` also wants the schema's `name` (required), `description` and
/// `strict`, so the hub carries them for one (`anthropic_target` false), and its JSON
/// object mode too, which Anthropic does not have.
fn output_format(
    text: Option<Json<'_>>,
    anthropic_target: bool,
) -> Result<Option<Vec<u8>>, TranslateError> {
    let Some(format) = field(text)
        .and_then(|t| t.get("format"))
        .and_then(Json::non_null)
    else {
        return Ok(None);
    };
    let [kind, name, description, schema, strict] =
        format.members(["type", "name", "description", "schema", "strict"]);
    match kind.and_then(Json::as_str).as_deref() {
        Some("text") | None => Ok(None),
        Some("json_schema") => {
            let schema = field(schema).filter(|s| s.is_object()).ok_or_else(|| {
                TranslateError::invalid_field(
                    "text.format.schema",
                    "is required and must be a JSON schema object",
                )
            })?;
            let mut out = Vec::with_capacity(schema.text().len() + 128);
            out.push(b'{');
            if !anthropic_target {
                for (key, value) in [("description", description), ("name", name)] {
                    if let Some(value) = field(value).filter(|v| v.is_string()) {
                        write_key(&mut out, key);
                        write_compact(&mut out, value.text());
                        out.push(b',');
                    }
                }
            }
            write_key(&mut out, "schema");
            write_compact(&mut out, schema.text());
            match field(strict).and_then(Json::as_bool) {
                _ if anthropic_target => {}
                Some(true) => out.extend_from_slice(br#","strict":true"#),
                Some(false) => out.extend_from_slice(br#","strict":false"#),
                None => {}
            }
            out.extend_from_slice(br#","type":"json_schema"}"#);
            Ok(Some(out))
        }
        Some("json_object") if !anthropic_target => Ok(Some(br#"{"type":"json_object"}"#.to_vec())),
        Some("json_object") => Err(TranslateError::unsupported(
            "text.format",
            "Anthropic models have no JSON object mode; send `text.format` of type `json_schema` with the schema the answer should follow, or describe the JSON in the prompt",
        )),
        Some(_) => Err(TranslateError::invalid_field(
            "text.format.type",
            "must be one of text, json_schema, json_object",
        )),
    }
}

/// The request parameters a `response` object echoes.
fn echo(req: &Request<'_>, store: bool) -> String {
    let mut out = Vec::with_capacity(256);
    let member = |out: &mut Vec<u8>, key: &str, value: Option<Json<'_>>, default: &str| {
        if !out.is_empty() {
            out.push(b',');
        }
        write_key(out, key);
        match field(value) {
            Some(v) => write_compact(out, v.text()),
            None => out.extend_from_slice(default.as_bytes()),
        }
    };
    member(&mut out, "instructions", req.instructions, "null");
    member(&mut out, "max_output_tokens", req.max_output_tokens, "null");
    member(&mut out, "metadata", req.metadata, "{}");
    member(
        &mut out,
        "parallel_tool_calls",
        req.parallel_tool_calls,
        "true",
    );
    member(
        &mut out,
        "previous_response_id",
        req.previous_response_id,
        "null",
    );
    member(
        &mut out,
        "reasoning",
        req.reasoning,
        r#"{"effort":null,"summary":null}"#,
    );
    member(
        &mut out,
        "store",
        None,
        if store { "true" } else { "false" },
    );
    member(&mut out, "temperature", req.temperature, "1.0");
    member(&mut out, "text", req.text, r#"{"format":{"type":"text"}}"#);
    member(&mut out, "tool_choice", req.tool_choice, r#""auto""#);
    match field(req.tools).and_then(echoed_tools) {
        Some(tools) => {
            out.push(b',');
            write_key(&mut out, "tools");
            out.extend_from_slice(tools.as_bytes());
        }
        None => member(&mut out, "tools", req.tools, "[]"),
    }
    member(&mut out, "top_p", req.top_p, "1.0");
    member(&mut out, "truncation", req.truncation, r#""disabled""#);
    member(&mut out, "user", req.user, "null");
    String::from_utf8(out).unwrap_or_default()
}

/// The `tools` a response echoes when one is an MCP tool: each MCP tool without its
/// `authorization` and `headers`, the caller's credentials for that server, which
/// OpenAI neither stores nor returns (the response is stored, and read back by
/// whoever holds its id). `None` when no tool is one: they are echoed as sent.
fn echoed_tools(tools: Json<'_>) -> Option<String> {
    let is_mcp = |t: &Json<'_>| {
        let [kind] = t.members(["type"]);
        kind.and_then(Json::as_str).as_deref() == Some("mcp")
    };
    if !tools.elements()?.iter().any(is_mcp) {
        return None;
    }
    let mut tools: serde_json::Value = serde_json::from_str(tools.text()).ok()?;
    for tool in tools.as_array_mut()? {
        if let Some(tool) = tool.as_object_mut() {
            if tool.get("type").and_then(serde_json::Value::as_str) == Some("mcp") {
                tool.remove("authorization");
                tool.remove("headers");
            }
        }
    }
    serde_json::to_string(&tools).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

/// The `messages` array being written: blocks gather into the current message
/// until the role changes.
struct Conversation {
    out: Vec<u8>,
    /// [`ResponsesRequestOptions::summaries_as_thinking`].
    summaries_as_thinking: bool,
    /// [`ResponsesRequestOptions::anthropic_target`].
    anthropic_target: bool,
    role: Option<Role>,
    /// The current user message's tool results, which Anthropic wants first.
    results: Vec<u8>,
    /// The current message's other blocks.
    blocks: Vec<u8>,
    /// Tool results follow the last assistant message, whose first block was (or
    /// was not) thinking: with thinking on, Anthropic wants such a turn to open with it.
    answers_tool_calls: bool,
    last_assistant_thinks_first: bool,
}

impl Conversation {
    fn with_capacity(n: usize) -> Self {
        let mut out = Vec::with_capacity(n + 64);
        out.push(b'[');
        Self {
            out,
            summaries_as_thinking: false,
            anthropic_target: false,
            role: None,
            results: Vec::new(),
            blocks: Vec::new(),
            answers_tool_calls: false,
            last_assistant_thinks_first: false,
        }
    }

    /// Whether the conversation answers tool calls of a turn that did not open with
    /// its thinking (a client without the gateway's reasoning state): Anthropic
    /// refuses such a request with thinking on.
    fn answers_calls_without_thinking(&self) -> bool {
        self.answers_tool_calls && !self.last_assistant_thinks_first
    }

    /// Adds a block written by `write` to a message of `role`.
    fn block(&mut self, role: Role, tool_result: bool, write: impl FnOnce(&mut Vec<u8>)) {
        if self.role != Some(role) {
            self.flush();
            self.role = Some(role);
        }
        let buf = if tool_result {
            &mut self.results
        } else {
            &mut self.blocks
        };
        let first = buf.is_empty();
        if !first {
            buf.push(b',');
        }
        write(buf);
        match role {
            Role::Assistant if first => {
                // Thinking blocks are written signature first, redacted ones data first.
                self.last_assistant_thinks_first =
                    buf.starts_with(br#"{"signature""#) || buf.starts_with(br#"{"data""#);
                self.answers_tool_calls = false;
            }
            Role::User if tool_result => self.answers_tool_calls = true,
            _ => {}
        }
    }

    fn flush(&mut self) {
        let Some(role) = self.role.take() else {
            return;
        };
        if self.results.is_empty() && self.blocks.is_empty() {
            return;
        }
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(br#"{"content":["#);
        self.out.extend_from_slice(&self.results);
        if !self.results.is_empty() && !self.blocks.is_empty() {
            self.out.push(b',');
        }
        self.out.extend_from_slice(&self.blocks);
        self.out.extend_from_slice(match role {
            Role::User => br#"],"role":"user"}"#.as_slice(),
            Role::Assistant => br#"],"role":"assistant"}"#.as_slice(),
        });
        self.results.clear();
        self.blocks.clear();
    }

    fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.out.push(b']');
        self.out
    }
}

fn write_text_block(out: &mut Vec<u8>, text: &Text<'_>) {
    out.extend_from_slice(br#"{"text":"#);
    text.write(out);
    out.extend_from_slice(br#","type":"text"}"#);
}

fn convert_item<'a>(
    item: Json<'a>,
    path: &str,
    conv: &mut Conversation,
    system: &mut Vec<Cow<'a, str>>,
) -> Result<(), TranslateError> {
    let it = Item::read(item);
    let kind = it.kind.and_then(Json::as_str);
    // An item without a type is a message (`{"role": …, "content": …}`).
    match kind.as_deref().unwrap_or("message") {
        "message" => convert_message(&it, path, conv, system),
        "function_call" => {
            let call_id = required_str(it.call_id, path, "call_id")?;
            let name = required_str(it.name, path, "name")?;
            let name = match field(it.namespace).and_then(Json::as_str) {
                Some(ns) => Cow::Owned(super::tool_names::flat_name(&ns, &name)),
                None => name,
            };
            let arguments = required_str(it.arguments, path, "arguments")?;
            // Arguments that encode no object (a call the output limit cut short) go
            // as `{}`, as the Chat translation sends them: OpenAI takes such a history,
            // and refusing it would end the agent's session.
            let input = parse_text(&arguments).ok().filter(|v| v.is_object());
            conv.block(Role::Assistant, false, |out| {
                write_tool_use(out, &call_id, &name, |out| match input {
                    Some(v) => write_compact(out, v.text()),
                    None => out.extend_from_slice(b"{}"),
                })
            });
            Ok(())
        }
        // A call of a tool OpenAI's models have and this one is not offered, kept
        // from a conversation begun on one of them (Codex's freeform `apply_patch`, its
        // `local_shell`): the turn as it was, for this model to read.
        "custom_tool_call" | "local_shell_call" => {
            let call_id = required_str(it.call_id, path, "call_id")?;
            let (name, input) = if kind.as_deref() == Some("custom_tool_call") {
                let name = required_str(it.name, path, "name")?;
                let mut input = br#"{"input":"#.to_vec();
                write_str(&mut input, &required_str(it.input, path, "input")?);
                input.push(b'}');
                (name, input)
            } else {
                let action = field(it.action).filter(|a| a.is_object()).ok_or_else(|| {
                    TranslateError::invalid_field(format!("{path}.action"), "must be an object")
                })?;
                let mut input = Vec::new();
                write_compact(&mut input, action.text());
                (Cow::Borrowed("local_shell"), input)
            };
            conv.block(Role::Assistant, false, |out| {
                write_tool_use(out, &call_id, &name, |out| out.extend_from_slice(&input))
            });
            Ok(())
        }
        // OpenAI ran the search itself: nothing for this model to answer.
        "web_search_call" => Ok(()),
        "function_call_output" | "custom_tool_call_output" => {
            let call_id = required_str(it.call_id, path, "call_id")?;
            let mut content = Vec::new();
            match field(it.output) {
                None => content.extend_from_slice(br#""""#),
                Some(output) => {
                    if let Some(text) = output.as_text() {
                        text.write(&mut content);
                    } else if let Some(parts) = output.elements() {
                        content.push(b'[');
                        let mut written = 0;
                        for (j, part) in parts.into_iter().enumerate() {
                            let part = Part::read(part);
                            if is_blank_text(&part) {
                                continue;
                            }
                            if written > 0 {
                                content.push(b',');
                            }
                            written += 1;
                            write_part(&mut content, part, &format!("{path}.output[{j}]"))?;
                        }
                        if written == 0 {
                            content.clear();
                            content.extend_from_slice(br#""""#);
                        } else {
                            content.push(b']');
                        }
                    } else {
                        return Err(TranslateError::invalid_field(
                            format!("{path}.output"),
                            "must be a string or an array of input parts",
                        ));
                    }
                }
            }
            conv.block(Role::User, true, |out| {
                out.extend_from_slice(br#"{"content":"#);
                out.extend_from_slice(&content);
                out.extend_from_slice(br#","tool_use_id":"#);
                write_str(out, &anthropic_tool_use_id(&call_id));
                out.extend_from_slice(br#","type":"tool_result"}"#);
            });
            Ok(())
        }
        "reasoning" => {
            let state = field(it.encrypted_content)
                .and_then(Json::as_str)
                .and_then(|c| ReasoningState::decode(&c));
            match state {
                // Unsigned thinking (a chat server's reasoning) is refused by Anthropic,
                // and so is thinking Gemini signed (a turn Gemini took, in a
                // conversation gone on to Claude).
                Some(ReasoningState::Thinking { signature, .. })
                    if signature.is_empty() && !conv.summaries_as_thinking => {}
                Some(ReasoningState::Thinking { signature, .. })
                    if conv.anthropic_target
                        && crate::translate::thought_signature::geminis_own(&signature)
                            .is_some() => {}
                Some(ReasoningState::Thinking {
                    thinking,
                    signature,
                }) => conv.block(Role::Assistant, false, |out| {
                    out.extend_from_slice(br#"{"signature":"#);
                    write_str(out, &signature);
                    out.extend_from_slice(br#","thinking":"#);
                    write_str(out, &thinking);
                    out.extend_from_slice(br#","type":"thinking"}"#);
                }),
                Some(ReasoningState::Redacted { redacted }) => {
                    conv.block(Role::Assistant, false, |out| {
                        out.extend_from_slice(br#"{"data":"#);
                        write_str(out, &redacted);
                        out.extend_from_slice(br#","type":"redacted_thinking"}"#);
                    })
                }
                None if conv.summaries_as_thinking => {
                    let texts: Vec<Text<'_>> = field(it.summary)
                        .and_then(Json::elements)
                        .into_iter()
                        .flatten()
                        .filter_map(|part| Part::read(part).text.and_then(Json::as_text))
                        .collect();
                    if !texts.is_empty() {
                        conv.block(Role::Assistant, false, |out| {
                            out.extend_from_slice(br#"{"signature":"","thinking":""#);
                            for (k, text) in texts.iter().enumerate() {
                                if k > 0 {
                                    out.extend_from_slice(b"\\n\\n");
                                }
                                text.write_fragment(out);
                            }
                            out.extend_from_slice(br#"","type":"thinking"}"#);
                        });
                    }
                }
                // Another provider's reasoning: nothing this one can continue from.
                None => {}
            }
            Ok(())
        }
        other => Err(TranslateError::unsupported(
            path,
            format!("input items of type `{other}` cannot be sent to this model; send messages, function calls and their outputs"),
        )),
    }
}

/// Writes a `tool_use` block of call `id` to `name`, its input written by `input`.
fn write_tool_use(out: &mut Vec<u8>, id: &str, name: &str, input: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(br#"{"id":"#);
    write_str(out, &anthropic_tool_use_id(id));
    out.extend_from_slice(br#","input":"#);
    input(out);
    out.extend_from_slice(br#","name":"#);
    write_str(out, name);
    out.extend_from_slice(br#","type":"tool_use"}"#);
}

fn required_str<'a>(
    v: Option<Json<'a>>,
    path: &str,
    key: &str,
) -> Result<Cow<'a, str>, TranslateError> {
    field(v)
        .and_then(Json::as_str)
        .ok_or_else(|| TranslateError::invalid_field(format!("{path}.{key}"), "must be a string"))
}

fn convert_message<'a>(
    it: &Item<'a>,
    path: &str,
    conv: &mut Conversation,
    system: &mut Vec<Cow<'a, str>>,
) -> Result<(), TranslateError> {
    let role = it.role.and_then(Json::as_str);
    let role = match role.as_deref() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system" | "developer") => {
            let content = field(it.content).ok_or_else(|| {
                TranslateError::invalid_field(format!("{path}.content"), "is required")
            })?;
            if let Some(text) = content.as_str() {
                system.push(text);
                return Ok(());
            }
            let parts = content.elements().ok_or_else(|| {
                TranslateError::invalid_field(
                    format!("{path}.content"),
                    "must be a string or an array of input_text parts",
                )
            })?;
            for (j, part) in parts.into_iter().enumerate() {
                let p = Part::read(part);
                match (
                    p.kind.and_then(Json::as_str).as_deref(),
                    p.text.and_then(Json::as_str),
                ) {
                    (Some("input_text" | "text"), Some(text)) => system.push(text),
                    _ => {
                        return Err(TranslateError::invalid_field(
                            format!("{path}.content[{j}]"),
                            "system and developer messages hold input_text parts only",
                        ))
                    }
                }
            }
            return Ok(());
        }
        _ => {
            return Err(TranslateError::invalid_field(
                format!("{path}.role"),
                "must be user, assistant, system or developer",
            ))
        }
    };
    let Some(content) = field(it.content) else {
        return Err(TranslateError::invalid_field(
            format!("{path}.content"),
            "is required",
        ));
    };
    if let Some(text) = content.as_text() {
        // Anthropic refuses text blocks empty or of whitespace alone.
        if !text.is_blank() {
            conv.block(role, false, |out| write_text_block(out, &text));
        }
        return Ok(());
    }
    let Some(parts) = content.elements() else {
        return Err(TranslateError::invalid_field(
            format!("{path}.content"),
            "must be a string or an array of content parts",
        ));
    };
    for (j, part) in parts.into_iter().enumerate() {
        let part_path = format!("{path}.content[{j}]");
        let p = Part::read(part);
        if is_blank_text(&p) {
            continue;
        }
        let mut block = Vec::new();
        write_part(&mut block, p, &part_path)?;
        conv.block(role, false, |out| out.extend_from_slice(&block));
    }
    Ok(())
}

/// Whether `p` is a text part empty or of whitespace alone, which Anthropic refuses
/// ("text content blocks must contain non-whitespace text"): a model that said only
/// line breaks before its tool calls left one in the conversation an agent sends back.
fn is_blank_text(p: &Part<'_>) -> bool {
    matches!(
        p.kind.and_then(Json::as_str).as_deref(),
        Some("input_text" | "output_text" | "text")
    ) && p.text.and_then(Json::as_text).is_some_and(|t| t.is_blank())
}

/// Writes one content part (`input_text`, `output_text`, `refusal`,
/// `input_image`, `input_file`) as an Anthropic content block.
fn write_part(out: &mut Vec<u8>, p: Part<'_>, path: &str) -> Result<(), TranslateError> {
    let kind = p.kind.and_then(Json::as_str);
    match kind.as_deref() {
        Some("input_text" | "output_text" | "text") => {
            let text = p.text.and_then(Json::as_text).ok_or_else(|| {
                TranslateError::invalid_field(format!("{path}.text"), "must be a string")
            })?;
            write_text_block(out, &text);
            Ok(())
        }
        Some("refusal") => {
            let text = p.refusal.and_then(Json::as_text).unwrap_or("".into());
            write_text_block(out, &text);
            Ok(())
        }
        Some("input_image") => {
            if field(p.file_id).is_some() {
                return Err(file_id_refused(path));
            }
            let url = field(p.image_url).and_then(Json::as_str).ok_or_else(|| {
                TranslateError::invalid_field(format!("{path}.image_url"), "must be a string")
            })?;
            out.extend_from_slice(br#"{"source":"#);
            write_source(out, &url, path, "image_url", Source::Image)?;
            out.extend_from_slice(br#","type":"image"}"#);
            Ok(())
        }
        Some("input_file") => {
            if field(p.file_id).is_some() {
                return Err(file_id_refused(path));
            }
            out.extend_from_slice(br#"{"source":"#);
            if let Some(data) = field(p.file_data).and_then(Json::as_str) {
                write_source(out, &data, path, "file_data", Source::Document)?;
            } else if let Some(url) = field(p.file_url).and_then(Json::as_str) {
                write_source(out, &url, path, "file_url", Source::Document)?;
            } else {
                return Err(TranslateError::invalid_field(
                    path,
                    "an input_file needs `file_data` or `file_url`",
                ));
            }
            if let Some(name) = field(p.filename).and_then(Json::as_str) {
                out.extend_from_slice(br#","title":"#);
                write_str(out, &name);
            }
            out.extend_from_slice(br#","type":"document"}"#);
            Ok(())
        }
        other => Err(TranslateError::unsupported(
            path,
            format!(
                "content parts of type `{}` cannot be sent to this model",
                other.unwrap_or("(none)")
            ),
        )),
    }
}

fn file_id_refused(path: &str) -> TranslateError {
    TranslateError::unsupported(
        format!("{path}.file_id"),
        "files uploaded to OpenAI cannot be read by this model; send the data inline",
    )
}

/// What a `source` is written for: an image's media type is checked against its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Image,
    Document,
}

/// An Anthropic `source` for a data URL (base64) or any other URL.
fn write_source(
    out: &mut Vec<u8>,
    url: &str,
    path: &str,
    key: &str,
    source: Source,
) -> Result<(), TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest.split_once(";base64,").ok_or_else(|| {
            TranslateError::invalid_field(
                format!("{path}.{key}"),
                "a data URL must be base64 (`data:<type>;base64,<data>`)",
            )
        })?;
        let media_type = match source {
            Source::Image => anthropic_image_media_type(media_type, data),
            Source::Document => media_type,
        };
        out.extend_from_slice(br#"{"data":"#);
        write_str(out, data);
        out.extend_from_slice(br#","media_type":"#);
        write_str(out, media_type);
        out.extend_from_slice(br#","type":"base64"}"#);
    } else {
        out.extend_from_slice(br#"{"type":"url","url":"#);
        write_str(out, url);
        out.push(b'}');
    }
    Ok(())
}

/// The translated `tools` array (`None` when there are none to send).
fn convert_tools(
    tools: Option<Json<'_>>,
    names: &mut ToolNames,
    omitted: &mut Vec<String>,
) -> Result<Option<Vec<u8>>, TranslateError> {
    let Some(tools) = field(tools) else {
        return Ok(None);
    };
    let tools = tools
        .elements()
        .ok_or_else(|| TranslateError::invalid_field("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(tools.iter().map(|t| t.text().len()).sum::<usize>() + 2);
    out.push(b'[');
    for (i, tool) in tools.into_iter().enumerate() {
        let t = Tool::read(tool);
        let kind = t.kind.and_then(Json::as_str);
        match kind.as_deref() {
            Some("function") => write_function(&mut out, &t, None, names, &format!("tools[{i}]"))?,
            Some("namespace") => {
                let ns = t.name.and_then(Json::as_str).ok_or_else(|| {
                    TranslateError::invalid_field(format!("tools[{i}].name"), "must be a string")
                })?;
                let inner = field(t.tools).and_then(Json::elements).ok_or_else(|| {
                    TranslateError::invalid_field(format!("tools[{i}].tools"), "must be an array")
                })?;
                for (k, tool) in inner.into_iter().enumerate() {
                    let inner_path = format!("tools[{i}].tools[{k}]");
                    let t = Tool::read(tool);
                    if t.kind.and_then(Json::as_str).as_deref() != Some("function") {
                        return Err(TranslateError::unsupported(
                            inner_path,
                            "only function tools can be sent to this model inside a namespace",
                        ));
                    }
                    write_function(&mut out, &t, Some(&ns), names, &inner_path)?;
                }
            }
            Some(hosted) if HOSTED_TOOLS.contains(&hosted) => {
                if !omitted.iter().any(|o| o == hosted) {
                    omitted.push(hosted.to_string());
                }
            }
            other => {
                return Err(TranslateError::unsupported(
                    format!("tools[{i}]"),
                    format!(
                        "tools of type `{}` cannot be used with this model",
                        other.unwrap_or("(none)")
                    ),
                ))
            }
        }
    }
    out.push(b']');
    Ok(Some(out))
}

fn write_function(
    out: &mut Vec<u8>,
    t: &Tool<'_>,
    namespace: Option<&str>,
    names: &mut ToolNames,
    path: &str,
) -> Result<(), TranslateError> {
    let name = t
        .name
        .and_then(Json::as_str)
        .ok_or_else(|| TranslateError::invalid_field(format!("{path}.name"), "must be a string"))?;
    let name = match namespace {
        Some(ns) => Cow::Owned(names.flatten(ns, &name)),
        None => name,
    };
    if out.len() > 1 {
        out.push(b',');
    }
    out.push(b'{');
    if let Some(d) = field(t.description) {
        out.extend_from_slice(br#""description":"#);
        write_compact(out, d.text());
        out.push(b',');
    }
    out.extend_from_slice(br#""input_schema":"#);
    match field(t.parameters) {
        Some(schema) => write_compact(out, schema.text()),
        None => out.extend_from_slice(EMPTY_SCHEMA),
    }
    out.extend_from_slice(br#","name":"#);
    write_str(out, &name);
    out.push(b'}');
    Ok(())
}

/// A translated `tool_choice`.
struct Choice {
    json: Vec<u8>,
    /// The model must call a tool.
    forced: bool,
}

fn tool_choice(
    choice: Option<Json<'_>>,
    parallel: Option<Json<'_>>,
) -> Result<Option<Choice>, TranslateError> {
    let no_parallel = field(parallel).and_then(Json::as_bool) == Some(false);
    // Anthropic's `none` has no members beyond its type (any other is refused).
    let mut allows_parallel_flag = true;
    let (mut json, forced) = match field(choice) {
        None => (br#"{"type":"auto""#.to_vec(), false),
        Some(c) => {
            if let Some(mode) = c.as_str() {
                match mode.as_ref() {
                    "auto" => (br#"{"type":"auto""#.to_vec(), false),
                    "required" => (br#"{"type":"any""#.to_vec(), true),
                    "none" => {
                        allows_parallel_flag = false;
                        (br#"{"type":"none""#.to_vec(), false)
                    }
                    _ => {
                        return Err(TranslateError::invalid_field(
                            "tool_choice",
                            "must be auto, required, none or a tool",
                        ))
                    }
                }
            } else {
                let [kind, name, namespace, mode] =
                    c.members(["type", "name", "namespace", "mode"]);
                match kind.and_then(Json::as_str).as_deref() {
                    Some("function") => {
                        let name = name.and_then(Json::as_str).ok_or_else(|| {
                            TranslateError::invalid_field("tool_choice.name", "must be a string")
                        })?;
                        let name = match field(namespace).and_then(Json::as_str) {
                            Some(ns) => super::tool_names::flat_name(&ns, &name),
                            None => name.into_owned(),
                        };
                        let mut json = br#"{"name":"#.to_vec();
                        write_str(&mut json, &name);
                        json.extend_from_slice(br#","type":"tool""#);
                        (json, true)
                    }
                    Some("allowed_tools") => match mode.and_then(Json::as_str).as_deref() {
                        Some("required") => (br#"{"type":"any""#.to_vec(), true),
                        _ => (br#"{"type":"auto""#.to_vec(), false),
                    },
                    Some(hosted) if HOSTED_TOOLS.contains(&hosted) => {
                        return Err(TranslateError::unsupported(
                            "tool_choice",
                            format!("`{hosted}` is a tool OpenAI runs and this model cannot; it cannot be forced here"),
                        ))
                    }
                    _ => {
                        return Err(TranslateError::invalid_field(
                            "tool_choice.type",
                            "must be function or allowed_tools",
                        ))
                    }
                }
            }
        }
    };
    if no_parallel && allows_parallel_flag {
        json.extend_from_slice(br#","disable_parallel_tool_use":true"#);
    }
    json.push(b'}');
    Ok(Some(Choice { json, forced }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::request_fields::checked;
    use serde_json::{json, Value};

    fn opts() -> ResponsesRequestOptions {
        ResponsesRequestOptions {
            model: "claude-sonnet-4-5".into(),
            default_max_tokens: Some(4096),
            summaries_as_thinking: false,
            anthropic_target: true,
        }
    }

    fn translate_with(req: Value, history: Option<Value>) -> (Value, ResponsesRequest) {
        let history = history.map(|h| h.to_string());
        let r = responses_to_anthropic_request(
            checked(&req),
            history.as_deref().map(str::as_bytes),
            &opts(),
        )
        .unwrap();
        (serde_json::from_slice(&r.body).unwrap(), r)
    }

    fn translate(req: Value) -> Value {
        translate_with(req, None).0
    }

    /// The hub request a chat server's translation starts from.
    fn for_chat_server(req: Value) -> Result<Value, TranslateError> {
        let opts = ResponsesRequestOptions {
            anthropic_target: false,
            ..opts()
        };
        let r = responses_to_anthropic_request(checked(&req), None, &opts)?;
        Ok(serde_json::from_slice(&r.body).unwrap())
    }

    #[test]
    fn a_chat_server_gets_the_effort_on_a_turn_answering_tool_calls() {
        let body = json!({"reasoning": {"effort": "high"}, "input": [
            user_text("list"),
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "a"}
        ]});
        let got = for_chat_server(body.clone()).unwrap();
        assert_eq!(got["thinking"]["budget_tokens"], BUDGET_HIGH, "{got}");
        // Anthropic would refuse thinking there: the turn goes without.
        assert!(translate(body).get("thinking").is_none());
    }

    #[test]
    fn a_chat_server_is_not_held_to_anthropics_sampling_rules() {
        let body = json!({"input": "x", "reasoning": {"effort": "medium"},
            "max_output_tokens": 500, "temperature": 1.5, "top_p": 0.9,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": "required"});
        let got = for_chat_server(body.clone()).unwrap();
        assert_eq!(
            (
                &got["max_tokens"],
                &got["temperature"],
                &got["top_p"],
                &got["thinking"]["budget_tokens"],
                &got["tool_choice"]["type"]
            ),
            (
                &json!(500),
                &json!(1.5),
                &json!(0.9),
                &json!(BUDGET_MEDIUM),
                &json!("any")
            ),
            "{got}"
        );
        let e = responses_to_anthropic_request(checked(&body), None, &opts()).unwrap_err();
        assert_eq!(e.param(), Some("reasoning.effort"));
    }

    #[test]
    fn texts_are_copied_with_their_escapes_as_written() {
        // Written by hand: serde would write `é` and `/` plainly.
        let text = r#"line \"one\"\n\u00e9\/ \\ end"#;
        let body = format!(
            r#"{{"model":"m","input":[
            {{"type":"message","role":"user","content":"m: {text}"}},
            {{"type":"message","role":"user","content":[{{"type":"input_text","text":"p: {text}"}}]}},
            {{"type":"function_call","call_id":"c1","name":"read","arguments":"{{}}"}},
            {{"type":"function_call_output","call_id":"c1","output":"o: {text}"}}]}}"#
        );
        let out = CheckedBody::check(body.as_bytes())
            .and_then(|b| responses_to_anthropic_request(b, None, &opts()))
            .unwrap()
            .body;
        let out = String::from_utf8(out).unwrap();
        for prefix in ["m", "p", "o"] {
            assert!(
                out.contains(&format!("{prefix}: {text}")),
                "{prefix}: {out}"
            );
        }
        let plain = "line \"one\"\né/ \\ end";
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["messages"][0]["content"][0]["text"],
            format!("m: {plain}")
        );
        assert_eq!(
            v["messages"][0]["content"][1]["text"],
            format!("p: {plain}")
        );
        assert_eq!(
            v["messages"][2]["content"][0]["content"],
            format!("o: {plain}")
        );
    }

    fn translate_err(req: Value) -> TranslateError {
        CheckedBody::check(req.to_string().as_bytes())
            .and_then(|body| responses_to_anthropic_request(body, None, &opts()))
            .unwrap_err()
    }

    fn user_text(text: &str) -> Value {
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    }

    #[test]
    fn string_input_and_instructions_make_a_minimal_request() {
        let (got, r) = translate_with(
            json!({"model": "x", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 50}),
            None,
        );
        assert_eq!(
            got,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "system": "Be brief.",
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
        );
        assert!(!r.stream);
        assert!(r.store, "store defaults to true");
        let items: Value = serde_json::from_slice(&r.input_items).unwrap();
        assert_eq!(items, json!([user_text("Hi")]));
    }

    #[test]
    fn without_a_limit_or_a_default_the_request_names_no_max_tokens() {
        let body = json!({"input": "write a long file"});
        let req = responses_to_anthropic_request(
            checked(&body),
            None,
            &ResponsesRequestOptions {
                model: "llama".into(),
                default_max_tokens: None,
                summaries_as_thinking: false,
                anthropic_target: false,
            },
        )
        .unwrap();
        let got: Value = serde_json::from_slice(&req.body).unwrap();
        assert!(got.get("max_tokens").is_none(), "{got}");
        assert_eq!(got["messages"][0]["role"], "user");
        let body = json!({"input": "x", "max_output_tokens": 10, "reasoning": {"effort": "high"}});
        let got = translate(body);
        assert_eq!(got["max_tokens"], 16384 + 4096);
    }

    #[test]
    fn thinking_gemini_signed_goes_back_to_a_chat_server_but_never_to_anthropic() {
        let state = ReasoningState::Thinking {
            thinking: "t".into(),
            signature: crate::translate::thought_signature::tagged("CiQBsig"),
        }
        .encode();
        let input = json!([
            user_text("list"),
            {"type": "reasoning", "summary": [], "encrypted_content": state},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "a"}
        ]);
        // Claude would refuse the block as an invalid signature.
        let got = translate(json!({"input": input}));
        assert_eq!(
            got["messages"][1]["content"],
            json!([{"type": "tool_use", "id": "c", "name": "f", "input": {}}])
        );
        // Gemini, behind the hub, gets its own back.
        let hub = for_chat_server(json!({"input": input})).unwrap();
        assert_eq!(
            hub["messages"][1]["content"][0]["type"], "thinking",
            "{hub}"
        );
    }

    #[test]
    fn a_thinking_tool_loop_without_its_reasoning_state_goes_without_thinking() {
        let loop_input = json!([
            user_text("list"),
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "a"}
        ]);
        let got = translate(json!({"input": loop_input, "reasoning": {"effort": "low"}}));
        assert!(got.get("thinking").is_none(), "{got}");
        // With its thinking given back, the turn thinks.
        let state = ReasoningState::Thinking {
            thinking: "t".into(),
            signature: "sig".into(),
        }
        .encode();
        let mut with_state = loop_input.as_array().unwrap().clone();
        with_state.insert(
            1,
            json!({"type": "reasoning", "summary": [], "encrypted_content": state}),
        );
        let got = translate(json!({"input": with_state, "reasoning": {"effort": "low"}}));
        assert_eq!(got["thinking"]["type"], "enabled", "{got}");
        // A new question after the loop thinks too.
        let mut next = loop_input.as_array().unwrap().clone();
        next.push(json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]}));
        next.push(user_text("more"));
        let got = translate(json!({"input": next, "reasoning": {"effort": "low"}}));
        assert_eq!(got["thinking"]["type"], "enabled", "{got}");
    }

    #[test]
    fn unsigned_thinking_goes_back_only_to_a_chat_server_that_takes_it() {
        let state = ReasoningState::Thinking {
            thinking: "Run ls.".into(),
            signature: String::new(),
        }
        .encode();
        let body = json!({"input": [
            user_text("list"),
            {"type": "reasoning", "summary": [], "encrypted_content": state},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "a"}
        ]});
        let got = translate(body.clone());
        assert_eq!(
            got["messages"][1]["content"][0]["type"], "tool_use",
            "{got}"
        );
        let req = responses_to_anthropic_request(
            checked(&body),
            None,
            &ResponsesRequestOptions {
                summaries_as_thinking: true,
                anthropic_target: false,
                ..opts()
            },
        )
        .unwrap();
        let got: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            got["messages"][1]["content"][0],
            json!({"type": "thinking", "thinking": "Run ls.", "signature": ""})
        );
    }

    #[test]
    fn codex_history_from_an_openai_model_becomes_tool_turns() {
        let got = translate(json!({"input": [
            user_text("fix it"),
            {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch",
                "input": "*** Begin Patch\n*** End Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
                "action": {"type": "search", "query": "rust"}},
            {"type": "local_shell_call", "call_id": "call_s", "status": "completed",
                "action": {"type": "exec", "command": ["ls"]}},
            {"type": "function_call_output", "call_id": "call_s", "output": "a.txt"},
            user_text("thanks")
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "fix it"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_p",
                    "name": "apply_patch", "input": {"input": "*** Begin Patch\n*** End Patch"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_p",
                    "content": "Done!"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_s",
                    "name": "local_shell", "input": {"type": "exec", "command": ["ls"]}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_s", "content": "a.txt"},
                    {"type": "text", "text": "thanks"}]}
            ])
        );
    }

    #[test]
    fn developer_and_system_messages_become_system_text_in_order() {
        let got = translate(json!({"input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"role": "system", "content": "Second."},
            user_text("say hi")
        ], "instructions": "First."}));
        assert_eq!(got["system"], "First.\n\nYou are Codex.\n\nSecond.");
        assert_eq!(got["max_tokens"], 4096);
        assert_eq!(
            got["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "say hi"}]}])
        );
    }

    #[test]
    fn a_tool_loop_groups_items_into_alternating_turns() {
        let state = ReasoningState::Thinking {
            thinking: "I should list files.".into(),
            signature: "sig-1".into(),
        }
        .encode();
        let got = translate(json!({"input": [
            user_text("list files"),
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": state},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\": \"ls\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": ""},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "spawned"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
            user_text("thanks")
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "list files"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I should list files.", "signature": "sig-1"},
                    {"type": "tool_use", "id": "call_1", "name": "exec_command", "input": {"cmd": "ls"}},
                    {"type": "tool_use", "id": "call_2", "name": "multi_agent_v1__spawn_agent", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "a.txt"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "spawned"}]}
                ]},
                {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
                {"role": "user", "content": [{"type": "text", "text": "thanks"}]}
            ])
        );
    }

    #[test]
    fn blank_text_a_model_left_in_the_conversation_is_not_sent_back() {
        // A chat server's model that said only line breaks before its tool call.
        let got = translate(json!({"input": [
            user_text("go"),
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "\n\n"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c",
             "output": [{"type": "input_text", "text": " \n"}]},
            {"type": "message", "role": "assistant", "content": "\t"},
            user_text("and?")
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "go"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "c", "name": "f", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c", "content": ""},
                    {"type": "text", "text": "and?"}
                ]}
            ])
        );
    }

    #[test]
    fn a_function_call_whose_arguments_encode_no_object_goes_with_an_empty_input() {
        for arguments in ["{\"path\": \"/tm", "\"raw\"", "[1,2]", ""] {
            let got = translate(json!({"input": [
                user_text("go"),
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": arguments},
                {"type": "function_call_output", "call_id": "c", "output": "ok"}
            ]}));
            assert_eq!(
                got["messages"][1]["content"][0]["input"],
                json!({}),
                "{arguments}"
            );
        }
    }

    #[test]
    fn another_providers_tool_call_ids_become_ones_anthropic_takes() {
        let got = translate(json!({"input": [
            user_text("go"),
            {"type": "function_call", "call_id": "functions.shell:0", "name": "f",
             "arguments": "{}"},
            {"type": "function_call_output", "call_id": "functions.shell:0", "output": "ok"}
        ]}));
        let id = got["messages"][1]["content"][0]["id"].as_str().unwrap();
        assert!(id.starts_with("functions_shell_0_"), "{id}");
        assert_eq!(got["messages"][2]["content"][0]["tool_use_id"], id);
    }

    #[test]
    fn tool_results_come_first_in_their_user_turn() {
        let got = translate(json!({"input": [
            user_text("go"),
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            user_text("also this"),
            {"type": "function_call_output", "call_id": "c", "output": "ok"}
        ]}));
        assert_eq!(
            got["messages"][2]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "c", "content": "ok"},
                {"type": "text", "text": "also this"}
            ])
        );
    }

    #[test]
    fn foreign_reasoning_is_dropped_and_redacted_state_returns() {
        let redacted = ReasoningState::Redacted {
            redacted: "opaque".into(),
        }
        .encode();
        let got = translate(json!({"input": [
            user_text("x"),
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAAB-openai"},
            {"type": "reasoning", "summary": [], "encrypted_content": redacted},
            {"type": "message", "role": "assistant", "content": "ok"}
        ]}));
        assert_eq!(
            got["messages"][1]["content"],
            json!([{"type": "redacted_thinking", "data": "opaque"}, {"type": "text", "text": "ok"}])
        );
    }

    #[test]
    fn images_and_files_become_blocks() {
        let got = translate(json!({"input": [{"role": "user", "content": [
            {"type": "input_text", "text": "Look"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"},
            {"type": "input_image", "image_url": "https://example.com/a.png"},
            {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}
        ]}]}));
        assert_eq!(
            got["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "title": "a.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
            ])
        );
        let e = translate_err(json!({"input": [{"role": "user", "content": [
            {"type": "input_image", "file_id": "file-1"}]}]}));
        assert_eq!(e.param(), Some("input[0].content[0].file_id"));
    }

    #[test]
    fn an_image_is_sent_with_the_media_type_anthropic_takes_for_its_bytes() {
        let jpeg = "/9j/4AAQSkZJRgABAQA=";
        let got = translate(json!({"input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": format!("data:image/jpg;base64,{jpeg}")},
            {"type": "input_image", "image_url": format!("data:image/png;base64,{jpeg}")},
            {"type": "input_image", "image_url": "data:image/jpg;base64,AAAA"},
            // A document keeps the type it was given.
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE"}
        ]}]}));
        let media_types: Vec<&Value> = (0..4)
            .map(|k| &got["messages"][0]["content"][k]["source"]["media_type"])
            .collect();
        assert_eq!(
            media_types,
            [
                &json!("image/jpeg"),
                &json!("image/jpeg"),
                &json!("image/jpeg"),
                &json!("application/pdf")
            ],
            "{got}"
        );
    }

    #[test]
    fn codex_tools_are_flattened_and_hosted_ones_left_out() {
        let (got, r) = translate_with(
            json!({"input": "hi", "tool_choice": "auto", "parallel_tool_calls": true, "tools": [
                {"type": "function", "name": "exec_command", "description": "Runs", "strict": false,
                 "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
                {"type": "namespace", "name": "multi_agent_v1", "description": "Agents", "tools": [
                    {"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {}}},
                    {"type": "function", "name": "close_agent"}
                ]},
                {"type": "web_search", "external_web_access": false}
            ]}),
            None,
        );
        assert_eq!(
            got["tools"],
            json!([
                {"name": "exec_command", "description": "Runs",
                 "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
                {"name": "multi_agent_v1__spawn_agent", "input_schema": {"type": "object", "properties": {}}},
                {"name": "multi_agent_v1__close_agent", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
        assert_eq!(got["tool_choice"], json!({"type": "auto"}));
        assert_eq!(r.omitted_tools, ["web_search"]);
        assert_eq!(
            r.tool_names.split("multi_agent_v1__close_agent"),
            (Some("multi_agent_v1"), "close_agent")
        );
    }

    #[test]
    fn tool_choice_none_never_carries_disable_parallel_tool_use() {
        let tools = json!([{"type": "function", "name": "f"}]);
        let got = translate(json!({
            "input": "x", "tools": tools, "tool_choice": "none", "parallel_tool_calls": false
        }));
        assert_eq!(got["tool_choice"], json!({"type": "none"}));
    }

    #[test]
    fn tool_choice_maps_and_forcing_a_hosted_tool_is_refused() {
        let tools = json!([{"type": "function", "name": "f"}, {"type": "web_search"}]);
        for (choice, expected) in [
            (json!("auto"), json!({"type": "auto"})),
            (json!("required"), json!({"type": "any"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "name": "f"}),
                json!({"type": "tool", "name": "f"}),
            ),
        ] {
            let got = translate(json!({"input": "x", "tools": tools, "tool_choice": choice}));
            assert_eq!(got["tool_choice"], expected);
        }
        let got = translate(json!({"input": "x", "tools": tools, "parallel_tool_calls": false}));
        assert_eq!(
            got["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let e = translate_err(
            json!({"input": "x", "tools": tools, "tool_choice": {"type": "web_search"}}),
        );
        assert_eq!(e.param(), Some("tool_choice"));
        assert!(e.to_string().contains("web_search"));
        // Only hosted tools: none is sent.
        let got = translate(json!({"input": "x", "tools": [{"type": "web_search"}]}));
        assert!(got.get("tools").is_none());
        assert!(got.get("tool_choice").is_none());
    }

    #[test]
    fn reasoning_effort_becomes_a_thinking_budget() {
        for (effort, budget) in [
            ("low", 1024),
            ("medium", 4096),
            ("high", 16384),
            ("xhigh", 16384),
        ] {
            let got = translate(
                json!({"input": "x", "reasoning": {"effort": effort, "summary": "auto"},
                "temperature": 0.2, "top_p": 0.5, "max_output_tokens": 1000}),
            );
            assert_eq!(
                got["thinking"],
                json!({"type": "enabled", "budget_tokens": budget}),
                "{effort}"
            );
            assert!(got["max_tokens"].as_u64().unwrap() > budget);
            assert!(got.get("temperature").is_none());
            assert!(got.get("top_p").is_none());
        }
        let got =
            translate(json!({"input": "x", "reasoning": {"effort": "none"}, "temperature": 1.5}));
        assert!(got.get("thinking").is_none());
        assert_eq!(got["temperature"], 1.0);
        let e = translate_err(json!({"input": "x", "reasoning": {"effort": "max"}}));
        assert_eq!(e.param(), Some("reasoning.effort"));
    }

    #[test]
    fn hints_without_a_counterpart_are_not_sent() {
        let (got, r) = translate_with(
            json!({"input": "x", "store": false, "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": "k", "client_metadata": {"a": "b"}, "reasoning": {"summary": "auto"},
                "metadata": {"m": "1"}, "service_tier": "auto", "truncation": "auto", "stream": true,
                "safety_identifier": "user-1"}),
            None,
        );
        let keys: Vec<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["max_tokens", "messages", "metadata", "model", "stream"]
        );
        assert_eq!(got["metadata"], json!({"user_id": "user-1"}));
        assert!(!r.store);
        assert!(r.stream);
        assert!(r.include_encrypted_reasoning);
        let echo: Value = serde_json::from_str(&format!("{{{}}}", r.echo)).unwrap();
        assert_eq!(echo["store"], false);
        assert_eq!(echo["tool_choice"], "auto");
        assert_eq!(echo["metadata"], json!({"m": "1"}));
        assert_eq!(echo["truncation"], "auto");
    }

    #[test]
    fn an_mcp_tools_credentials_are_not_echoed_in_the_response() {
        let mcp = json!({"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com",
            "authorization": "mcp-secret-token", "headers": {"Authorization": "Bearer mcp-secret-token"},
            "require_approval": "never"});
        let function = json!({"type": "function", "name": "f", "parameters": {"type": "object"}});
        let (_, r) = translate_with(json!({"input": "hi", "tools": [function, mcp]}), None);
        assert!(!r.echo.contains("mcp-secret-token"), "{}", r.echo);
        let echo: Value = serde_json::from_str(&format!("{{{}}}", r.echo)).unwrap();
        assert_eq!(
            echo["tools"],
            json!([function, {"type": "mcp", "server_label": "docs",
                "server_url": "https://mcp.example.com", "require_approval": "never"}])
        );
        // Without one, the tools are echoed as they came.
        let (_, r) = translate_with(json!({"input": "hi", "tools": [function]}), None);
        let echo: Value = serde_json::from_str(&format!("{{{}}}", r.echo)).unwrap();
        assert_eq!(echo["tools"], json!([function]));
    }

    #[test]
    fn history_items_come_before_the_new_input() {
        let history = json!([user_text("first"), {"type": "message", "role": "assistant", "id": "msg_1",
            "status": "completed", "content": [{"type": "output_text", "text": "one", "annotations": []}]}]);
        let (got, r) = translate_with(
            json!({"input": "second", "previous_response_id": "resp_1"}),
            Some(history),
        );
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "first"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "one"}]},
                {"role": "user", "content": [{"type": "text", "text": "second"}]}
            ])
        );
        // Only the request's own input is stored as its input.
        let items: Value = serde_json::from_slice(&r.input_items).unwrap();
        assert_eq!(items, json!([user_text("second")]));
    }

    /// What Codex sends for `--output-schema`.
    fn codex_output_schema() -> (Value, Value) {
        let schema = json!({"type": "object", "properties": {"verdict": {"type": "string"}},
            "required": ["verdict"], "additionalProperties": false});
        let body = json!({"input": "x", "text": {"verbosity": "low", "format": {
            "type": "json_schema", "name": "codex_output_schema", "description": "the verdict",
            "strict": true, "schema": schema}}});
        (body, schema)
    }

    #[test]
    fn a_json_schema_text_format_becomes_anthropics_output_config_format() {
        let (body, schema) = codex_output_schema();
        // Anthropic takes the schema and nothing else beside it.
        assert_eq!(
            translate(body)["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema}})
        );
        let got = translate(json!({"input": "x", "text": {"format": {"type": "text"}}}));
        assert!(got.get("output_config").is_none(), "{got}");
    }

    #[test]
    fn a_chat_server_gets_the_schemas_name_and_strictness_and_json_object_mode() {
        let (body, schema) = codex_output_schema();
        assert_eq!(
            for_chat_server(body).unwrap()["output_config"],
            json!({"format": {"type": "json_schema", "name": "codex_output_schema",
                "description": "the verdict", "strict": true, "schema": schema}})
        );
        let body = json!({"input": "x", "text": {"format": {"type": "json_object"}}});
        assert_eq!(
            for_chat_server(body.clone()).unwrap()["output_config"],
            json!({"format": {"type": "json_object"}})
        );
        // Anthropic has no JSON object mode.
        let e = translate_err(body);
        assert!(matches!(e, TranslateError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn a_text_format_without_a_schema_is_refused_by_name() {
        for target in [true, false] {
            let opts = ResponsesRequestOptions {
                anthropic_target: target,
                ..opts()
            };
            for (format, param) in [
                (
                    json!({"type": "json_schema", "name": "x"}),
                    "text.format.schema",
                ),
                (
                    json!({"type": "json_schema", "name": "x", "schema": "object"}),
                    "text.format.schema",
                ),
                (json!({"type": "xml"}), "text.format.type"),
            ] {
                let req = json!({"input": "x", "text": {"format": format}});
                let e = responses_to_anthropic_request(checked(&req), None, &opts).unwrap_err();
                assert_eq!(e.param(), Some(param), "{req}");
            }
        }
    }

    #[test]
    fn what_needs_openais_servers_is_refused() {
        for (req, param) in [
            (json!({"input": "x", "background": true}), "background"),
            (
                json!({"input": "x", "conversation": "conv_1"}),
                "conversation",
            ),
            (json!({"input": "x", "prompt": {"id": "pmpt_1"}}), "prompt"),
            (
                json!({"input": "x", "text": {"format": {"type": "json_object"}}}),
                "text.format",
            ),
            (
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0]",
            ),
            (
                json!({"input": [{"role": "robot", "content": "x"}]}),
                "input[0].role",
            ),
            (json!({"model": "x"}), "input"),
        ] {
            assert_eq!(translate_err(req.clone()).param(), Some(param), "{req}");
        }
        let got = translate(
            json!({"input": "x", "background": false, "text": {"format": {"type": "text"}, "verbosity": "low"}}),
        );
        assert!(got.get("background").is_none());
    }
}
