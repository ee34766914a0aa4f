//! Token usage (and the model that answered) read from a provider's answer as it
//! flows: OpenAI Chat Completions,
//! the Responses API and Anthropic Messages, as JSON or as an SSE stream, on every
//! route (passthrough included). The meter only reads: the answer reaches the client
//! byte for byte as the provider sent it. A JSON answer without usage yields `None`.
//! A stream whose final usage never came (the client left before it, the stream broke
//! off, or the provider does not report one) is charged an estimate instead, from the
//! text it carried and the request's ([`super::usage_estimate`]); what it did report
//! (an Anthropic stream's input, in `message_start`) is kept.
//!
//! The kinds, the same whatever the format:
//! - `input`: input tokens not read from a cache (OpenAI's `prompt_tokens` and the
//!   Responses API's `input_tokens` count cached ones too; they are taken out);
//! - `cache_read`, `cache_write`: input tokens read from and written to a prompt
//!   cache (only Anthropic reports writes);
//! - `output`: all output tokens, reasoning included (as providers bill them);
//! - `reasoning`: the part of `output` spent reasoning, where reported.

use memchr::memmem;
use once_cell::sync::Lazy;

use super::batch_results::BatchResults;
use super::deferred_answer::{unquoted, ApartKind, DeferredAnswer, StartedApart};
use super::gemini_batch::GeminiBatch;
use super::gemini_batch_stream::GeminiBatchStream;
use super::usage_estimate::{
    answer_text_tokens, array_call_tokens, input_tokens, input_tokens_of_size,
    unreported_answer_tokens, StreamedText,
};
use super::usage_object::{
    read_count, read_model, read_nested, read_usage, Details, Nested, RawUsage,
};
use super::web_searches::{
    asks_gemini_search, gemini_queries, gives_web_search_options, output_searches,
    searches_every_call, starts_a_search,
};
use crate::translate::json_members::{member_value, skip_ws, ArrayElements, Member, ObjectMembers};
use crate::translate::sse::SseByteParser;

/// Token counts of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens not read from a cache.
    pub input: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Input tokens read from a prompt cache.
    pub cache_read: u64,
    /// Input tokens written to a prompt cache.
    pub cache_write: u64,
    /// Output tokens spent reasoning.
    pub reasoning: u64,
    /// Web searches the model ran, billed per search apart from the tokens
    /// ([`super::web_searches`]).
    pub web_searches: u64,
    /// What the provider says the answer cost, in billionths of a US dollar (xAI's
    /// `cost_in_usd_ticks`, OpenRouter's and Perplexity's `cost`): its tools, tiers
    /// and fees included; 0 when it said none.
    pub cost_nanos: u64,
}

/// The most tokens of a kind an answer is taken to report: far more than any model
/// reads or writes (or a batch of them), and far from the largest count a store keeps,
/// so that no answer (or file read as one) can make a counter overflow.
pub const MAX_TOKENS_AN_ANSWER: u64 = 1_000_000_000_000;

/// The most an answer is taken to say it cost, in billionths of a US dollar: a
/// million dollars.
pub const MAX_COST_NANOS: u64 = 1_000_000_000_000_000;

impl Usage {
    /// What is left to charge of these counts once `charged` was (none below zero):
    /// output less the output charged; the input kinds less all the input charged,
    /// taken from `input`, then `cache_read`, then `cache_write` (an estimate counts
    /// every input token as `input`, where the provider's count splits them).
    pub fn less(self, charged: &Usage) -> Usage {
        let mut owed = charged
            .input
            .saturating_add(charged.cache_read)
            .saturating_add(charged.cache_write);
        let mut take = |count: u64| {
            let taken = count.min(owed);
            owed -= taken;
            count - taken
        };
        Usage {
            input: take(self.input),
            cache_read: take(self.cache_read),
            cache_write: take(self.cache_write),
            output: self.output.saturating_sub(charged.output),
            reasoning: self.reasoning.saturating_sub(charged.reasoning),
            web_searches: self.web_searches.saturating_sub(charged.web_searches),
            cost_nanos: self.cost_nanos.saturating_sub(charged.cost_nanos),
        }
    }

    /// These counts, each at most [`MAX_TOKENS_AN_ANSWER`].
    pub fn capped(self) -> Usage {
        let cap = |n: u64| n.min(MAX_TOKENS_AN_ANSWER);
        Usage {
            input: cap(self.input),
            output: cap(self.output),
            cache_read: cap(self.cache_read),
            cache_write: cap(self.cache_write),
            reasoning: cap(self.reasoning),
            web_searches: cap(self.web_searches),
            cost_nanos: self.cost_nanos.min(MAX_COST_NANOS),
        }
    }

    /// Adds `other` to these counts, stopping at the largest count.
    pub fn add(&mut self, other: &Usage) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
        self.web_searches = self.web_searches.saturating_add(other.web_searches);
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
    }

    /// What these counts cost in US dollars: at `price` (its tokens times `factor`,
    /// a batch's discount, which tool fees do not get) or as the provider reported it,
    /// whichever is more (the provider's count has the fees a price per token leaves
    /// out; a price set higher than the provider's is the operator's to keep); `None`
    /// when neither is known.
    pub fn cost(&self, price: Option<&Price>, factor: f64) -> Option<f64> {
        let priced = price.map(|p| p.tokens_cost(self) * factor + p.searches_cost(self));
        let reported = (self.cost_nanos > 0).then(|| self.cost_nanos as f64 / 1e9);
        match (priced, reported) {
            (Some(priced), Some(reported)) => Some(priced.max(reported)),
            (priced, reported) => priced.or(reported),
        }
    }

    /// Each kind with its metric label.
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("input", self.input),
            ("output", self.output),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
            ("reasoning", self.reasoning),
        ]
    }
}

/// What a model's tokens cost, in US dollars per million (`models.prices`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Input tokens not read from a cache.
    pub input: f64,
    /// Output tokens, reasoning included.
    pub output: f64,
    /// Cache reads; the input price when not set.
    pub cache_read: Option<f64>,
    /// Cache writes; the input price when not set.
    pub cache_write: Option<f64>,
    /// Web searches, per 1,000 (as providers list them); searches count nothing when
    /// not set.
    pub web_search: Option<f64>,
}

impl Price {
    /// The cost of `usage`, in US dollars.
    pub fn cost(&self, usage: &Usage) -> f64 {
        self.tokens_cost(usage) + self.searches_cost(usage)
    }

    /// The cost of `usage`'s tokens, in US dollars.
    fn tokens_cost(&self, usage: &Usage) -> f64 {
        let per_token = |n: u64, price: f64| n as f64 * price / 1_000_000.0;
        per_token(usage.input, self.input)
            + per_token(usage.output, self.output)
            + per_token(usage.cache_read, self.cache_read.unwrap_or(self.input))
            + per_token(usage.cache_write, self.cache_write.unwrap_or(self.input))
    }

    /// The cost of `usage`'s web searches, in US dollars.
    fn searches_cost(&self, usage: &Usage) -> f64 {
        usage.web_searches as f64 * self.web_search.unwrap_or(0.0) / 1_000.0
    }

    /// Whether `usage` holds web searches this price leaves out, and no cost the
    /// provider reported counts them.
    pub fn leaves_out_searches(&self, usage: &Usage) -> bool {
        usage.web_searches > 0 && self.web_search.is_none() && usage.cost_nanos == 0
    }
}

impl RawUsage {
    /// `later`'s members over these: streams report usage in parts (Anthropic's
    /// `message_start`, then the running output count in each `message_delta`).
    fn merge(&mut self, later: RawUsage) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            input_tokens,
            output_tokens,
            cache_read_input_tokens,
            cache_creation_input_tokens,
            prompt_tokens,
            completion_tokens,
            prompt_tokens_details,
            completion_tokens_details,
            input_tokens_details,
            output_tokens_details,
            prompt_token_count,
            candidates_token_count,
            cached_content_token_count,
            thoughts_token_count,
            tool_use_prompt_token_count,
            prompt_eval_count,
            eval_count,
            web_searches,
            search_items,
            cost_in_usd_ticks,
            cost_usd,
            upstream_cost_usd
        );
        self.byok |= later.byok;
    }

    /// Whether this is a Gemini count of thinking without the candidates' tokens.
    fn counts_thoughts_alone(&self) -> bool {
        self.prompt_token_count.is_some()
            && self.candidates_token_count.is_none()
            && self.thoughts_token_count.is_some_and(|t| t > 0)
    }

    /// Whether the input tokens are reported.
    fn reports_input(&self) -> bool {
        self.input_tokens.is_some()
            || self.prompt_tokens.is_some()
            || self.prompt_token_count.is_some()
            || self.prompt_eval_count.is_some()
    }

    /// The usage reported, in one shape whatever the format, each count capped
    /// ([`Usage::capped`]).
    pub(super) fn normalize(&self) -> Usage {
        // xAI counts ten billion ticks to the dollar. OpenRouter's `cost` on the
        // operator's own provider key is its fee alone: the provider's bill is added.
        let upstream = self.upstream_cost_usd.filter(|_| self.byok).unwrap_or(0.0);
        let cost_nanos = match (self.cost_in_usd_ticks, self.cost_usd) {
            (Some(ticks), _) => ticks / 10,
            (None, Some(usd)) => ((usd + upstream) * 1e9).round().min(MAX_COST_NANOS as f64) as u64,
            (None, None) => 0,
        };
        Usage {
            web_searches: self
                .web_searches
                .unwrap_or(0)
                .max(self.search_items.unwrap_or(0)),
            cost_nanos,
            ..self.uncapped()
        }
        .capped()
    }

    fn uncapped(&self) -> Usage {
        let detail = |d: Option<Details>, f: fn(Details) -> Option<u64>| d.and_then(f).unwrap_or(0);
        if self.prompt_tokens.is_some() || self.completion_tokens.is_some() {
            let cached = self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0);
            let prompt = self.prompt_tokens.unwrap_or(0);
            // xAI leaves the reasoning out of `completion_tokens` (and bills it as
            // output); the total holds it, as OpenAI's holds nothing past the two.
            let beyond_prompt = self.total_tokens.map_or(0, |t| t.saturating_sub(prompt));
            return Usage {
                input: prompt.saturating_sub(cached),
                output: self.completion_tokens.unwrap_or(0).max(beyond_prompt),
                cache_read: cached,
                cache_write: 0,
                reasoning: detail(self.completion_tokens_details, |d| d.reasoning_tokens),
                web_searches: 0,
                cost_nanos: 0,
            };
        }
        if self.prompt_token_count.is_some() || self.candidates_token_count.is_some() {
            // Gemini: the prompt count includes the cached part; thinking is billed as
            // output, apart from the candidates.
            let cached = self.cached_content_token_count.unwrap_or(0);
            let thoughts = self.thoughts_token_count.unwrap_or(0);
            return Usage {
                input: (self.prompt_token_count.unwrap_or(0).saturating_sub(cached))
                    .saturating_add(self.tool_use_prompt_token_count.unwrap_or(0)),
                output: self
                    .candidates_token_count
                    .unwrap_or(0)
                    .saturating_add(thoughts),
                cache_read: cached,
                cache_write: 0,
                reasoning: thoughts,
                web_searches: 0,
                cost_nanos: 0,
            };
        }
        if self.prompt_eval_count.is_some() || self.eval_count.is_some() {
            return Usage {
                input: self.prompt_eval_count.unwrap_or(0),
                output: self.eval_count.unwrap_or(0),
                ..Usage::default()
            };
        }
        if self.input_tokens_details.is_some() || self.output_tokens_details.is_some() {
            let cached = detail(self.input_tokens_details, |d| d.cached_tokens);
            return Usage {
                input: self.input_tokens.unwrap_or(0).saturating_sub(cached),
                output: self.output_tokens.unwrap_or(0),
                cache_read: cached,
                cache_write: 0,
                reasoning: detail(self.output_tokens_details, |d| d.reasoning_tokens),
                web_searches: 0,
                cost_nanos: 0,
            };
        }
        if let (None, None, Some(total)) =
            (self.input_tokens, self.output_tokens, self.total_tokens)
        {
            // A total alone (vLLM's and Jina's rerank, some embedding servers): the
            // work read, and nothing written.
            return Usage {
                input: total,
                ..Usage::default()
            };
        }
        Usage {
            input: self.input_tokens.unwrap_or(0),
            output: self.output_tokens.unwrap_or(0),
            cache_read: self.cache_read_input_tokens.unwrap_or(0),
            cache_write: self.cache_creation_input_tokens.unwrap_or(0),
            reasoning: 0,
            web_searches: 0,
            cost_nanos: 0,
        }
    }
}

/// Where usage and the model sit in an answer or an event: at the top (Chat
/// Completions answers and chunks, a whole Messages or Responses answer, Anthropic's
/// `message_delta`), under `message` (Anthropic's `message_start`) or under `response`
/// (the Responses API's lifecycle events).
#[derive(Default)]
struct Carrier<'a> {
    usage: Option<RawUsage>,
    /// The top-level `usage` member was read, `null` or not: a Chat stream's chunks
    /// say `"usage": null` until the last one when the client asked for usage
    /// (`stream_options.include_usage`), and nothing more is to be found in them.
    usage_read: bool,
    model: Option<String>,
    /// The model is known already (named by an earlier event): not looked for.
    model_known: bool,
    /// The top-level `id`, as the JSON text of its value.
    id: Option<&'a [u8]>,
    /// The answer says `"background": true` at the top.
    background: bool,
    /// The answer is an OpenAI batch (`"object": "batch"`).
    batch: bool,
    /// The answer is an Anthropic message batch (`"type": "message_batch"`).
    message_batch: bool,
    /// Its `status` was read: whether it says the work has ended.
    ended: Option<bool>,
    /// A batch's `output_file_id`, as the JSON text of its value.
    output_file: Option<&'a [u8]>,
    /// Under `message` or `response`; the first of them kept, member by member.
    nested: Nested<'a>,
    /// The nested usage is a Responses stream's last word (under `response`), not
    /// Anthropic's count at a stream's start (under `message`).
    nested_final: bool,
    /// The usage is Gemini's `usageMetadata`, which every chunk of a stream carries:
    /// a running count until the chunk that says why the answer finished.
    metadata: bool,
    /// The answer is a Responses API response (`"object": "response"`).
    response: bool,
    /// Its top-level `object` was read.
    object_read: bool,
    /// Its `id` and `object` are wanted, wherever they lie: the answer is to be known
    /// by the response id it names ([`UsageMeter::keeps_response_id`]).
    wants_id: bool,
    /// Its top-level `output`, as the JSON text of its value: a response's items.
    output: Option<&'a [u8]>,
    /// The web searches its `output` (a Responses answer's) or its candidates (a
    /// Gemini answer's) list.
    searches: Option<u64>,
}

impl<'a> Carrier<'a> {
    /// What a whole JSON answer carries, read into `self`. Its members are taken from
    /// the back until its usage is found, then from the front until its model is:
    /// answers put them there, so the content between them is not read. `None` when
    /// the answer is not an object or a member read is not what its key says it is.
    fn read(&mut self, answer: &'a [u8]) -> Option<()> {
        let mut members = ObjectMembers::of(answer)?;
        while !self.usage_read {
            let Some(member) = members.next_back() else {
                break;
            };
            self.take(member)?;
        }
        // A batch's status and output file follow its model: whether it has ended
        // decides its charge, and its output file is what it is known by. A
        // response's output follows it too: its web searches are billed.
        while (!self.model_known && self.model.is_none())
            || (self.batch && (self.ended.is_none() || self.output_file.is_none()))
            || (self.response && self.output.is_none())
            || self.id_unread()
        {
            let Some(member) = members.next_front() else {
                break;
            };
            self.take(member)?;
        }
        if self.response {
            self.searches = self.output.map(output_searches);
        } else if self.metadata {
            self.searches = gemini_queries(answer);
        }
        Some(())
    }

    /// What an answer too large to hold carries, read from its first bytes (`head`)
    /// and its last (`tail`): the usage from the back of the tail, else from the
    /// front of the head; the model from the front of the head, else from the tail
    /// (an embeddings list names its model after its vectors). Members that reach a
    /// cut are not read.
    fn read_ends(&mut self, head: &'a [u8], tail: &'a [u8]) -> Option<()> {
        let mut back = ObjectMembers::of_tail(tail)?;
        while !self.usage_read {
            let Some(member) = back.next_back() else {
                break;
            };
            self.take(member)?;
        }
        if let Some(mut front) = ObjectMembers::of_head(head) {
            while !self.usage_read
                || (!self.model_known && self.model.is_none())
                || self.id_unread()
            {
                let Some(member) = front.next_front() else {
                    break;
                };
                self.take(member)?;
            }
        }
        while !self.model_known && self.model.is_none() {
            let Some(member) = back.next_back() else {
                break;
            };
            self.take(member)?;
        }
        Some(())
    }

    /// Whether the answer's `id` and `object` are wanted and not both read yet.
    fn id_unread(&self) -> bool {
        self.wants_id && (self.id.is_none() || !self.object_read)
    }

    /// Keeps `member` when it is one of the carrier's, unless one was kept already.
    fn take(&mut self, member: Member<'a>) -> Option<()> {
        match &*member.key() {
            // Gemini's is `usageMetadata`.
            b"usage" | b"usageMetadata" if !self.usage_read => {
                self.usage_read = true;
                self.metadata = member.key().len() > b"usage".len();
                read_usage(member.value, &mut self.usage)
            }
            // Ollama's own API counts at the top of its answer.
            b"prompt_eval_count" | b"eval_count" if !self.usage_read => {
                let count = read_count(member.value)?;
                let usage = self.usage.get_or_insert_with(RawUsage::default);
                if &*member.key() == b"eval_count" {
                    usage.eval_count = count;
                } else {
                    usage.prompt_eval_count = count;
                }
                self.usage_read = usage.eval_count.is_some() && usage.prompt_eval_count.is_some();
                Some(())
            }
            // Gemini names the model that answered `modelVersion`.
            b"model" | b"modelVersion" if !self.model_known && self.model.is_none() => {
                self.model = read_model(member.value)?;
                Some(())
            }
            b"id" => {
                self.id = Some(member.value);
                Some(())
            }
            b"background" => {
                self.background = member.value == b"true";
                Some(())
            }
            b"object" => {
                self.object_read = true;
                self.batch = member.value == br#""batch""#;
                self.response = member.value == br#""response""#;
                Some(())
            }
            // Counted once the answer is known to be a response, whichever came first.
            b"output" if self.output.is_none() => {
                self.output = Some(member.value);
                Some(())
            }
            b"type" => {
                self.message_batch = member.value == br#""message_batch""#;
                Some(())
            }
            // An Anthropic message batch's.
            b"processing_status" => {
                self.ended = Some(member.value == br#""ended""#);
                Some(())
            }
            b"output_file_id" => {
                self.output_file = Some(member.value);
                Some(())
            }
            b"status" => {
                // A batch's ends, and a response's (`incomplete` too).
                self.ended = Some(matches!(
                    member.value,
                    br#""completed""#
                        | br#""failed""#
                        | br#""expired""#
                        | br#""cancelled""#
                        | br#""incomplete""#
                ));
                Some(())
            }
            b"message" => read_nested(member.value, &mut self.nested),
            b"response" => {
                self.nested_final = true;
                read_nested(member.value, &mut self.nested)
            }
            _ => Some(()),
        }
    }

    /// Adds the usage this answer or event carries to what was `read`, and keeps the
    /// model it names when none was named yet.
    fn keep(self, read: &mut Read, docs: &[&[u8]]) {
        // At the top (a Chat stream's last chunk, Anthropic's `message_delta`) or a
        // Responses stream's `response.completed`, usage is the stream's final count;
        // Gemini's, only in the chunk that finished the answer.
        let running = self.metadata && !docs.iter().any(|d| gemini_finished(d));
        let last_word = (self.usage.is_some() && !running) || self.nested_final;
        // Changed where it lies: the raw counts are large to move.
        let mut usage = self.usage.or(self.nested.usage);
        if let Some(u) = usage.as_mut() {
            // Counted beside the usage, not in it.
            if let Some(searches) = self.searches.or(self.nested.searches) {
                u.search_items = Some(searches);
            }
            if !last_word {
                // Anthropic's count at a stream's start (zero) is not its last.
                u.web_searches = None;
            }
        }
        // A batch that says it used nothing says nothing: its output file tells.
        if self.batch
            && usage
                .as_ref()
                .is_some_and(|u| u.normalize() == Usage::default())
        {
            usage = None;
        }
        let deferred = match (
            self.background,
            self.id,
            self.nested.background,
            self.nested.id,
        ) {
            (true, Some(id), ..) | (_, _, true, Some(id)) => {
                if read.started.is_none() {
                    read.started = StartedApart::of(id, ApartKind::Response);
                }
                // Usage said while queued (zeros, from some servers) is not its count.
                read.under_way |= self.background && self.ended == Some(false);
                Some(DeferredAnswer::background_response(id))
            }
            _ if self.batch => {
                // A batch still at work reports what it used so far, charged once
                // it has ended.
                read.under_way |= self.ended != Some(true);
                let file = self.output_file.and_then(|raw| unquoted(raw.trim_ascii()));
                if let Some(file) = file {
                    read.output_file = Some(String::from_utf8_lossy(file).into_owned());
                }
                if let (None, Some(id)) = (&read.started, self.id) {
                    read.started = StartedApart::of(id, ApartKind::Batch);
                }
                self.id
                    .map(|id| DeferredAnswer::batch(id, self.output_file))
            }
            // Its object reports no usage: its results do.
            _ if self.message_batch => {
                if let (None, Some(id)) = (&read.started, self.id) {
                    read.started = StartedApart::of(id, ApartKind::MessageBatch);
                }
                None
            }
            _ => None,
        };
        if self.ended.is_some() {
            read.ended = self.ended;
        }
        read.deferred = read.deferred.or(deferred);
        if let Some(usage) = usage {
            match read.seen.as_mut() {
                Some(seen) => seen.merge(usage),
                None => read.seen = Some(usage),
            }
            read.final_usage |= last_word;
            read.running_last = running;
        }
        if read.keeps_response_id && self.response && read.response_id.is_none() {
            read.response_id = self.id.and_then(plain_text);
        }
        if read.model.is_none() {
            // The event that first names the model, a Responses stream's
            // `response.created`, names the response too: read here, once per stream.
            if self.nested_final && read.response_id.is_none() {
                read.response_id = self.nested.id.and_then(plain_text);
            }
            read.model = self.model.or(self.nested.model);
        }
    }
}

/// The text of a JSON string with nothing escaped in it (an id), as `raw` holds it.
fn plain_text(raw: &[u8]) -> Option<String> {
    let text = unquoted(raw.trim_ascii())?;
    std::str::from_utf8(text).ok().map(str::to_owned)
}

/// The most of a JSON answer held whole to read its usage; of a larger one only its
/// ends are kept ([`JsonEnds`]).
pub const MAX_METERED_JSON: usize = 8 * 1024 * 1024;

/// How much of the front of a JSON answer too large to hold is kept: its model is
/// named within the first few hundred bytes.
const KEPT_HEAD: usize = 64 * 1024;

/// How much of the back of a JSON answer too large to hold is kept: its usage, and
/// the members after it (a Responses answer's settings, its `tools` among them).
const KEPT_TAIL: usize = 1024 * 1024;

/// The first and last bytes of a JSON answer too large to hold: an embeddings list
/// of many vectors, a Chat answer with `logprobs`, or `n` of them. Its usage is
/// reported at its back, so it is charged whatever its length.
#[derive(Debug)]
struct JsonEnds {
    head: Vec<u8>,
    /// The last bytes seen, at least [`KEPT_TAIL`] of them once there are as many,
    /// at most twice as many: dropping the front of a buffer moves what stays, so it
    /// is done once per [`KEPT_TAIL`] bytes rather than per piece.
    tail: Vec<u8>,
    /// The size of the answer so far.
    len: usize,
}

impl JsonEnds {
    /// The ends of `held`, the answer so far.
    fn of(mut held: Vec<u8>) -> Self {
        let head = held[..held.len().min(KEPT_HEAD)].to_vec();
        let len = held.len();
        let keep_from = held.len().saturating_sub(KEPT_TAIL);
        held.drain(..keep_from);
        Self {
            head,
            tail: held,
            len,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len());
        // Short of its size, the head is all the answer so far.
        let room = KEPT_HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        if bytes.len() >= KEPT_TAIL {
            self.tail.clear();
            self.tail
                .extend_from_slice(&bytes[bytes.len() - KEPT_TAIL..]);
            return;
        }
        if self.tail.len() + bytes.len() > 2 * KEPT_TAIL {
            // What stays and `bytes` make [`KEPT_TAIL`].
            self.tail.drain(..self.tail.len() + bytes.len() - KEPT_TAIL);
        }
        self.tail.extend_from_slice(bytes);
    }
}

/// Reads the usage of one answer, and the model that answered, from its bytes as
/// they pass.
pub struct UsageMeter {
    body: Body,
    read: Read,
    /// The answer is a stream: without its final usage, it is estimated.
    stream: bool,
    /// The answer may be a model's ([`Self::may_answer_a_call`]): whole without a
    /// usage, it is estimated.
    call: bool,
}

/// What a call asked a model for, which decides what an estimate of its answer
/// counts ([`Charge::for_work`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelWork {
    /// Text (or tool calls) generated: billed its input and output.
    Generates,
    /// Embeddings: billed their input alone.
    Embeds,
}

/// What a meter charges an answer: the usage it reported; for a stream without its
/// final usage, that with the rest estimated. The input estimate, when due, is made
/// by whoever holds the request ([`Charge::with_input_of`]), once it is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The tokens charged.
    pub usage: Usage,
    /// Estimated, in part or whole.
    pub estimated: bool,
    /// The input is still to be estimated from the request.
    input_due: bool,
    /// The estimate of a whole answer cut short, which stands only when the client
    /// left (a document cut by anything else is of no use to it); without the
    /// request read, its input is estimated from the request's size.
    cut_whole: bool,
    /// The estimate of an answer that reported no usage the gateway could read
    /// ([`Self::unreported`]): charged only to a call that asked a model.
    unreported: bool,
    /// The usage is that of an answer generated apart from the request that read it
    /// (a background response, a batch): charged once, by whichever request reads it
    /// whole first.
    pub deferred: Option<DeferredAnswer>,
}

/// The most input tokens a request's size counts for ([`Charge::with_input_of`]): a
/// large context window's worth, so that a body of inline images is not counted as
/// millions.
const MAX_SIZED_INPUT: u64 = 128_000;

impl Charge {
    /// The estimate of a whole answer cut short, of `output` tokens and its input due.
    fn cut_whole(output: u64) -> Self {
        Self {
            usage: Usage {
                output,
                ..Usage::default()
            },
            estimated: true,
            input_due: true,
            cut_whole: true,
            unreported: false,
            deferred: None,
        }
    }

    /// The estimate of a model call's answer that passed without a usage the gateway
    /// could read (a provider that reports none, or zeros; an answer in a format the
    /// gateway does not read): of `output` tokens, its input due. The proxy charges it
    /// only to a call that asked a model ([`Self::for_work`]): a batch made, a file
    /// uploaded, reports no usage and bills none.
    pub fn unreported(output: u64) -> Self {
        Self {
            cut_whole: false,
            unreported: true,
            ..Self::cut_whole(output)
        }
    }

    /// Whether this is the estimate of an answer that reported no usage
    /// ([`Self::unreported`]).
    pub fn is_unreported(&self) -> bool {
        self.unreported
    }

    /// The charge for a call asking for `work`: an embedding call's answer is billed
    /// its input alone, whatever size its vectors make.
    pub fn for_work(mut self, work: ModelWork) -> Self {
        if work == ModelWork::Embeds && self.estimated {
            self.usage.output = 0;
        }
        self
    }

    /// A call its client left before any of the answer passed (before its header,
    /// or while the provider worked): the provider bills its input all the same, so
    /// the input is due, counted as for a whole answer cut short, and the charge
    /// stands only when the client left.
    pub fn left_unanswered() -> Self {
        Self::cut_whole(0)
    }

    /// Usage a provider reported, whole.
    pub fn reported(usage: Usage) -> Self {
        Self {
            usage,
            estimated: false,
            input_due: false,
            cut_whole: false,
            unreported: false,
            deferred: None,
        }
    }

    /// The charge of an answer cut short whose counts so far run behind its text:
    /// its output at least the `output` its text makes, estimated, and its input due
    /// when it was not reported.
    fn with_output_at_least(mut self, output: u64) -> Self {
        let behind = output > self.usage.output;
        self.usage.output = self.usage.output.max(output);
        self.input_due = self.usage.input + self.usage.cache_read + self.usage.cache_write == 0;
        self.estimated |= behind || self.input_due;
        self
    }

    /// The charge with one web search when it counted none but its call was billed
    /// one: a Chat Completions call that gave `web_search_options` or went to a
    /// search model (`model`, OpenAI's `*-search-preview`, `*-search-api`), which
    /// OpenAI bills per call and no answer counts; or the estimate of an answer cut
    /// short whose `request` (the body the provider got) gave Gemini Google Search,
    /// which lists its queries only with the answer's last chunk (a client could read
    /// a grounded answer and leave before it).
    pub fn with_searches_asked(mut self, request: Option<&[u8]>, model: Option<&str>) -> Self {
        if self.usage.web_searches > 0 {
            return self;
        }
        let per_call =
            model.is_some_and(searches_every_call) || request.is_some_and(gives_web_search_options);
        if per_call || (self.estimated && request.is_some_and(asks_gemini_search)) {
            self.usage.web_searches = 1;
        }
        self
    }

    /// Whether this is the estimate of a whole answer cut short, which stands only
    /// when the client left.
    pub fn is_cut_whole(&self) -> bool {
        self.cut_whole
    }

    /// The charge with its input estimated, when that is due (the answer did not
    /// report it), from `request` (the body the provider got) when the gateway read
    /// it. Otherwise the estimate of a whole answer cut short, or of one that reported
    /// no usage, counts `body_bytes`, the size of the request body the gateway passed
    /// unread (the proxy gives a JSON body's for the one, any body's for the other),
    /// four a token, at most [`MAX_SIZED_INPUT`]; a stream counts none: clients leave
    /// streams often, and a request's size says little of its tokens once it carries
    /// images.
    pub fn with_input_of(mut self, request: Option<&[u8]>, body_bytes: u64) -> Self {
        if std::mem::take(&mut self.input_due) {
            self.usage.input = match request {
                Some(body) => input_tokens(body),
                None if self.cut_whole || self.unreported => {
                    input_tokens_of_size(body_bytes).min(MAX_SIZED_INPUT)
                }
                None => 0,
            };
        }
        self
    }
}

/// What the answer said so far.
#[derive(Default)]
struct Read {
    seen: Option<RawUsage>,
    model: Option<String>,
    /// `seen` holds the stream's final count.
    final_usage: bool,
    /// The answer is one generated apart from the request that read it.
    deferred: Option<DeferredAnswer>,
    /// The answer is work still under way (a batch, a background response queued or
    /// in progress): nothing is charged for it yet, whatever usage it reports so far.
    under_way: bool,
    /// The work apart from the call the answer names (a background response, a
    /// batch), by its id.
    started: Option<StartedApart>,
    /// The answer's `status` was read: whether it says its work has ended.
    ended: Option<bool>,
    /// The response a Responses stream is of, as its `response.created` names it; or
    /// a whole Responses answer's, when asked for ([`UsageMeter::keeps_response_id`]).
    response_id: Option<String>,
    /// A whole answer's top-level `id` is kept when it is a `response` object.
    keeps_response_id: bool,
    /// The background response a read resumes the stream of, as its path names it:
    /// the stream itself may never name it.
    resumed: Option<DeferredAnswer>,
    /// A batch's results: their usage by the model each line named.
    by_model: Vec<(String, Usage)>,
    /// The usage of a Gemini batch's inlined responses, summed.
    summed: Option<Usage>,
    /// An OpenAI batch's output file, by its id.
    output_file: Option<String>,
    /// The last usage kept was a running count (a Gemini chunk that did not say
    /// why the answer finished), and no text came after it.
    running_last: bool,
    /// A stream's output text.
    text: StreamedText,
    /// The web searches a stream's events started: what is charged of them when its
    /// final usage never came.
    streamed_searches: u64,
    /// A whole answer that reported no usage: the output its estimate counts.
    unreported: Option<u64>,
    /// The bytes of a stream's events (or lines) that are not JSON objects (JSPB's
    /// arrays, protobuf): what the estimate of a stream reporting nothing counts.
    unread_data: u64,
}

impl Read {
    /// Whether a whole answer's response id is still to be read.
    fn wants_response_id(&self) -> bool {
        self.keeps_response_id && self.response_id.is_none()
    }
}

enum Body {
    Json(Vec<u8>),
    /// A JSON answer past [`MAX_METERED_JSON`].
    JsonEnds(Box<JsonEnds>),
    /// A Gemini batch's operation past [`MAX_METERED_JSON`], read as it passes.
    GeminiBatch(Box<GeminiBatchStream>),
    Sse(Box<SseByteParser>),
    /// A stream of JSON lines (Ollama's own API).
    Lines(Box<Lines>),
    /// An Anthropic message batch's results, a JSON line per request.
    BatchResults(Box<BatchResults>),
    /// Too large, or unreadable: nothing more to learn.
    Done,
}

impl UsageMeter {
    /// A meter for a successful answer of this `Content-Type`; `None` for what carries
    /// no usage (not JSON or SSE) or cannot be read as it passes (compressed).
    pub fn for_answer(content_type: Option<&str>, content_encoding: Option<&str>) -> Option<Self> {
        if content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            return None;
        }
        let ct = content_type?.trim_start();
        let body = if starts_with_ignoring_case(ct, "text/event-stream") {
            Body::Sse(Box::default())
        } else if starts_with_ignoring_case(ct, "application/json") {
            // Allocated only for an answer that comes in more than one piece.
            Body::Json(Vec::new())
        } else if starts_with_ignoring_case(ct, "application/x-ndjson") {
            Body::Lines(Box::default())
        } else {
            return None;
        };
        Some(Self {
            stream: matches!(body, Body::Sse(_) | Body::Lines(_)),
            call: false,
            body,
            read: Read::default(),
        })
    }

    /// The answer may be that of a call asking a model (the proxy decides, once it is
    /// over, whether it was): whole without a usage the meter can read, it is given
    /// the estimate of [`Charge::unreported`].
    pub fn may_answer_a_call(&mut self) {
        self.call = true;
    }

    /// This answer is the stream of the background response `resumed`, read again
    /// (`GET responses/{id}?stream=true`).
    pub fn resumes(&mut self, resumed: DeferredAnswer) {
        self.read.resumed = Some(resumed);
    }

    /// A meter for the `results` of an Anthropic message batch, a JSON line per
    /// request whatever their `Content-Type` says; `None` when they come compressed.
    pub fn for_batch_results(
        results: DeferredAnswer,
        content_encoding: Option<&str>,
    ) -> Option<Self> {
        if content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            return None;
        }
        Some(Self {
            body: Body::BatchResults(Box::default()),
            read: Read {
                deferred: Some(results),
                ..Read::default()
            },
            stream: false,
            call: false,
        })
    }

    /// The charge of a batch's results read so far: what their lines reported, the
    /// results read `whole` or in part.
    fn results_charged(&mut self, whole: bool) -> Option<Charge> {
        let Body::BatchResults(results) = &mut self.body else {
            return None;
        };
        if self.read.model.is_none() {
            self.read.model = results.take_model();
        }
        self.read.by_model = results.take_usage_by_model();
        let deferred = self
            .read
            .deferred
            .map(|d| if whole { d } else { d.in_part() });
        let by_model = &self.read.by_model;
        results.usage().map(|usage| Charge {
            deferred: deferred.map(|d| d.known_by(&usage, by_model)),
            ..Charge::reported(usage)
        })
    }

    /// Reads the next bytes of the answer.
    pub fn feed(&mut self, bytes: &[u8]) {
        match &mut self.body {
            Body::Json(buf) => {
                if buf.len() + bytes.len() <= MAX_METERED_JSON {
                    buf.extend_from_slice(bytes);
                } else if GeminiBatchStream::starts(&json_head(buf, bytes)) {
                    // Its inlined responses are what make it so large: read as they pass.
                    let mut stream = Box::<GeminiBatchStream>::default();
                    stream.feed(buf);
                    stream.feed(bytes);
                    self.body = Body::GeminiBatch(stream);
                } else {
                    let mut ends = JsonEnds::of(std::mem::take(buf));
                    ends.push(bytes);
                    self.body = Body::JsonEnds(Box::new(ends));
                }
            }
            Body::JsonEnds(ends) => ends.push(bytes),
            Body::GeminiBatch(stream) => stream.feed(bytes),
            Body::Sse(parser) => {
                parser.feed(bytes);
                drain(parser, &mut self.read);
            }
            Body::Lines(lines) => lines.feed(bytes, &mut self.read),
            Body::BatchResults(results) => results.feed(bytes),
            Body::Done => {}
        }
    }

    /// The model the answer says answered, taken out of the meter once read (at its
    /// end for JSON, from the first event naming it for a stream).
    pub fn take_model(&mut self) -> Option<String> {
        self.read.model.take()
    }

    /// The work apart from the call that the answer names (a background response,
    /// a batch, by the id it gave), taken out of the meter once read.
    pub fn take_started(&mut self) -> Option<StartedApart> {
        self.read.started.take()
    }

    /// Whether the answer's `status` says its work has ended (`None` when it said
    /// no status the meter read).
    pub fn work_ended(&self) -> Option<bool> {
        self.read.ended
    }

    /// The id of the response a Responses stream is of, once its first event (the
    /// first to name the model) named it.
    pub fn response_id(&self) -> Option<&str> {
        self.read.response_id.as_deref()
    }

    /// Keeps the id of a whole answer that is a Responses API `response` object (a
    /// stream's is kept anyway): asked for only where the gateway records whose the
    /// response is, so that no other answer pays for the copy.
    pub fn keeps_response_id(&mut self) {
        self.read.keeps_response_id = true;
    }

    /// The id of the response the answer is ([`Self::response_id`]), taken out of the
    /// meter once read.
    pub fn take_response_id(&mut self) -> Option<String> {
        self.read.response_id.take()
    }

    /// Whether the answer said its last word on usage: a Responses stream's terminal
    /// event (`response.completed`, `response.incomplete`), a Chat stream's last
    /// chunk, Anthropic's `message_delta`.
    pub fn said_its_last_word(&self) -> bool {
        self.read.final_usage
    }

    /// An OpenAI batch's output file, by its id, taken out of the meter once read.
    pub fn take_output_file(&mut self) -> Option<String> {
        self.read.output_file.take()
    }

    /// A batch's results: the usage read by the model each line named (a batch may
    /// mix models), taken out of the meter once read; empty for any other answer.
    pub fn take_usage_by_model(&mut self) -> Vec<(String, Usage)> {
        std::mem::take(&mut self.read.by_model)
    }

    /// The charge were the answer to end here: what it reported so far, or for a
    /// stream short of its final usage, the estimate; for a whole answer under way,
    /// the estimate of one cut short, its output not counted (it is counted once, by
    /// [`Self::cut_short`]).
    pub fn so_far(&self) -> Option<Charge> {
        if self.stream {
            return self.charged();
        }
        if let Body::BatchResults(results) = &self.body {
            return results.usage().map(|usage| Charge {
                deferred: self.read.deferred.map(DeferredAnswer::in_part),
                ..Charge::reported(usage)
            });
        }
        self.passed().then(|| Charge::cut_whole(0))
    }

    /// Whether the answer is a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Whether some of a whole answer passed: more than the white space some servers
    /// send while the model works.
    fn passed(&self) -> bool {
        match &self.body {
            Body::Json(buf) => skip_ws(buf, 0) < buf.len(),
            Body::JsonEnds(_) => true,
            _ => false,
        }
    }

    /// The answer ended, whole or not: its charge, when it reported usage (or, for a
    /// stream without its final usage, carried text).
    pub fn finish(&mut self) -> Option<Charge> {
        self.finish_with(&[])
    }

    /// The answer ended with `last`: its charge, as [`Self::finish`] gives it. A JSON
    /// answer that came whole in `last` is read where it lies, not copied.
    pub fn finish_with(&mut self, last: &[u8]) -> Option<Charge> {
        self.end_with(last, true)
    }

    /// The answer ended with `last`, `whole` or cut short: its charge.
    fn end_with(&mut self, last: &[u8], whole: bool) -> Option<Charge> {
        if let Body::Json(buf) = &self.body {
            // Read where it lies, whatever its length: nothing is held for it.
            if buf.is_empty() {
                self.body = Body::Done;
                read_carried(last, &mut self.read);
                if whole {
                    self.unreported_if_none(last, last.len());
                }
                return self.charged();
            }
        }
        self.feed(last);
        if let Body::BatchResults(results) = &mut self.body {
            results.finish();
            let charge = self.results_charged(true);
            self.body = Body::Done;
            return charge;
        }
        match std::mem::replace(&mut self.body, Body::Done) {
            Body::Json(buf) => {
                read_carried(&buf, &mut self.read);
                if whole {
                    self.unreported_if_none(&buf, buf.len());
                }
            }
            // Read whole, or not at all: a batch's usage is its responses'.
            Body::GeminiBatch(mut stream) if whole => {
                // One the scanner cannot read whole is still watched, by its name.
                let id = stream.id().map(<[u8]>::to_vec);
                match stream.finish() {
                    Some(batch) => keep_gemini_batch(batch, &mut self.read),
                    None => {
                        let named =
                            id.and_then(|id| StartedApart::named(&id, ApartKind::GeminiBatch));
                        self.read.started = self.read.started.take().or(named);
                        self.read.under_way = true;
                    }
                }
            }
            Body::GeminiBatch(_) => {}
            Body::JsonEnds(ends) => {
                let mut carrier = Carrier {
                    model_known: self.read.model.is_some(),
                    wants_id: self.read.wants_response_id(),
                    ..Carrier::default()
                };
                if carrier.read_ends(&ends.head, &ends.tail).is_some() {
                    carrier.keep(&mut self.read, &[&ends.head, &ends.tail]);
                }
                if whole {
                    self.unreported_if_none(&ends.head, ends.len);
                }
            }
            // A last event without its blank line still counts.
            Body::Sse(mut parser) => {
                parser.finish();
                drain(&mut parser, &mut self.read);
            }
            // A last line without its newline too.
            Body::Lines(mut lines) => lines.end(&mut self.read),
            Body::BatchResults(_) | Body::Done => {}
        }
        let text_besides = self
            .read
            .seen
            .as_ref()
            .is_some_and(RawUsage::counts_thoughts_alone)
            && !self.read.text.is_empty();
        if whole && self.read.running_last && !text_besides {
            // A stream that ended whole on a running count (no chunk said why it
            // finished): that count was its last, unless it counted no more than
            // thinking for a stream that carried text.
            self.read.final_usage = true;
        }
        self.charged()
    }

    /// A whole answer of `size` bytes, `doc` or its head, that reported no usage the
    /// meter could read, nor work started apart (whose usage comes later): when it
    /// may be a call's, the output its estimate counts.
    fn unreported_if_none(&mut self, doc: &[u8], size: usize) {
        let read = &self.read;
        let quiet = self.call && !read.under_way && read.started.is_none();
        if quiet && reported_none(read) && size > 0 && !says_no_work(doc) {
            self.read.unreported = Some(unreported_answer_tokens(doc, size as u64));
        }
    }

    /// [`Self::charged_tokens`], with the web searches the answer ran: as its final
    /// usage counts them, else at least as many as its events started (a stream left
    /// during a search, or before its last word, is charged the searches it passed).
    fn charged(&self) -> Option<Charge> {
        let streamed = self.read.streamed_searches;
        // Only Anthropic's final count may say fewer than started: failed searches
        // are not billed. An item a response's last word leaves out still ran.
        let counted = self.read.final_usage
            && self
                .read
                .seen
                .as_ref()
                .is_some_and(|u| u.web_searches.is_some());
        match self.charged_tokens() {
            Some(mut charge) if !counted => {
                if streamed > charge.usage.web_searches {
                    charge.usage.web_searches = streamed;
                    charge.estimated = true;
                }
                Some(charge)
            }
            None if streamed > 0 && !self.read.under_way => {
                let searched = Usage {
                    web_searches: streamed,
                    ..Usage::default()
                };
                Some(self.streamed_estimate(searched, true))
            }
            charge => charge,
        }
    }

    /// What the answer reported; for a stream that carried text but not its final
    /// usage, that with the rest estimated: the output at least what its text makes,
    /// the input (when the stream did not report it) left due.
    fn charged_tokens(&self) -> Option<Charge> {
        // Normalized once: the raw counts are large to copy and to read.
        let seen = self.read.seen.as_ref().map(RawUsage::normalize);
        let reported = seen.or(self.read.summed);
        let none = reported_none_of(seen, self.read.summed);
        let text = !self.read.text.is_empty();
        // No output counted for a stream that carried text is no count: a server
        // sending zeros.
        let trusted = self.read.final_usage && !(text && reported.is_some_and(|u| u.output == 0));
        if self.read.under_way {
            return None;
        }
        if let Some(output) = self.read.unreported.filter(|_| none) {
            return Some(Charge::unreported(output));
        }
        if self.stream && self.call && !text && none {
            // A stream in a format the meter does not read: its size counts.
            let unread = self.read.unread_data;
            if unread > 0 && !self.read.under_way && self.read.started.is_none() {
                return Some(Charge::unreported(input_tokens_of_size(unread)));
            }
        }
        if !self.stream || trusted || !text {
            let deferred = self.read.deferred.filter(|_| !self.stream || trusted);
            return reported.map(|usage| Charge {
                deferred,
                ..Charge::reported(usage)
            });
        }
        let mut usage = reported.unwrap_or_default();
        let raw = self.read.seen.as_ref();
        usage.output = output_estimate(raw, usage.output, self.read.text.tokens());
        let input_reported = raw.is_some_and(RawUsage::reports_input)
            && usage.input + usage.cache_read + usage.cache_write > 0;
        Some(self.streamed_estimate(usage, !input_reported))
    }

    /// The estimate of a stream without its final usage: `usage`, its input still to
    /// be estimated when `input_due`.
    fn streamed_estimate(&self, usage: Usage, input_due: bool) -> Charge {
        Charge {
            usage,
            estimated: true,
            input_due,
            cut_whole: false,
            unreported: false,
            // A background response's stream resumed by a read and left: charged as
            // a call would be, and not taken for the read that charges it whole.
            deferred: self
                .read
                .deferred
                .or(self.read.resumed)
                .map(DeferredAnswer::in_part),
        }
    }

    /// The answer was cut short (the client left, or it broke off): its charge. A
    /// stream's is as [`Self::finish`] gives it. A whole (JSON) answer reports its
    /// usage in its last bytes, which a client can leave before once the answer is
    /// larger than what the connections buffer (many embeddings, `n` answers): one
    /// cut after some of it passed is charged an estimate (which stands only when the
    /// client left: [`Charge::is_cut_whole`]), the output its text makes so far (of
    /// an answer past [`MAX_METERED_JSON`], in its first 64 KiB) and the input due.
    pub fn cut_short(&mut self) -> Option<Charge> {
        if self.stream {
            return self.end_with(&[], false);
        }
        if matches!(self.body, Body::BatchResults(_)) {
            // The lines read whole are charged; the one under way is not.
            let charge = self.results_charged(false);
            self.body = Body::Done;
            return charge;
        }
        let output = match &self.body {
            _ if !self.passed() => None,
            // A model's answer in a format the meter does not read counts its size.
            Body::Json(buf) if self.call => Some(unreported_answer_tokens(buf, buf.len() as u64)),
            Body::JsonEnds(ends) if self.call => {
                Some(unreported_answer_tokens(&ends.head, ends.len as u64))
            }
            Body::Json(buf) => Some(answer_text_tokens(buf) + array_call_tokens(buf)),
            Body::JsonEnds(ends) => {
                Some(answer_text_tokens(&ends.head) + array_call_tokens(&ends.head))
            }
            _ => None,
        };
        match (self.end_with(&[], false), output) {
            // Gemini's chunks, answered as a JSON array: their counts so far run behind
            // the text, which is estimated as a stream's is.
            (Some(reported), Some(text)) if !self.read.final_usage => {
                let output = output_estimate(self.read.seen.as_ref(), reported.usage.output, text);
                Some(reported.with_output_at_least(output))
            }
            (Some(reported), _) => Some(reported),
            (None, output) => output.map(Charge::cut_whole),
        }
    }
}

/// The output of an answer whose count so far (`reported`, of `seen`) runs behind its
/// `text` (the tokens its text makes): the larger of the two, or both, when the count
/// is Gemini's of its thinking alone (its chunks before the last report thoughts
/// without the candidates' tokens), which the text does not hold unless the thinking
/// was streamed too.
fn output_estimate(seen: Option<&RawUsage>, reported: u64, text: u64) -> u64 {
    if seen.is_some_and(RawUsage::counts_thoughts_alone) {
        reported.saturating_add(text)
    } else {
        reported.max(text)
    }
}

/// The longest JSON line of a stream held whole: Ollama's are a few hundred bytes;
/// of a longer one (`api/generate`'s last, with a large `context`) only its ends are
/// kept, as of a JSON answer too large to hold.
const MAX_LINE: usize = 1024 * 1024;

/// A stream of JSON lines, read line by line as its bytes pass.
#[derive(Debug, Default)]
struct Lines {
    /// The part of a line not ended yet.
    rest: Vec<u8>,
    /// A line past [`MAX_LINE`] not ended yet: its ends.
    long: Option<Box<JsonEnds>>,
}

impl Lines {
    /// Reads every line that `bytes` ends.
    fn feed(&mut self, mut bytes: &[u8], read: &mut Read) {
        if let Some(ends) = self.long.as_mut() {
            let Some(nl) = memchr::memchr(b'\n', bytes) else {
                ends.push(bytes);
                return;
            };
            ends.push(&bytes[..nl]);
            read_long_line(ends, read);
            self.long = None;
            bytes = &bytes[nl + 1..];
        }
        let Some(last) = memchr::memrchr(b'\n', bytes) else {
            self.rest.extend_from_slice(bytes);
            self.hold_ends_if_long();
            return;
        };
        let (ended, after) = bytes.split_at(last + 1);
        let mut lines = ended.split(|&b| b == b'\n');
        if let Some(first) = lines.next() {
            if self.rest.is_empty() {
                read_line(first, read);
            } else {
                self.rest.extend_from_slice(first);
                read_line(&self.rest, read);
                self.rest.clear();
            }
        }
        for line in lines {
            read_line(line, read);
        }
        self.rest.extend_from_slice(after);
        self.hold_ends_if_long();
    }

    /// The stream ended: a last line without its newline counts too.
    fn end(&mut self, read: &mut Read) {
        match self.long.take() {
            Some(ends) => read_long_line(&ends, read),
            None => read_line(&self.rest, read),
        }
    }

    /// Keeps only the ends of a line grown past [`MAX_LINE`].
    fn hold_ends_if_long(&mut self) {
        if self.rest.len() > MAX_LINE {
            let held = std::mem::take(&mut self.rest);
            self.long = Some(Box::new(JsonEnds::of(held)));
        }
    }
}

/// The counts and model at the ends of a line too long to hold.
fn read_long_line(ends: &JsonEnds, read: &mut Read) {
    if ends.head.trim_ascii_start().first() != Some(&b'{') {
        read.unread_data = read.unread_data.saturating_add(ends.len as u64);
    }
    let mut carrier = Carrier {
        model_known: read.model.is_some(),
        ..Carrier::default()
    };
    if carrier.read_ends(&ends.head, &ends.tail).is_some() {
        carrier.keep(read, &[&ends.head, &ends.tail]);
    }
}

/// One line of a JSON-lines stream: its text counted, then read when it may carry
/// counts (Ollama's last) or the model not named yet.
fn read_line(line: &[u8], read: &mut Read) {
    count_unread(line, read);
    read.text.line(line);
    let counts = memchr::memmem::find(line, b"eval_count").is_some();
    if counts || (read.model.is_none() && MODEL_KEY.find(line).is_some()) {
        read_carried(line, read);
    }
}

/// Counts `data`, an event's or a line's, as unread when it is not a JSON object (nor
/// OpenAI's closing `[DONE]`, nor blank).
fn count_unread(data: &[u8], read: &mut Read) {
    let data = data.trim_ascii();
    if !data.is_empty() && data[0] != b'{' && data != b"[DONE]" {
        read.unread_data = read.unread_data.saturating_add(data.len() as u64);
    }
}

/// The usage `doc` (an answer or an event) carries, over what was read, and its
/// model when none was named yet. An answer that is an array is read element by
/// element: Gemini's `streamGenerateContent` without `?alt=sse` answers its chunks so;
/// of one cut short, the elements that passed whole.
fn read_carried(doc: &[u8], read: &mut Read) {
    if doc.get(skip_ws(doc, 0)) == Some(&b'[') {
        let elements = ArrayElements::of(doc).or_else(|| ArrayElements::of_head(doc));
        for element in elements.into_iter().flatten() {
            read_carried_object(element, read);
        }
        return;
    }
    read_carried_object(doc, read);
}

/// [`read_carried`] for one object.
fn read_carried_object(doc: &[u8], read: &mut Read) {
    if GeminiBatchStream::starts(doc) {
        // Told apart by its first member; read by the scanner a large one is read by.
        let mut stream = GeminiBatchStream::default();
        stream.feed(doc);
        // One the scanner cannot read whole is still watched, by its name.
        if let Some(batch) = stream.finish().or_else(|| GeminiBatch::of_head(doc)) {
            keep_gemini_batch(batch, read);
        }
        return;
    }
    let mut carrier = Carrier {
        model_known: read.model.is_some(),
        wants_id: read.wants_response_id(),
        ..Carrier::default()
    };
    if carrier.read(doc).is_some() {
        carrier.keep(read, &[doc]);
    }
}

/// The first bytes of a JSON answer held so far (`held`) and its next `bytes`: enough
/// to read its first member by.
fn json_head<'a>(held: &'a [u8], bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    const HEAD: usize = 1024;
    if held.len() >= HEAD {
        return std::borrow::Cow::Borrowed(held);
    }
    let mut head = held.to_vec();
    head.extend_from_slice(&bytes[..bytes.len().min(HEAD - held.len())]);
    std::borrow::Cow::Owned(head)
}

/// What a Gemini batch's operation says, into `read`: the work it names, whether it
/// has ended, and once it has, the usage of its inlined responses or its file.
fn keep_gemini_batch(mut batch: GeminiBatch<'_>, read: &mut Read) {
    if read.started.is_none() {
        read.started = StartedApart::named(batch.id, ApartKind::GeminiBatch);
    }
    // A batch still at work is charged nothing yet, whatever it reports.
    read.under_way |= batch.ended != Some(true);
    if batch.ended.is_some() {
        read.ended = batch.ended;
    }
    if let Some(file) = batch.file {
        read.output_file = Some(String::from_utf8_lossy(file).into_owned());
    }
    read.deferred = read
        .deferred
        .or(Some(DeferredAnswer::gemini_batch(batch.id)));
    if let Some(responses) = batch.responses.as_mut() {
        read.summed = responses.usage();
        read.by_model = responses.take_usage_by_model();
        if read.model.is_none() {
            read.model = responses.take_model();
        }
    }
    if read.model.is_none() {
        read.model = batch.model;
    }
}

/// Whether `text` starts with the ASCII `prefix`, in any case.
pub(crate) fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Reads the usage of every complete event the parser holds, the model from the
/// first event that names it, and the output text of each.
fn drain(parser: &mut SseByteParser, read: &mut Read) {
    // The bytes as they came: what is read here is keys, numbers and characters counted
    // by their lead bytes, which UTF-8 decoding does not change; a model name (or an
    // escaped key) that is not UTF-8 is read as a decoder replaces it.
    while let Some(event) = parser.next_event_bytes() {
        let data = event.data;
        if starts_a_search(event.event, data) {
            read.streamed_searches += 1;
        }
        count_unread(data, read);
        let before = read.text;
        read.text.event(data);
        if read.text != before {
            // Text after usage: that usage was a running count (or an early zero), not
            // the stream's last word.
            read.final_usage = false;
            read.running_last = false;
        }
        // Most events carry neither: skip them without parsing.
        let wanted = names_usage(data) || (read.model.is_none() && MODEL_KEY.find(data).is_some());
        if wanted {
            read_carried(data, read);
        }
    }
}

/// The keys an event is looked at for, searched for with searchers built once: the
/// start of `"usage"` and Gemini's `"usageMetadata"`, of `"model"` and Gemini's
/// `"modelVersion"`.
static USAGE_KEY: Lazy<memmem::Finder<'static>> = Lazy::new(|| memmem::Finder::new(b"\"usage"));
static MODEL_KEY: Lazy<memmem::Finder<'static>> = Lazy::new(|| memmem::Finder::new(b"\"model"));

/// Gemini's key of why a candidate finished, which only the last chunk of a stream
/// has: looked for before the chunk is read for it.
static FINISH_KEY: Lazy<memmem::Finder<'static>> =
    Lazy::new(|| memmem::Finder::new(b"\"finishReason\""));

/// Whether the Gemini chunk `doc` (whole, or its first bytes) says why a candidate
/// finished: a `finishReason` of an element of its `candidates`, not a key of some
/// tool call's arguments.
fn gemini_finished(doc: &[u8]) -> bool {
    if FINISH_KEY.find(doc).is_none() {
        return false;
    }
    let Some(mut members) = ObjectMembers::of(doc).or_else(|| ObjectMembers::of_head(doc)) else {
        return false;
    };
    let Some(candidates) = std::iter::from_fn(|| members.next_front())
        .find(|m| &*m.key() == b"candidates")
        .and_then(|m| ArrayElements::of(m.value))
    else {
        return false;
    };
    candidates.into_iter().any(|candidate| {
        ObjectMembers::of(candidate).is_some_and(|mut members| {
            std::iter::from_fn(|| members.next_front()).any(|m| &*m.key() == b"finishReason")
        })
    })
}

/// Whether `data` has a `usage` (or `usageMetadata`) member that is not `null`: a Chat
/// stream asked for its usage says `"usage":null` in every chunk but the last, which
/// need not be parsed.
fn names_usage(data: &[u8]) -> bool {
    let mut from = 0;
    while let Some(found) = USAGE_KEY.find(&data[from..]) {
        from += found + USAGE_KEY.needle().len();
        let rest = &data[from..];
        if rest.starts_with(b"\"") {
            from += 1;
        } else if rest.starts_with(b"Metadata\"") {
            from += b"Metadata\"".len();
        } else {
            continue;
        }
        let Some(value) = member_value(data, from) else {
            continue;
        };
        let value = &data[value..];
        if !value.is_empty() && !value.starts_with(b"null") {
            return true;
        }
    }
    false
}

/// The charge of a model call's successful JSON `body` the gateway read whole itself
/// (a translated answer, a fallback's): what it reported, or the estimate of
/// [`Charge::unreported`] when it reported none; `None` for work still under way.
pub fn charge_of_call_answer(body: &[u8]) -> Option<Charge> {
    charge_and_response_of_call_answer(body, false).0
}

/// [`charge_of_call_answer`], and when `response_id` asks for it, the id of the
/// Responses API `response` object the answer is, read in the same pass.
pub fn charge_and_response_of_call_answer(
    body: &[u8],
    response_id: bool,
) -> (Option<Charge>, Option<String>) {
    let Some(mut meter) = UsageMeter::for_answer(Some("application/json"), None) else {
        return (None, None);
    };
    meter.may_answer_a_call();
    if response_id {
        meter.keeps_response_id();
    }
    let charge = meter.finish_with(body);
    (charge, meter.take_response_id())
}

/// Whether the answer read so far reported no usage, or only zeros: a server that
/// counts nothing has not counted.
fn reported_none(read: &Read) -> bool {
    reported_none_of(read.seen.as_ref().map(RawUsage::normalize), read.summed)
}

/// [`reported_none`] of the usage `seen` (normalized) and `summed`.
fn reported_none_of(seen: Option<Usage>, summed: Option<Usage>) -> bool {
    let zero = |u: Usage| u == Usage::default();
    seen.is_none_or(zero) && summed.is_none_or(zero)
}

/// Whether an answer (`doc`, or its head) says no model worked for it: a top-level
/// `error` not `null` (some servers answer a failure with `200`; Gemini's array of
/// chunks, in its first), or Ollama's `done_reason` of a model loaded or unloaded
/// without a prompt.
fn says_no_work(doc: &[u8]) -> bool {
    if doc.get(skip_ws(doc, 0)) == Some(&b'[') {
        // Gemini's chunks answered as one array: failed before its first chunk.
        let mut elements = ArrayElements::of(doc).or_else(|| ArrayElements::of_head(doc));
        let first = elements.as_mut().and_then(Iterator::next);
        // An object, read as one: arrays within arrays (JSPB) are not followed down.
        return first.is_some_and(|e| e.get(skip_ws(e, 0)) == Some(&b'{') && says_no_work(e));
    }
    let Some(mut members) = ObjectMembers::of(doc).or_else(|| ObjectMembers::of_head(doc)) else {
        return false;
    };
    std::iter::from_fn(|| members.next_front()).any(|m| match &*m.key() {
        // A Responses object says `"error": null` whatever became of it.
        b"error" => m.value.trim_ascii() != b"null",
        b"done_reason" => matches!(m.value, br#""load""# | br#""unload""#),
        _ => false,
    })
}

static COST_KEY: Lazy<memmem::Finder<'static>> = Lazy::new(|| memmem::Finder::new(b"\"cost"));

/// Whether an answer may say what it cost (a `cost` or `cost_in_usd_ticks` key): one
/// search with a searcher built once.
pub fn may_say_its_cost(answer: &[u8]) -> bool {
    COST_KEY.find(answer).is_some()
}

/// The usage in one whole answer.
pub fn usage_of_json(body: &[u8]) -> Option<Usage> {
    let mut meter = UsageMeter::for_answer(Some("application/json"), None)?;
    meter.finish_with(body).map(|charge| charge.usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($path:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/",
                $path
            ))
        };
    }

    /// A meter for an answer of `content_type` that was fed `body`, `split` bytes at
    /// a time.
    fn fed_as(content_type: &str, body: &[u8], split: usize) -> UsageMeter {
        let mut m = UsageMeter::for_answer(Some(content_type), None).unwrap();
        for piece in body.chunks(split) {
            m.feed(piece);
        }
        m
    }

    fn metered(content_type: &str, body: &[u8], split: usize) -> Option<Usage> {
        fed_as(content_type, body, split).finish().map(|c| c.usage)
    }

    fn metered_with_model(content_type: &str, body: &[u8], split: usize) -> (Usage, String) {
        let mut m = fed_as(content_type, body, split);
        let usage = m.finish().unwrap().usage;
        (usage, m.take_model().unwrap())
    }

    #[test]
    fn deepseeks_cache_hits_are_read_from_its_own_member() {
        // DeepSeek says its cache hits as `prompt_cache_hit_tokens`; cached input is
        // priced apart (`cache_read`).
        let deepseek = br#"{"model":"deepseek-chat","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":5,"total_tokens":105,"prompt_cache_hit_tokens":80,"prompt_cache_miss_tokens":20}}"#;
        let usage = metered("application/json", deepseek, 7).unwrap();
        assert_eq!((usage.input, usage.cache_read, usage.output), (20, 80, 5));
        // OpenAI's own member, when both are there, is the one read.
        let both = br#"{"model":"m","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":60},"prompt_cache_hit_tokens":80}}"#;
        assert_eq!(metered("application/json", both, 7).unwrap().cache_read, 60);
    }

    #[test]
    fn a_usage_that_says_only_its_total_is_charged_that_total_as_input() {
        // vLLM's rerank says `{"total_tokens": N}` alone: the documents read.
        let rerank = br#"{"id":"rerank-1","model":"bge-reranker","results":[],"usage":{"total_tokens":500}}"#;
        for split in [7, rerank.len()] {
            let usage = metered("application/json", rerank, split).unwrap();
            assert_eq!((usage.input, usage.output), (500, 0), "split {split}");
        }
        // Beside the counts it sums, a total is not counted again.
        let chat = br#"{"model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;
        let usage = metered("application/json", chat, 7).unwrap();
        assert_eq!((usage.input, usage.output), (10, 5));
        let responses = br#"{"object":"response","usage":{"input_tokens":10,"output_tokens":5,"total_tokens":15}}"#;
        let usage = metered("application/json", responses, 7).unwrap();
        assert_eq!((usage.input, usage.output), (10, 5));
    }

    #[test]
    fn xai_reasoning_outside_completion_tokens_counts_as_output() {
        // xAI's Chat usage: 35 completion tokens, 375 of reasoning apart from them, a
        // total of 420 over a prompt of 10; it bills 410 output tokens.
        let answer = fixture!("xai/chat_completion.json");
        for split in [7, answer.len()] {
            let usage = metered("application/json", answer.as_bytes(), split).unwrap();
            assert_eq!(usage.output, 410, "split {split}");
            assert_eq!(usage.reasoning, 375);
            assert_eq!(usage.input + usage.cache_read, 10);
        }
        // OpenAI's reasoning is inside its completion tokens, its total their sum.
        let openai = br#"{"model":"o3","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":400,"total_tokens":410,"completion_tokens_details":{"reasoning_tokens":375}}}"#;
        assert_eq!(metered("application/json", openai, 7).unwrap().output, 400);
    }

    #[test]
    fn what_is_left_to_charge_takes_an_input_estimate_off_every_input_kind() {
        let reported = Usage {
            input: 100,
            cache_read: 900,
            cache_write: 50,
            output: 40,
            reasoning: 10,
            web_searches: 0,
            cost_nanos: 0,
        };
        let estimate = Usage {
            input: 300,
            output: 15,
            ..Usage::default()
        };
        let left = reported.less(&estimate);
        assert_eq!(
            (left.input, left.cache_read, left.cache_write),
            (0, 700, 50),
            "1,050 input tokens in all, 300 of them charged"
        );
        assert_eq!((left.output, left.reasoning), (25, 10));
        assert_eq!(
            estimate.less(&reported),
            Usage::default(),
            "nothing below zero"
        );
    }

    #[test]
    fn geminis_own_answers_and_streams_are_metered_however_split() {
        // Thinking is billed as output; the cached part of the prompt is a cache read.
        let whole = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":12,"totalTokenCount":42,"cachedContentTokenCount":2,"thoughtsTokenCount":20},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;
        let stream = concat!(
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"totalTokenCount\":10},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":12,\"totalTokenCount\":42,\"cachedContentTokenCount\":2,\"thoughtsTokenCount\":20},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}\r\n\r\n",
        );
        let expected = Usage {
            input: 8,
            output: 32,
            cache_read: 2,
            cache_write: 0,
            reasoning: 20,
            web_searches: 0,
            cost_nanos: 0,
        };
        // Without `?alt=sse`, the chunks come as one JSON array.
        let array = r#"[{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":10,"totalTokenCount":10},"modelVersion":"gemini-2.5-flash"}
,
{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":12,"totalTokenCount":42,"cachedContentTokenCount":2,"thoughtsTokenCount":20},"modelVersion":"gemini-2.5-flash"}
]"#;
        for (content_type, body) in [
            ("application/json", whole),
            ("text/event-stream", stream),
            ("application/json", array),
        ] {
            for split in 1..=body.len() {
                let (usage, model) = metered_with_model(content_type, body.as_bytes(), split);
                assert_eq!(usage, expected, "{content_type} split {split}");
                assert_eq!(model, "gemini-2.5-flash");
            }
        }
    }

    #[test]
    fn ollamas_own_answers_and_line_streams_are_metered_however_split() {
        let whole = r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"Hi"},"done_reason":"stop","done":true,"total_duration":5,"load_duration":1,"prompt_eval_count":26,"prompt_eval_duration":2,"eval_count":298,"eval_duration":3}"#;
        let lines = concat!(
            "{\"model\":\"llama3.2\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":26,\"eval_count\":298,\"eval_duration\":3}\n",
        );
        let expected = Usage {
            input: 26,
            output: 298,
            ..Usage::default()
        };
        for (content_type, body) in [
            ("application/json", whole.to_string()),
            ("application/x-ndjson", lines.to_string()),
            // Its last line without a newline still counts.
            ("application/x-ndjson", lines.trim_end().to_string()),
        ] {
            for split in 1..=body.len() {
                let (usage, model) = metered_with_model(content_type, body.as_bytes(), split);
                assert_eq!(usage, expected, "{content_type} split {split}");
                assert_eq!(model, "llama3.2");
            }
        }
        // `api/generate`'s last line carries the prompt's tokens as `context`, before
        // its counts: one past the longest line held is read from its ends.
        let context = vec!["128000"; MAX_LINE / 4].join(",");
        let generate = format!(
            "{{\"model\":\"llama3.2\",\"response\":\"Hi\",\"done\":false}}\n{{\"model\":\"llama3.2\",\"response\":\"\",\"done\":true,\"context\":[{context}],\"prompt_eval_count\":26,\"eval_count\":298}}\n"
        );
        for split in [1000, 64 * 1024, generate.len()] {
            let (usage, _) = metered_with_model("application/x-ndjson", generate.as_bytes(), split);
            assert_eq!(usage, expected, "split {split}");
        }
    }

    /// What an answer of `content_type` made of `body` is charged, `cut` short or
    /// ended whole, its input due estimated from [`REQUEST`]; and whether estimated.
    fn charged_as(
        content_type: &str,
        body: &str,
        split: usize,
        cut: bool,
    ) -> Option<(Usage, bool)> {
        charge_with_input(content_type, REQUEST, body, split, cut).map(|c| (c.usage, c.estimated))
    }

    /// A Gemini chunk of `text`, finished when `finish` says why, reporting `usage`.
    fn gemini_chunk(text: &str, finish: &str, usage: &str) -> String {
        format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}}{finish},"index":0}}],"usageMetadata":{usage},"modelVersion":"gemini-2.5-flash"}}"#
        )
    }

    fn gemini_sse(chunks: &[String]) -> String {
        chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect()
    }

    /// A running Gemini count: the prompt's, and 3 tokens of output so far.
    const GEMINI_RUNNING: &str =
        r#"{"promptTokenCount":10,"candidatesTokenCount":3,"totalTokenCount":13}"#;
    const GEMINI_FINAL: &str =
        r#"{"promptTokenCount":10,"candidatesTokenCount":12,"totalTokenCount":22}"#;

    #[test]
    fn gemini_and_ollama_streams_cut_before_their_counts_are_charged_an_estimate() {
        // Every Gemini chunk reports a running count until the one that finishes;
        // Ollama counts only in its last line. Cut before those, each is estimated
        // from its text: "Hello there, " and "general Kenobi", 27 characters, 7
        // tokens, more than the 3 counted so far; the input Gemini reported (10),
        // Ollama's estimated from the request.
        let chunks = [
            gemini_chunk("Hello there, ", "", GEMINI_RUNNING),
            gemini_chunk("general Kenobi", "", GEMINI_RUNNING),
            gemini_chunk("!", r#","finishReason":"STOP""#, GEMINI_FINAL),
        ];
        let array = |chunks: &[String], end: &str| format!("[{}{end}", chunks.join(",\n"));
        let line = |content: &str, counts: &str| {
            format!(
                "{{\"model\":\"llama3.2\",\"message\":{{\"role\":\"assistant\",\"content\":\"{content}\"}}{counts}}}\n"
            )
        };
        let lines = |last: bool| {
            let mut lines = line("Hello there, ", r#","done":false"#)
                + &line("general Kenobi", r#","done":false"#);
            if last {
                lines += &line("", r#","done":true,"prompt_eval_count":26,"eval_count":8"#);
            }
            lines
        };
        let usage = |input, output| Usage {
            input,
            output,
            ..Usage::default()
        };
        let (sse, ndjson, json) = (
            "text/event-stream",
            "application/x-ndjson",
            "application/json",
        );
        // Ended whole, or left once whole: what was reported.
        for (content_type, whole, exact) in [
            (sse, gemini_sse(&chunks), usage(10, 12)),
            (json, array(&chunks, "]"), usage(10, 12)),
            (ndjson, lines(true), usage(26, 8)),
        ] {
            for (split, cut) in [
                (1, false),
                (7, true),
                (usize::MAX, false),
                (usize::MAX, true),
            ] {
                let charge = charged_as(content_type, &whole, split, cut);
                assert_eq!(charge, Some((exact, false)), "{content_type} {split} {cut}");
            }
        }
        // Left before the end: estimated.
        for (content_type, cut, estimate) in [
            (sse, gemini_sse(&chunks[..2]), usage(10, 7)),
            // Cut in the next chunk, at its comma, or right after the last whole one.
            (
                json,
                array(&chunks[..2], ",\n{\"candidates\""),
                usage(10, 7),
            ),
            (json, array(&chunks[..2], ","), usage(10, 7)),
            (json, array(&chunks[..2], ""), usage(10, 7)),
            (ndjson, lines(false), usage(REQUEST_TOKENS, 7)),
        ] {
            for split in [1, 7, usize::MAX] {
                let charge = charged_as(content_type, &cut, split, true);
                assert_eq!(
                    charge,
                    Some((estimate, true)),
                    "{content_type} {split}: {cut}"
                );
            }
        }
    }

    #[test]
    fn a_gemini_stream_ended_on_a_count_that_said_no_finish_takes_that_count() {
        // The count in a chunk that does not say why the answer finished (its last
        // one sent alone, or none said) is the last word of a stream that ended
        // whole; of one left, the text is estimated as ever, here under that count.
        let chunks = [
            gemini_chunk("Hello there, ", "", GEMINI_RUNNING),
            gemini_chunk("general Kenobi", "", GEMINI_FINAL),
        ];
        let exact = Usage {
            input: 10,
            output: 12,
            ..Usage::default()
        };
        let body = gemini_sse(&chunks);
        assert_eq!(
            charged_as("text/event-stream", &body, 5, false),
            Some((exact, false))
        );
        assert_eq!(
            charged_as("text/event-stream", &body, 5, true),
            Some((exact, true))
        );
        // A finished chunk, then the count alone: the count stands.
        let chunks = [
            gemini_chunk("Hello there, ", r#","finishReason":"STOP""#, GEMINI_RUNNING),
            r#"{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":12,"totalTokenCount":22}}"#.to_string(),
        ];
        let body = gemini_sse(&chunks);
        assert_eq!(
            charged_as("text/event-stream", &body, 5, true),
            Some((exact, false))
        );
    }

    #[test]
    fn a_gemini_count_of_thinking_alone_is_charged_with_the_text_besides() {
        // Before its last chunk, a thinking model's count says its thoughts (20)
        // without the candidates' tokens: the text streamed (7 tokens) is added to
        // it, whether the stream was left or ended without saying why it finished.
        let thinking = r#"{"promptTokenCount":10,"thoughtsTokenCount":20,"totalTokenCount":30}"#;
        let chunks = [
            gemini_chunk("Hello there, ", "", thinking),
            gemini_chunk("general Kenobi", "", thinking),
        ];
        let estimate = Usage {
            input: 10,
            output: 27,
            reasoning: 20,
            ..Usage::default()
        };
        let body = gemini_sse(&chunks);
        for cut in [true, false] {
            let charge = charged_as("text/event-stream", &body, 9, cut);
            assert_eq!(charge, Some((estimate, true)), "cut {cut}");
        }
        let array = format!("[{}", chunks.join(","));
        assert_eq!(
            charged_as("application/json", &array, 9, true),
            Some((estimate, true))
        );
    }

    #[test]
    fn a_finish_is_read_in_the_candidates_not_in_a_tool_calls_arguments() {
        let finished = br#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP","index":0}],"usageMetadata":{}}"#;
        assert!(gemini_finished(finished));
        // Its first bytes only.
        assert!(gemini_finished(
            br#"{"candidates":[{"finishReason":"STOP"}],"usageMeta"#
        ));
        for running in [
            &br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"finishReason":"STOP"}}}]},"index":0}],"usageMetadata":{}}"#[..],
            br#"{"candidates":[{"content":{"parts":[{"text":"the \"finishReason\": key"}]}}],"usageMetadata":{}}"#,
            br#"{"usageMetadata":{},"finishReason":"STOP"}"#,
        ] {
            assert!(!gemini_finished(running), "{}", String::from_utf8_lossy(running));
        }
    }

    #[test]
    fn a_count_past_any_model_is_capped() {
        // An answer (or a downloaded file read as one) cannot make a counter overflow.
        let body =
            br#"{"id":"x","usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1}}"#;
        let usage = usage_of_json(body).unwrap();
        assert_eq!((usage.input, usage.output), (MAX_TOKENS_AN_ANSWER, 1));
    }

    #[test]
    fn chat_completions_usage_takes_cached_tokens_out_of_input() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":100,"completion_tokens":40,"total_tokens":140,
            "prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":25}}}"#;
        assert_eq!(
            usage_of_json(body),
            Some(Usage {
                input: 36,
                output: 40,
                cache_read: 64,
                cache_write: 0,
                reasoning: 25,
                web_searches: 0,
                cost_nanos: 0,
            })
        );
    }

    #[test]
    fn anthropic_usage_keeps_cache_reads_and_writes_apart() {
        let body = fixture!("anthropic/messages.json").as_bytes();
        let u = usage_of_json(body).unwrap();
        assert!(u.input > 0 && u.output > 0);
        let body = br#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":200,"cache_creation_input_tokens":30,"output_tokens":5}}"#;
        assert_eq!(
            usage_of_json(body),
            Some(Usage {
                input: 10,
                output: 5,
                cache_read: 200,
                cache_write: 30,
                reasoning: 0,
                web_searches: 0,
                cost_nanos: 0,
            })
        );
    }

    #[test]
    fn responses_usage_is_read_whole_and_from_its_terminal_event() {
        let whole = usage_of_json(fixture!("openai/responses.json").as_bytes()).unwrap();
        assert_eq!((whole.input, whole.output), (17, 5));
        let stream = fixture!("openai/responses_stream.txt").as_bytes();
        for split in [1, 7, 4096] {
            let u = metered("text/event-stream", stream, split).unwrap();
            assert!(u.input > 0 && u.output > 0, "{u:?}");
        }
    }

    /// The charge of `body`, fed in pieces of `split` bytes.
    fn charge_of(content_type: &str, body: &str, split: usize) -> Option<Charge> {
        fed_as(content_type, body.as_bytes(), split).finish()
    }

    #[test]
    fn a_background_responses_usage_names_the_response_and_no_other_does() {
        let whole = fixture!("openai/responses.json");
        let stream = fixture!("openai/responses_stream.txt");
        let in_background = |text: &str| {
            text.replace(r#""background": false"#, r#""background": true"#)
                .replace(r#""background":false"#, r#""background":true"#)
        };
        let whole_id = DeferredAnswer::background_response(
            br#""resp_0d8b81b7c805508d0069a31431b68c8194af45c94a6952706b""#,
        );
        let stream_id = DeferredAnswer::background_response(
            br#""resp_0b7e83747d2b84440069a31433ab1881998d8036ef3db1ef03""#,
        );
        for split in [1, 7, 4096] {
            let json = "application/json";
            let sse = "text/event-stream";
            assert_eq!(charge_of(json, whole, split).unwrap().deferred, None);
            assert_eq!(charge_of(sse, stream, split).unwrap().deferred, None);
            let whole = charge_of(json, &in_background(whole), split).unwrap();
            assert_eq!(whole.deferred, Some(whole_id), "{split}");
            assert_eq!((whole.usage.input, whole.usage.output), (17, 5));
            let streamed = charge_of(sse, &in_background(stream), split).unwrap();
            assert_eq!(streamed.deferred, Some(stream_id), "{split}");
            assert!(!streamed.estimated);
        }
        // A background stream cut before it completes (the call that started it, or a
        // read resuming it) is charged an estimate, as any call is, and names its
        // response as read in part: its usage was not read, so a read of it whole is
        // charged still.
        let cut = in_background(stream);
        let cut = &cut[..cut.find("event: response.completed").unwrap()];
        let charge = charge_of("text/event-stream", cut, 4096).unwrap();
        assert!(charge.estimated);
        assert_eq!(charge.deferred, Some(stream_id.in_part()));
        // A Chat answer is nobody's background response, whatever its content says.
        let chat = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"message":{"content":"\"background\":true"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        assert_eq!(
            charge_of("application/json", chat, 5).unwrap().deferred,
            None
        );
    }

    /// The meter after reading `body` whole, as a JSON answer.
    fn meter_of(body: &str) -> (UsageMeter, Option<Charge>) {
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        let charge = m.finish_with(body.as_bytes());
        (m, charge)
    }

    #[test]
    fn an_answer_names_the_work_it_started_apart_and_whether_that_ended() {
        let whole = fixture!("openai/responses.json");
        // What a `background: true` call is answered: queued, without usage.
        let queued = whole
            .replace(r#""background": false"#, r#""background": true"#)
            .replace(r#""status": "completed""#, r#""status": "queued""#);
        let (mut m, charge) = meter_of(&queued);
        // What it says of usage while queued is not its count (here the recorded
        // answer's, as a server sending zeros would): nothing is charged, or marked.
        assert_eq!(charge, None);
        assert_eq!(m.work_ended(), Some(false));
        let started = m.take_started().unwrap();
        assert_eq!(
            (started.id.as_str(), started.kind),
            (
                "resp_0d8b81b7c805508d0069a31431b68c8194af45c94a6952706b",
                ApartKind::Response
            )
        );
        for status in ["completed", "incomplete", "failed", "cancelled"] {
            let ended =
                queued.replace(r#""status": "queued""#, &format!(r#""status": "{status}""#));
            assert_eq!(meter_of(&ended).0.work_ended(), Some(true), "{status}");
        }
        // A response not run in the background started nothing apart.
        assert_eq!(meter_of(whole).0.take_started(), None);
        // A batch under way is charged nothing yet, and named.
        let (mut m, charge) = meter_of(&batch_object("in_progress"));
        assert_eq!(charge, None);
        assert_eq!(m.work_ended(), Some(false));
        assert_eq!(
            m.take_started(),
            Some(StartedApart {
                id: "batch_abc".into(),
                kind: ApartKind::Batch
            })
        );
        assert_eq!(
            meter_of(&batch_object("completed")).0.work_ended(),
            Some(true)
        );
        // An Anthropic message batch: named, ended by its processing status.
        let message_batch = |status: &str| {
            format!(
                r#"{{"id":"msgbatch_01","type":"message_batch","processing_status":"{status}","request_counts":{{"processing":2,"succeeded":0,"errored":0,"canceled":0,"expired":0}},"ended_at":null,"created_at":"2026-12-06T09:00:00Z","expires_at":"2026-12-07T09:00:00Z","cancel_initiated_at":null,"results_url":null}}"#
            )
        };
        let (mut m, charge) = meter_of(&message_batch("in_progress"));
        assert_eq!(charge, None);
        assert_eq!(m.work_ended(), Some(false));
        assert_eq!(
            m.take_started(),
            Some(StartedApart {
                id: "msgbatch_01".into(),
                kind: ApartKind::MessageBatch
            })
        );
        assert_eq!(meter_of(&message_batch("ended")).0.work_ended(), Some(true));
        // A message is no batch.
        let (mut m, _) = meter_of(fixture!("anthropic/messages.json"));
        assert_eq!(m.take_started(), None);
    }

    #[test]
    fn a_whole_responses_answer_gives_its_id_only_when_asked_in_the_pass_that_reads_its_usage() {
        let answer = fixture!("openai/responses.json");
        let id: serde_json::Value = serde_json::from_str(answer).unwrap();
        let id = id["id"].as_str().unwrap();
        let (charge, named) = charge_and_response_of_call_answer(answer.as_bytes(), true);
        assert!(charge.is_some(), "its usage read as before");
        assert_eq!(named.as_deref(), Some(id));
        let (_, unasked) = charge_and_response_of_call_answer(answer.as_bytes(), false);
        assert_eq!(unasked, None, "no copy of an id nobody asked for");
        // Fed in pieces, and background (queued, no usage): named all the same.
        let queued = r#"{"id":"resp_bg_1","object":"response","status":"queued","background":true,"model":"gpt-4o-mini","output":[],"usage":null}"#;
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        m.keeps_response_id();
        for piece in queued.as_bytes().chunks(5) {
            m.feed(piece);
        }
        m.finish();
        assert_eq!(m.take_response_id().as_deref(), Some("resp_bg_1"));
        // Its members in another order (`object` after `model`): found all the same.
        let sorted = r#"{"background":false,"created_at":1,"id":"resp_sorted","model":"m","object":"response","output":[],"usage":{"input_tokens":1,"output_tokens":1}}"#;
        let (_, named) = charge_and_response_of_call_answer(sorted.as_bytes(), true);
        assert_eq!(named.as_deref(), Some("resp_sorted"));
        // Another object's id is no response's.
        let chat = fixture!("openai/chat_completion.json");
        assert_eq!(
            charge_and_response_of_call_answer(chat.as_bytes(), true).1,
            None
        );
    }

    #[test]
    fn a_responses_stream_is_known_by_the_id_its_first_event_names() {
        let stream = fixture!("openai/responses_stream.txt");
        let created = stream.split("\n\n").next().unwrap();
        let m = fed_as("text/event-stream", created.as_bytes(), 7);
        assert_eq!(m.response_id(), None, "not before the event is whole");
        let m = fed_as("text/event-stream", format!("{created}\n\n").as_bytes(), 7);
        assert_eq!(
            m.response_id(),
            Some("resp_0b7e83747d2b84440069a31433ab1881998d8036ef3db1ef03")
        );
        // Later events do not change it, and other streams name none.
        let m = fed_as("text/event-stream", stream.as_bytes(), 64);
        assert_eq!(
            m.response_id(),
            Some("resp_0b7e83747d2b84440069a31433ab1881998d8036ef3db1ef03")
        );
        let anthropic = fixture!("anthropic/messages_stream.txt");
        let m = fed_as("text/event-stream", anthropic.as_bytes(), 64);
        assert_eq!(m.response_id(), None);
        let chat = fixture!("openai/chat_completion_stream.txt");
        let m = fed_as("text/event-stream", chat.as_bytes(), 64);
        assert_eq!(m.response_id(), None);
    }

    /// An OpenAI batch object in `status`, reporting 1,000 input and 200 output tokens.
    fn batch_object(status: &str) -> String {
        format!(
            r#"{{"id":"batch_abc","object":"batch","endpoint":"/v1/chat/completions","model":"gpt-4o-mini","errors":null,"input_file_id":"file-in","completion_window":"24h","status":"{status}","output_file_id":"file-out","request_counts":{{"total":2,"completed":2,"failed":0}},"usage":{{"input_tokens":1000,"input_tokens_details":{{"cached_tokens":0}},"output_tokens":200,"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":1200}},"metadata":null}}"#
        )
    }

    #[test]
    fn a_batch_is_charged_once_it_has_ended_and_not_while_at_work() {
        let named = DeferredAnswer::batch(br#""batch_abc""#, Some(br#""file-out""#));
        for status in ["completed", "failed", "expired", "cancelled"] {
            for split in [3, 4096] {
                let charge = charge_of("application/json", &batch_object(status), split).unwrap();
                assert_eq!(charge.deferred, Some(named), "{status}");
                assert!(charge.deferred.unwrap().is_batch());
                assert_eq!((charge.usage.input, charge.usage.output), (1000, 200));
            }
        }
        for status in ["validating", "in_progress", "finalizing", "cancelling"] {
            assert_eq!(
                charge_of("application/json", &batch_object(status), 7),
                None,
                "{status}"
            );
        }
    }

    /// A Gemini batch's operation in `state`, with `output` in its metadata.
    fn gemini_batch_operation(state: &str, output: &str) -> String {
        format!(
            r#"{{"name":"batches/gb-1","metadata":{{"@type":"type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch","model":"models/gemini-2.5-flash","state":"{state}"{output}}}}}"#
        )
    }

    #[test]
    fn a_gemini_batch_is_charged_its_inlined_responses_once_it_has_ended() {
        let response = |input: u64| {
            format!(
                r#"{{"response":{{"candidates":[{{"content":{{"parts":[{{"text":"Hi"}}],"role":"model"}},"finishReason":"STOP"}}],"usageMetadata":{{"promptTokenCount":{input},"candidatesTokenCount":4,"totalTokenCount":1}},"modelVersion":"gemini-2.5-flash"}}}}"#
            )
        };
        let inlined = format!(
            r#","output":{{"inlinedResponses":{{"inlinedResponses":[{},{}]}}}}"#,
            response(10),
            response(20)
        );
        let ended = gemini_batch_operation("BATCH_STATE_SUCCEEDED", &inlined);
        for split in [5, 4096] {
            let charge = charge_of("application/json", &ended, split).unwrap();
            assert_eq!((charge.usage.input, charge.usage.output), (30, 8));
            assert_eq!(charge.deferred, Some(DeferredAnswer::gemini_batch(b"gb-1")));
            assert!(charge.deferred.unwrap().is_batch());
        }
        let (mut m, _) = meter_of(&ended);
        assert_eq!(m.work_ended(), Some(true));
        assert_eq!(m.take_model().as_deref(), Some("gemini-2.5-flash"));
        // Under way: charged nothing, and named as work to poll.
        for state in ["BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"] {
            let (mut m, charge) = meter_of(&gemini_batch_operation(state, ""));
            assert_eq!(charge, None, "{state}");
            assert_eq!(m.work_ended(), Some(false));
            assert_eq!(
                m.take_started(),
                Some(StartedApart {
                    id: "gb-1".into(),
                    kind: ApartKind::GeminiBatch
                })
            );
        }
        // Too large to hold: read as it passes, its responses summed.
        let large = format!(
            r#","output":{{"inlinedResponses":{{"inlinedResponses":[{{"response":{{"candidates":[{{"content":{{"parts":[{{"text":"{}"}}]}}}}],"usageMetadata":{{"promptTokenCount":1}}}}}}]}}}}"#,
            "x".repeat(MAX_METERED_JSON)
        );
        let large = gemini_batch_operation("BATCH_STATE_SUCCEEDED", &large);
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        for piece in large.as_bytes().chunks(1 << 20) {
            m.feed(piece);
        }
        let charge = m.finish().unwrap();
        assert_eq!((charge.usage.input, m.work_ended()), (1, Some(true)));
        assert_eq!(charge.deferred, Some(DeferredAnswer::gemini_batch(b"gb-1")));
        // Left part way: charged nothing.
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        m.feed(&large.as_bytes()[..large.len() - 10]);
        assert_eq!(m.cut_short(), None);
        // Ended with its responses in a file: the file is named, and is what tells.
        let filed = r#","output":{"responsesFile":"files/batch-gb-1"}"#;
        let (mut m, charge) = meter_of(&gemini_batch_operation("BATCH_STATE_SUCCEEDED", filed));
        assert_eq!(charge, None);
        assert_eq!(m.take_output_file().as_deref(), Some("batch-gb-1"));
        let lines = format!(
            "{}\n{}\n",
            r#"{"key":"a","response":{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2},"modelVersion":"gemini-2.5-flash"}}"#,
            r#"{"key":"b","error":{"code":3}}"#
        );
        let file = DeferredAnswer::batch_results(
            "v1beta/files/batch-gb-1:download",
            false,
            Some("gemini"),
        )
        .unwrap();
        let mut m = UsageMeter::for_batch_results(file, None).unwrap();
        m.feed(lines.as_bytes());
        let charge = m.finish().unwrap();
        assert_eq!((charge.usage.input, charge.usage.output), (3, 2));
        assert_eq!(
            charge.deferred,
            Some(
                DeferredAnswer::gemini_responses(b"batch-gb-1", "gemini")
                    .known_by(&charge.usage, &[("gemini-2.5-flash".into(), charge.usage)])
            )
        );
    }

    #[test]
    fn a_batchs_results_are_charged_the_sum_of_their_lines_whole_or_in_part() {
        let results =
            DeferredAnswer::batch_results("v1/messages/batches/msgbatch_1/results", true, None)
                .unwrap();
        let line = |input: u64| {
            format!(
                r#"{{"custom_id":"r{input}","result":{{"type":"succeeded","message":{{"id":"msg_{input}","model":"claude-haiku-4-5","usage":{{"input_tokens":{input},"output_tokens":1}}}}}}}}"#
            )
        };
        let body = format!("{}\n{}\n", line(10), line(20));
        let mut m = UsageMeter::for_batch_results(results, None).unwrap();
        m.feed(body.as_bytes());
        let charge = m.finish().unwrap();
        assert_eq!((charge.usage.input, charge.usage.output), (30, 2));
        assert_eq!(charge.deferred, Some(results));
        assert_eq!(m.take_model().as_deref(), Some("claude-haiku-4-5"));

        // Left after the first line: charged it, and not remembered as read.
        let mut m = UsageMeter::for_batch_results(results, None).unwrap();
        m.feed(&body.as_bytes()[..body.len() - 10]);
        let charge = m.cut_short().unwrap();
        assert_eq!(charge.usage.input, 10);
        assert!(!charge.deferred.unwrap().read_whole());
        assert!(UsageMeter::for_batch_results(results, Some("gzip")).is_none());
    }

    #[test]
    fn streams_are_read_however_they_are_split() {
        for (path, stream) in [
            ("anthropic", fixture!("anthropic/messages_stream.txt")),
            ("openai", fixture!("openai/chat_completion_stream.txt")),
            ("groq", fixture!("groq/chat_completion_stream.txt")),
        ] {
            let whole = metered("text/event-stream", stream.as_bytes(), usize::MAX);
            for split in [1, 3, 64] {
                assert_eq!(
                    metered("text/event-stream", stream.as_bytes(), split),
                    whole,
                    "{path}"
                );
            }
            if path == "anthropic" {
                // message_start's input, message_delta's final output count.
                let u = whole.unwrap();
                assert!(u.input > 0 && u.output > 1, "{u:?}");
            }
        }
    }

    /// The recorded Chat stream as it comes when the client asks for usage
    /// (`stream_options.include_usage`): `"usage": null` in every chunk, then a last
    /// chunk with no choices and the usage.
    fn chat_stream_with_usage() -> String {
        let chunks = fixture!("openai/chat_completion_stream.txt")
            .replace(r#""obfuscation""#, r#""usage":null,"obfuscation""#);
        let last = r#"data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1769092764,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":2}},"obfuscation":"q"}"#;
        chunks.replace("data: [DONE]", &format!("{last}\n\ndata: [DONE]"))
    }

    #[test]
    fn a_chat_stream_reporting_usage_counts_its_last_chunk() {
        let stream = chat_stream_with_usage();
        assert!(stream.matches(r#""usage":null"#).count() > 3);
        for split in [1, 7, usize::MAX] {
            let mut m = UsageMeter::for_answer(Some("text/event-stream"), None).unwrap();
            for piece in stream.as_bytes().chunks(split) {
                m.feed(piece);
            }
            assert_eq!(m.take_model().as_deref(), Some("gpt-4o-mini-2024-07-18"));
            let u = m.finish().unwrap().usage;
            assert_eq!(
                (u.input, u.cache_read, u.output),
                (9, 2, 4),
                "split {split}"
            );
        }
    }

    /// `body` with the last character of every `model` it names made a byte that is
    /// not UTF-8; and the model as a decoder reads it then.
    fn mangled(body: &str, model: &str) -> (Vec<u8>, String) {
        let kept = &model[..model.len() - 1];
        let marked = body.replace(model, &format!("{kept}\u{1}"));
        let bytes = marked
            .bytes()
            .map(|b| if b == 1 { 0xFF } else { b })
            .collect();
        (bytes, format!("{kept}\u{FFFD}"))
    }

    #[test]
    fn a_model_name_that_is_not_utf8_does_not_cost_the_usage_beside_it() {
        // A server's bytes the meter reads as they came: the model is read as a
        // decoder replaces them, and the usage beside it is kept.
        for (content_type, body, model) in [
            (
                "text/event-stream",
                chat_stream_with_usage(),
                "gpt-4o-mini-2024-07-18",
            ),
            (
                "text/event-stream",
                fixture!("anthropic/messages_stream.txt").to_string(),
                "claude-sonnet-4-20250514",
            ),
            (
                "application/json",
                fixture!("openai/chat_completion.json").to_string(),
                "gpt-4o-mini-2024-07-18",
            ),
        ] {
            let (body, read) = mangled(&body, model);
            assert!(std::str::from_utf8(&body).is_err());
            let mut m = UsageMeter::for_answer(Some(content_type), None).unwrap();
            for piece in body.chunks(7) {
                m.feed(piece);
            }
            let charge = m.finish().unwrap();
            assert!(!charge.estimated, "{content_type}: the usage it reported");
            assert!(
                charge.usage.input > 0 && charge.usage.output > 0,
                "{content_type}"
            );
            assert_eq!(
                m.take_model().as_deref(),
                Some(read.as_str()),
                "{content_type}"
            );
        }
    }

    #[test]
    fn the_answering_model_is_read_from_every_format_however_split() {
        for (content_type, answer, model) in [
            (
                "application/json",
                fixture!("anthropic/messages.json"),
                "claude-sonnet-4-20250514",
            ),
            (
                "text/event-stream",
                fixture!("anthropic/messages_stream.txt"),
                "claude-sonnet-4-20250514",
            ),
            (
                "text/event-stream",
                fixture!("openai/chat_completion_stream.txt"),
                "gpt-4o-mini-2024-07-18",
            ),
            (
                "text/event-stream",
                fixture!("openai/responses_stream.txt"),
                "gpt-4o-mini-2024-07-18",
            ),
        ] {
            for split in [1, 5, usize::MAX] {
                let mut m = UsageMeter::for_answer(Some(content_type), None).unwrap();
                for piece in answer.as_bytes().chunks(split) {
                    m.feed(piece);
                }
                m.finish();
                assert_eq!(
                    m.take_model().as_deref(),
                    Some(model),
                    "{content_type} split {split}"
                );
            }
        }
        let mut m = UsageMeter::for_answer(Some("text/event-stream"), None).unwrap();
        m.feed(b"data: {\"choices\":[]}\n\n");
        assert_eq!(
            m.take_model(),
            None,
            "an answer that names no model has none"
        );
    }

    #[test]
    fn cost_is_priced_per_million_with_cache_defaults() {
        let price = Price {
            input: 2.5,
            output: 10.0,
            cache_read: Some(1.25),
            cache_write: None,
            web_search: Some(10.0),
        };
        let usage = Usage {
            input: 1_000_000,
            output: 500_000,
            cache_read: 2_000_000,
            cache_write: 400_000,
            reasoning: 100_000,
            web_searches: 0,
            cost_nanos: 0,
        };
        // 2.5 + 5.0 + 2.5 + 1.0 (writes at the input price); reasoning is in output.
        assert!((price.cost(&usage) - 11.0).abs() < 1e-9);
        // Each search at $10 per 1,000.
        let searched = Usage {
            web_searches: 3,
            ..usage
        };
        assert!((price.cost(&searched) - 11.03).abs() < 1e-9);
        assert!(!price.leaves_out_searches(&searched));
        let unpriced = Price {
            web_search: None,
            ..price
        };
        assert!((unpriced.cost(&searched) - 11.0).abs() < 1e-9);
        // A batch's discount is on its tokens, not on its searches' fees.
        let batched = searched.cost(Some(&price), 0.5).unwrap();
        assert!((batched - (11.0 / 2.0 + 0.03)).abs() < 1e-9);
        assert!(unpriced.leaves_out_searches(&searched));
        assert!(!unpriced.leaves_out_searches(&usage));
        let reported = Usage {
            cost_nanos: 1,
            ..searched
        };
        assert!(
            !unpriced.leaves_out_searches(&reported),
            "the provider's cost counts them"
        );
    }

    #[test]
    fn a_call_costs_its_price_or_what_the_provider_reported_whichever_is_more() {
        let price = Price {
            input: 1.0,
            output: 2.0,
            cache_read: None,
            cache_write: None,
            web_search: None,
        };
        let usage = Usage {
            input: 1_000_000,
            output: 1_000_000,
            ..Usage::default()
        };
        let cost = |usage: &Usage, price, factor| usage.cost(price, factor).unwrap();
        assert!((cost(&usage, Some(&price), 1.0) - 3.0).abs() < 1e-9);
        assert!((cost(&usage, Some(&price), 0.5) - 1.5).abs() < 1e-9);
        assert_eq!(usage.cost(None, 1.0), None, "nothing known");
        // The provider's count has its fees: more than the price, it stands.
        let reported = Usage {
            cost_nanos: 4_500_000_000,
            ..usage
        };
        assert!((cost(&reported, Some(&price), 1.0) - 4.5).abs() < 1e-9);
        assert!((cost(&reported, None, 1.0) - 4.5).abs() < 1e-9);
        // Less than the price (a discount, a key the provider bills elsewhere): the
        // price stands.
        let cheap = Usage {
            cost_nanos: 1_000_000_000,
            ..usage
        };
        assert!((cost(&cheap, Some(&price), 1.0) - 3.0).abs() < 1e-9);

        // Read from the answer: xAI's ticks, OpenRouter's dollars.
        let xai = br#"{"model":"grok-4","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"cost_in_usd_ticks":37756000}}"#;
        assert_eq!(
            metered("application/json", xai, 7).unwrap().cost_nanos,
            3_775_600
        );
        let openrouter = br#"{"model":"openai/gpt-4o","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"cost":0.0038}}"#;
        assert_eq!(
            metered("application/json", openrouter, 7)
                .unwrap()
                .cost_nanos,
            3_800_000
        );
        // On the operator's own provider key, OpenRouter's `cost` is its fee alone.
        let byok = br#"{"model":"openai/gpt-4o","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"cost":0.001,"is_byok":true,"cost_details":{"upstream_inference_cost":0.019}}}"#;
        assert_eq!(
            metered("application/json", byok, 7).unwrap().cost_nanos,
            20_000_000
        );
        let own = br#"{"model":"openai/gpt-4o","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"cost":0.02,"is_byok":false,"cost_details":{"upstream_inference_cost":0.019}}}"#;
        assert_eq!(
            metered("application/json", own, 7).unwrap().cost_nanos,
            20_000_000
        );
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"cost\":0.25}}\n\ndata: [DONE]\n\n";
        assert_eq!(
            metered("text/event-stream", stream.as_bytes(), 11)
                .unwrap()
                .cost_nanos,
            250_000_000
        );
    }

    /// `stream` fed in pieces of `split` bytes to a meter for an answer to `request`:
    /// what it charges when it ends there, and whether that is estimated.
    fn charged(request: &str, stream: &str, split: usize) -> (Option<Usage>, bool) {
        let charge = charge_with_input("text/event-stream", request, stream, split, false);
        (charge.map(|c| c.usage), charge.is_some_and(|c| c.estimated))
    }

    /// The charge of an answer of `content_type` made of `body`, fed `split` bytes at
    /// a time, then `cut` short or ended whole, its input due estimated from
    /// `request`.
    fn charge_with_input(
        content_type: &str,
        request: &str,
        body: &str,
        split: usize,
        cut: bool,
    ) -> Option<Charge> {
        let mut m = fed_as(content_type, body.as_bytes(), split);
        let charge = if cut { m.cut_short() } else { m.finish() };
        charge.map(|c| c.with_input_of(Some(request.as_bytes()), 0))
    }

    /// 35 characters of text ("user" and the question) and 19 of member names:
    /// [`REQUEST_TOKENS`] input tokens estimated.
    const REQUEST: &str =
        r#"{"messages":[{"role":"user","content":"Count to ten in French, slowly."}]}"#;

    /// The input tokens [`REQUEST`] is estimated at.
    const REQUEST_TOKENS: u64 = (35 + 19_u64).div_ceil(4);

    #[test]
    fn a_chat_stream_cut_before_its_usage_is_charged_the_estimate() {
        let whole = chat_stream_with_usage();
        let cut = &whole[..whole.find(r#""choices":[]"#).unwrap()];
        let cut = &cut[..cut.rfind("data: ").unwrap()];
        let exact = Usage {
            input: 9,
            cache_read: 2,
            output: 4,
            ..Usage::default()
        };
        for split in [1, 7, usize::MAX] {
            assert_eq!(charged(REQUEST, &whole, split), (Some(exact), false));
            // "Hello", ",", " World", "!": 13 characters in 4 events.
            let estimate = Usage {
                input: REQUEST_TOKENS,
                output: 4,
                ..Usage::default()
            };
            assert_eq!(
                charged(REQUEST, cut, split),
                (Some(estimate), true),
                "split {split}"
            );
        }
        // The recorded stream, which the client did not ask the usage of: it ends
        // without it, and is estimated all the same.
        let unasked = fixture!("openai/chat_completion_stream.txt");
        assert_eq!(charged(REQUEST, unasked, 64), charged(REQUEST, cut, 64));
    }

    #[test]
    fn a_stream_cut_after_its_usage_is_charged_what_it_reported() {
        let whole = chat_stream_with_usage();
        let cut = &whole[..whole.find("data: [DONE]").unwrap()];
        let exact = Usage {
            input: 9,
            cache_read: 2,
            output: 4,
            ..Usage::default()
        };
        assert_eq!(charged(REQUEST, cut, 5), (Some(exact), false));
    }

    #[test]
    fn an_anthropic_stream_cut_short_keeps_its_reported_input_and_estimates_its_output() {
        let stream = fixture!("anthropic/messages_stream.txt");
        let whole = Usage {
            input: 10,
            output: 5,
            ..Usage::default()
        };
        assert_eq!(charged(REQUEST, stream, 9), (Some(whole), false));
        let cut = &stream[..stream.find("event: content_block_stop").unwrap()];
        // message_start's input; "Hello World", 11 characters, over its count of 3.
        let estimate = Usage {
            input: 10,
            output: 3,
            ..Usage::default()
        };
        assert_eq!(charged(REQUEST, cut, 9), (Some(estimate), true));
        let longer = cut.replace("Hello World", "Hello World, and all who live in it");
        assert_eq!(charged(REQUEST, &longer, 9).0.map(|u| u.output), Some(9));
        // Cut before any text: what message_start reported.
        let start = &stream[..stream.find("event: content_block_delta").unwrap()];
        let reported = Usage {
            input: 10,
            output: 3,
            ..Usage::default()
        };
        assert_eq!(charged(REQUEST, start, 9), (Some(reported), false));
    }

    #[test]
    fn a_responses_stream_is_estimated_until_it_completes() {
        let stream = fixture!("openai/responses_stream.txt");
        let (whole, estimated) = charged(REQUEST, stream, 11);
        assert_eq!((whole.unwrap().input, whole.unwrap().output), (17, 5));
        assert!(!estimated);
        let cut = &stream[..stream.find("event: response.output_text.done").unwrap()];
        let (usage, estimated) = charged(REQUEST, cut, 11);
        assert!(estimated);
        assert_eq!(
            usage.map(|u| u.input),
            Some(REQUEST_TOKENS),
            "the request's estimate"
        );
        assert!(usage.is_some_and(|u| u.output > 0), "{usage:?}");
    }

    #[test]
    fn zeros_a_server_sends_are_no_count() {
        let chunk = |delta: &str, usage: &str| {
            format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{delta}\"}}}}],\"usage\":{usage}}}\n\n"
            )
        };
        let zero = r#"{"prompt_tokens":0,"completion_tokens":0}"#;
        // Zeros first, then text, then cut: the request's input and the text's output.
        let early = format!("{}{}", chunk("", zero), chunk("Hello there", "null"));
        let estimate = Usage {
            input: REQUEST_TOKENS,
            output: 3,
            ..Usage::default()
        };
        assert_eq!(charged(REQUEST, &early, 7), (Some(estimate), true));
        // Zeros with every chunk, text too.
        let every = format!("{}{}", chunk("Hello there", zero), chunk("!", zero));
        let estimate = Usage {
            input: REQUEST_TOKENS,
            output: 3,
            ..Usage::default()
        };
        assert_eq!(charged(REQUEST, &every, 7), (Some(estimate), true));
        // A running count with every chunk is the count.
        let running = format!(
            "{}{}",
            chunk(
                "Hello there",
                r#"{"prompt_tokens":5,"completion_tokens":2}"#
            ),
            chunk("!", r#"{"prompt_tokens":5,"completion_tokens":3}"#)
        );
        let counted = Usage {
            input: 5,
            output: 3,
            ..Usage::default()
        };
        assert_eq!(charged(REQUEST, &running, 7), (Some(counted), false));
    }

    #[test]
    fn a_whole_answer_cut_short_is_charged_an_estimate_and_one_ended_is_not() {
        let answer = fixture!("openai/chat_completion.json").as_bytes();
        let text_ends = answer.windows(9).position(|w| w == b"\"refusal\"").unwrap();
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        m.feed(&answer[..text_ends]);
        let charge = m.cut_short().unwrap();
        assert!(charge.estimated);
        let content = serde_json::from_slice::<serde_json::Value>(answer).unwrap()["choices"][0]
            ["message"]["content"]
            .as_str()
            .unwrap()
            .chars()
            .count() as u64;
        // The request the gateway read, or else its size.
        let read = charge.with_input_of(Some(REQUEST.as_bytes()), 0).usage;
        assert_eq!(
            (read.input, read.output),
            (REQUEST_TOKENS, content.div_ceil(4))
        );
        let sized = charge.with_input_of(None, 400).usage;
        assert_eq!(sized.input, 100);
        // Cut before anything passed, or ended: as reported.
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        assert_eq!(m.cut_short(), None);
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        m.feed(&answer[..10]);
        let whole = m.finish_with(&answer[10..]).unwrap();
        assert!(!whole.estimated);
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        m.feed(br#"{"id":"x","choices":[]"#);
        assert_eq!(m.finish_with(b"}"), None, "no usage reported is none");
    }

    #[test]
    fn white_space_before_a_whole_answer_is_not_some_of_it() {
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        m.feed(b"\n\n \n");
        assert_eq!(m.so_far(), None);
        assert_eq!(m.cut_short(), None);
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        m.feed(b"\n{\"data\":[");
        let under_way = m.so_far().unwrap();
        assert!(under_way.is_cut_whole() && under_way.usage == Usage::default());
        // Its input by the request's size, at most a large context window's worth.
        assert_eq!(under_way.with_input_of(None, 400).usage.input, 100);
        assert_eq!(
            under_way.with_input_of(None, 1 << 30).usage.input,
            MAX_SIZED_INPUT
        );
        assert!(m.cut_short().unwrap().estimated);
    }

    #[test]
    fn a_stream_that_carried_no_text_nor_usage_is_charged_nothing() {
        let empty = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n";
        assert_eq!(charged(REQUEST, empty, 3), (None, false));
        let ended = format!("{empty}data: [DONE]\n\n");
        assert_eq!(charged(REQUEST, &ended, 3), (None, false));
        // A call's too, whole, or failed in its stream: events the meter reads (JSON
        // objects) are not counted by their size.
        let failed = "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
        for events in [ended.as_str(), failed] {
            let mut m = UsageMeter::for_answer(Some("text/event-stream"), None).unwrap();
            m.may_answer_a_call();
            m.feed(events.as_bytes());
            assert_eq!(m.finish(), None, "{events}");
        }
    }

    #[test]
    fn a_stream_whose_request_the_gateway_did_not_read_estimates_its_output_only() {
        let unasked = fixture!("openai/chat_completion_stream.txt");
        let mut m = UsageMeter::for_answer(Some("text/event-stream"), None).unwrap();
        m.feed(unasked.as_bytes());
        let charge = m.finish().unwrap().with_input_of(None, 4000);
        assert_eq!(
            charge.usage,
            Usage {
                output: 4,
                ..Usage::default()
            }
        );
        assert!(charge.estimated);
    }

    #[test]
    fn only_events_naming_a_usage_that_is_not_null_are_parsed_for_it() {
        for (data, named) in [
            (&br#"{"choices":[],"usage":null}"#[..], false),
            (br#"{"usage" : null ,"x":1}"#, false),
            (br#"{"type":"usage","n":"\"usage\": 1"}"#, false),
            (br#"{"usage":{"prompt_tokens":1}}"#, true),
            (
                br#"{"response":{"usage":null},"usage":{"input_tokens":2}}"#,
                true,
            ),
            (br#"{"usage":"#, false),
            (br#""usage""#, false),
        ] {
            assert_eq!(
                names_usage(data),
                named,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn a_calls_answer_in_a_format_the_meter_does_not_read_is_estimated_by_its_size() {
        let call = |content_type: &str| {
            let mut m = UsageMeter::for_answer(Some(content_type), None).unwrap();
            m.may_answer_a_call();
            m
        };
        // A stream of JSPB arrays, read to its end or left: the size of its data.
        let data = r#"[[[[["Hello there"]],"model"]]]"#;
        let events = format!("data: {data}\r\n\r\ndata: {data}\r\n\r\n");
        let mut m = call("text/event-stream");
        m.feed(events.as_bytes());
        let charged = m.finish().unwrap();
        assert!(charged.is_unreported());
        assert_eq!(charged.usage.output, (2 * data.len() as u64).div_ceil(4));
        let mut left = call("text/event-stream");
        left.feed(events.as_bytes());
        assert_eq!(left.cut_short(), Some(charged));
        // Not a call's answer (a batch's events, a file's): nothing.
        let mut other = UsageMeter::for_answer(Some("text/event-stream"), None).unwrap();
        other.feed(events.as_bytes());
        assert_eq!(other.finish(), None);
        // OpenAI's closing `[DONE]`, and blank data, are no unread answer.
        let mut done = call("text/event-stream");
        done.feed(b"data: [DONE]\n\ndata: \n\n");
        assert_eq!(done.finish(), None);
        // Lines that are not objects.
        let mut lines = call("application/x-ndjson");
        lines.feed(format!("{data}\n{data}\n").as_bytes());
        assert_eq!(lines.finish(), Some(charged));

        // A JSPB answer its client leaves near its end: its size so far, standing
        // only when the client left.
        let jspb =
            r#"[[[[["Hello there, general Kenobi"]],"model"],1]],[10,12,22],"gemini-2.5-flash"]"#;
        let mut cut = call("application/json+protobuf");
        cut.feed(&jspb.as_bytes()[..60]);
        let charged = cut.cut_short().unwrap();
        assert!(charged.is_cut_whole());
        assert_eq!(charged.usage.output, 15);
    }

    #[test]
    fn no_usage_reported_is_none_not_zero() {
        assert_eq!(usage_of_json(br#"{"id":"x","choices":[]}"#), None);
        assert_eq!(
            metered(
                "text/event-stream",
                b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
                5
            ),
            None
        );
        assert_eq!(usage_of_json(b"not json"), None);
    }

    #[test]
    fn compressed_and_binary_answers_are_not_metered() {
        assert!(UsageMeter::for_answer(Some("application/json"), Some("gzip")).is_none());
        assert!(UsageMeter::for_answer(Some("audio/mpeg"), None).is_none());
        assert!(UsageMeter::for_answer(None, None).is_none());
        assert!(
            UsageMeter::for_answer(Some("application/json; charset=utf-8"), Some("identity"))
                .is_some()
        );
    }

    /// `body` fed in pieces of `piece` bytes.
    fn fed(body: &[u8], piece: usize) -> (Option<Usage>, Option<String>) {
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        for p in body.chunks(piece) {
            m.feed(p);
        }
        let usage = m.finish().map(|c| c.usage);
        (usage, m.take_model())
    }

    #[test]
    fn an_answer_too_large_to_hold_is_read_from_its_ends() {
        let large = "x".repeat(MAX_METERED_JSON + 1024);
        let usage = r#""usage":{"prompt_tokens":8,"completion_tokens":5}"#;
        let expected = Some(Usage {
            input: 8,
            output: 5,
            ..Usage::default()
        });
        // A Chat answer: model at the front, usage at the back.
        let chat = format!(
            r#"{{"id":"c","model":"gpt-4o","choices":[{{"message":{{"content":"{large}"}}}}],{usage},"system_fingerprint":"fp"}}"#
        );
        // Embeddings: the model after the vectors, just before the usage.
        let vectors = vec!["[0.0123,-0.98]"; MAX_METERED_JSON / 10].join(",");
        let embeddings = format!(
            r#"{{"object":"list","data":[{vectors}],"model":"text-embedding-3-small",{usage}}}"#
        );
        for (body, model) in [(&chat, "gpt-4o"), (&embeddings, "text-embedding-3-small")] {
            for piece in [16 * 1024, 3 * KEPT_TAIL] {
                let (read, named) = fed(body.as_bytes(), piece);
                assert_eq!(read, expected, "{model}, pieces of {piece}");
                assert_eq!(named.as_deref(), Some(model), "pieces of {piece}");
            }
            // Whole where it lies: read without a copy, whatever its length.
            assert_eq!(usage_of_json(body.as_bytes()), expected, "{model}");
        }
        // Usage in the kept head is read as well, after the model or before it;
        // between the kept ends it is not.
        for front in [
            format!(r#"{{{usage},"content":"{large}"}}"#),
            format!(r#"{{"id":"r","model":"gpt-4o",{usage},"content":"{large}"}}"#),
        ] {
            assert_eq!(fed(front.as_bytes(), 16 * 1024).0, expected);
        }
        // A first piece past the limit on its own still leaves the head to read.
        let (read, named) = fed(chat.as_bytes(), chat.len());
        assert_eq!((read, named.as_deref()), (expected, Some("gpt-4o")));
        let (read, named) = fed(chat.as_bytes(), MAX_METERED_JSON - 1);
        assert_eq!((read, named.as_deref()), (expected, Some("gpt-4o")));
        let middle = format!(r#"{{"a":"{large}",{usage},"content":"{large}"}}"#);
        assert_eq!(fed(middle.as_bytes(), 16 * 1024).0, None);
    }

    #[test]
    fn an_answer_ending_with_its_last_piece_reads_as_one_fed_whole() {
        let body = fixture!("anthropic/messages.json").as_bytes();
        let whole = metered("application/json", body, usize::MAX);
        assert!(whole.is_some());
        for split in [1, 100, body.len() - 1, body.len()] {
            let (head, last) = body.split_at(split.min(body.len()));
            let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
            if !head.is_empty() {
                m.feed(head);
            }
            assert_eq!(
                m.finish_with(last).map(|c| c.usage),
                whole,
                "split at {split}"
            );
            assert_eq!(m.take_model().as_deref(), Some("claude-sonnet-4-20250514"));
        }
        let stream = fixture!("openai/chat_completion_stream.txt").as_bytes();
        let (head, last) = stream.split_at(stream.len() / 2);
        let mut m = UsageMeter::for_answer(Some("text/event-stream"), None).unwrap();
        m.feed(head);
        assert_eq!(
            m.finish_with(last).map(|c| c.usage),
            metered("text/event-stream", stream, usize::MAX)
        );
    }

    #[test]
    fn the_content_between_model_and_usage_is_not_read() {
        // The content is left to the client: a whole answer is metered from its ends,
        // so what lies between its model and its usage is not even parsed (an escape
        // JSON does not have, here, would fail a parse of the whole document).
        let body = br#"{"id":"x","model":"gpt-4o","choices":[{"message":{"content":"\q"}}],
            "usage":{"prompt_tokens":7,"completion_tokens":3},"system_fingerprint":"fp"}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        assert_eq!(
            m.finish_with(body).map(|c| (c.usage.input, c.usage.output)),
            Some((7, 3))
        );
        assert_eq!(m.take_model().as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn a_whole_answer_reads_its_usage_and_model_wherever_they_sit() {
        for body in [
            // Usage first and model last: the ends are read until both are found.
            r#"{"usage":{"input_tokens":2,"output_tokens":3},"content":[],"model":"m"}"#,
            // Only inside `message`, as Anthropic's stream starts.
            r#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":2,"output_tokens":3}}}"#,
            // Only inside `response`, as the Responses API's events carry them.
            r#"{"type":"response.completed","response":{"model":"m","usage":{"input_tokens":2,"output_tokens":3}},"n":1}"#,
            // Keys written with escapes, and white space everywhere.
            "\n { \"mod\\u0065l\" : \"m\" , \"usage\" :\t{\"input_tokens\":2,\"output_tokens\":3} }\n",
        ] {
            let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
            let usage = m.finish_with(body.as_bytes()).map(|c| c.usage);
            assert_eq!(usage.map(|u| (u.input, u.output)), Some((2, 3)), "{body}");
            assert_eq!(m.take_model().as_deref(), Some("m"), "{body}");
        }
        // A usage that is not a usage object gives none, as it did read whole.
        assert_eq!(usage_of_json(br#"{"usage":[1,2],"model":"m"}"#), None);
        assert_eq!(usage_of_json(br#"{"usage":null,"id":"x"}"#), None);
    }

    #[test]
    fn usage_and_model_inside_the_content_are_not_taken_for_the_answers() {
        // A tool's input is the model's to write: only the answer's own members count.
        let whole = br#"{"model":"m","content":[{"type":"tool_use","input":{"model":"fake",
            "usage":{"input_tokens":999,"output_tokens":999}}}],"usage":{"input_tokens":2,"output_tokens":3}}"#;
        let mut m = UsageMeter::for_answer(Some("application/json"), None).unwrap();
        assert_eq!(
            m.finish_with(whole)
                .map(|c| (c.usage.input, c.usage.output)),
            Some((2, 3))
        );
        assert_eq!(m.take_model().as_deref(), Some("m"));
        let stream = concat!(
            "event: content_block_delta\n",
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"usage\":{\"input_tokens\":9"}}"#,
            "\n\nevent: message_delta\n",
            r#"data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":4}}"#,
            "\n\n"
        );
        let usage = metered("text/event-stream", stream.as_bytes(), 7).unwrap();
        assert_eq!((usage.input, usage.output), (0, 4));
    }

    #[test]
    fn content_types_are_matched_in_any_case() {
        let body = br#"{"usage":{"input_tokens":2,"output_tokens":3}}"#;
        for ct in ["Application/JSON; charset=utf-8", "  application/json"] {
            assert_eq!(metered(ct, body, 7).map(|u| u.output), Some(3), "{ct}");
        }
        assert!(UsageMeter::for_answer(Some("TEXT/Event-Stream"), None).is_some());
        assert!(UsageMeter::for_answer(Some("application/js"), None).is_none());
        assert!(UsageMeter::for_answer(Some("é"), None).is_none());
    }
}
