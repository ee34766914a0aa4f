//! Answers generated apart from the request that reads them: a Responses API response
//! run in the background (`"background": true`), an OpenAI batch (its object, or its
//! output file), an Anthropic message batch's results, a Gemini batch (its operation,
//! or its responses file). The call that starts one is answered without its usage;
//! the usage comes with whichever request reads it complete (a poll, a resumed
//! stream, the results), and it may be read again as often as the client likes. So
//! its usage is charged once, by the first request that reads it whole, and each is
//! known by a digest of its id wherever that is remembered.

use sha2::{Digest, Sha256};

use super::usage::Usage;

/// What is remembered of an answer charged: a digest of its kind and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnswerKey([u8; 16]);

impl AnswerKey {
    fn of(kind: &[u8], id: &[u8]) -> Self {
        let mut digest = Sha256::new();
        digest.update(kind);
        digest.update([0]);
        digest.update(id);
        let mut key = [0; 16];
        key.copy_from_slice(&digest.finalize()[..16]);
        Self(key)
    }

    /// The digest in hexadecimal, for a key in a shared store.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// An answer generated apart from the request that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredAnswer {
    key: AnswerKey,
    batch: bool,
    whole: bool,
    /// Known by what it reports as well as by its name, once read
    /// ([`Self::known_by`]).
    by_usage: bool,
    /// For one known by what it reports too: its name where it was read, which a read
    /// in part asks after.
    name: Option<AnswerKey>,
}

impl DeferredAnswer {
    /// A background response whose `id` member has the JSON text `raw_id`, as its
    /// provider wrote it (every answer of one provider writes an id alike).
    pub fn background_response(raw_id: &[u8]) -> Self {
        let raw_id = raw_id.trim_ascii();
        Self::background_response_named(unquoted(raw_id).unwrap_or(raw_id))
    }

    /// The background response `id` (as a path names it: `responses/{id}`).
    pub fn background_response_named(id: &[u8]) -> Self {
        Self {
            key: AnswerKey::of(b"response", id),
            batch: false,
            whole: true,
            by_usage: false,
            name: None,
        }
    }

    /// An OpenAI batch whose `id` and `output_file_id` members have the JSON texts
    /// `raw_id` and `raw_output`; its object reports the usage of all its requests
    /// once it has ended, as its output file does line by line: both are the batch's
    /// output, known by the file when it has one, so that reading one and then the
    /// other charges it once.
    pub fn batch(raw_id: &[u8], raw_output: Option<&[u8]>) -> Self {
        let output = raw_output.map(<[u8]>::trim_ascii).and_then(unquoted);
        match output {
            Some(file) => Self::batch_output(file),
            None => Self {
                key: AnswerKey::of(b"batch", raw_id.trim_ascii()),
                batch: true,
                whole: true,
                by_usage: false,
                name: None,
            },
        }
    }

    /// A Gemini batch `id` (as its operation's `batches/{id}` names it), whose
    /// responses are inlined in its operation (one that names a responses file
    /// instead reports no usage: [`Self::gemini_responses`] does).
    pub fn gemini_batch(id: &[u8]) -> Self {
        Self {
            key: AnswerKey::of(b"gemini-batch", id),
            batch: true,
            whole: true,
            by_usage: false,
            name: None,
        }
    }

    /// The responses file `file` of a Gemini batch (`files/{file}:download`) read at
    /// `provider`, known by its name and, once read, the usage it reports
    /// ([`Self::known_by`]): Gemini lets whoever uploads a file name it, so a file of
    /// that name in another project is another file, told apart by what it holds,
    /// whichever key reads it. A read in part (which reports less) asks after its name
    /// at that provider alone.
    pub fn gemini_responses(file: &[u8], provider: &str) -> Self {
        let mut at = provider.as_bytes().to_vec();
        at.push(0);
        at.extend_from_slice(file);
        Self {
            key: AnswerKey::of(b"gemini-responses", file),
            batch: true,
            whole: true,
            by_usage: true,
            name: Some(AnswerKey::of(b"gemini-responses-at", &at)),
        }
    }

    /// The answer as known once read, reporting `usage` (`by_model`: of each model
    /// its lines named): for one known by its usage as well as its name
    /// ([`Self::gemini_responses`]), both; for any other, as it is. A file of
    /// another's name charges only what it reports, at its models' prices, so it can
    /// be known as read only by reporting the same.
    pub fn known_by(self, usage: &Usage, by_model: &[(String, Usage)]) -> Self {
        if !self.by_usage {
            return self;
        }
        let mut id = self.key.0.to_vec();
        let counts = |id: &mut Vec<u8>, u: &Usage| {
            for count in [u.input, u.output, u.cache_read, u.cache_write, u.reasoning] {
                id.extend_from_slice(&count.to_le_bytes());
            }
        };
        counts(&mut id, usage);
        let mut models: Vec<_> = by_model.iter().collect();
        models.sort_by(|a, b| a.0.cmp(&b.0));
        for (model, usage) in models {
            id.extend_from_slice(model.as_bytes());
            id.push(0);
            counts(&mut id, usage);
        }
        Self {
            key: AnswerKey::of(b"gemini-responses-read", &id),
            by_usage: false,
            ..self
        }
    }

    /// Whether it is known by its name alone, before it is read (not by what it
    /// reports: [`Self::known_by`]).
    pub fn known_by_name(&self) -> bool {
        !self.by_usage
    }

    /// What a read of it in part asks after: whether it was charged whole, by its name
    /// when it is known by what it reports too (a part reports less).
    pub fn part_read_key(&self) -> &AnswerKey {
        self.name.as_ref().unwrap_or(&self.key)
    }

    /// Its name, marked charged too when it is charged whole, for reads in part; never
    /// asked by a whole read or a poll (a file of its name in another project could
    /// have marked it).
    pub fn name_mark(&self) -> Option<&AnswerKey> {
        self.name.as_ref()
    }

    /// The output file `file` of an OpenAI batch, read whole: known as its batch
    /// object and a read of `files/{file}/content` know it.
    pub fn batch_output(file: &[u8]) -> Self {
        Self {
            key: AnswerKey::of(b"batch-output", file),
            batch: true,
            whole: true,
            by_usage: false,
            name: None,
        }
    }

    /// The results of a batch a `/p/` `endpoint` reads, if it reads them: at an
    /// Anthropic-format provider (`anthropic`) a message batch's results
    /// (`[v1/]messages/batches/{id}/results`), at another an OpenAI batch's output
    /// file (`[v1/]files/{id}/content`: a file of any other kind reports no usage) or,
    /// at a Gemini provider (`gemini`, by name), a Gemini batch's responses file
    /// (`[download/][v1beta/]files/{id}:download`). A line per request, each with its
    /// usage, read whole or in part.
    pub fn batch_results(endpoint: &str, anthropic: bool, gemini: Option<&str>) -> Option<Self> {
        if let Some((provider, file)) = gemini.zip(gemini_download(endpoint)) {
            return Some(Self::gemini_responses(file.as_bytes(), provider));
        }
        // Empty segments left out: a provider may read `files//x` as `files/x`.
        let mut parts = endpoint.rsplit('/').filter(|p| !p.is_empty());
        let key = match (parts.next(), parts.next(), parts.next(), anthropic) {
            (Some("results"), Some(id), Some("batches"), true)
                if !id.is_empty() && parts.next() == Some("messages") =>
            {
                AnswerKey::of(b"batch-results", id.as_bytes())
            }
            (Some("content"), Some(id), Some("files"), false) if !id.is_empty() => {
                AnswerKey::of(b"batch-output", id.as_bytes())
            }
            _ => return None,
        };
        if !matches!(parts.next(), None | Some("v1")) || parts.next().is_some() {
            return None;
        }
        Some(Self {
            key,
            batch: true,
            whole: true,
            by_usage: false,
            name: None,
        })
    }

    /// The results of the Anthropic message batch `id`, read whole: known as a read
    /// of `messages/batches/{id}/results` knows them.
    pub fn message_batch_results(id: &str) -> Self {
        Self {
            key: AnswerKey::of(b"batch-results", id.as_bytes()),
            batch: true,
            whole: true,
            by_usage: false,
            name: None,
        }
    }

    /// What is remembered of it once charged.
    pub fn key(&self) -> &AnswerKey {
        &self.key
    }

    /// Its usage was made by a batch, which providers price at half their rate.
    pub fn is_batch(&self) -> bool {
        self.batch
    }

    /// It was read whole: the request that read it is charged its usage only when no
    /// request did before, and is remembered as having done so. One read in part
    /// (the client left) is charged what it read, and not remembered.
    pub fn read_whole(&self) -> bool {
        self.whole
    }

    /// The same answer, read only in part.
    pub fn in_part(self) -> Self {
        Self {
            whole: false,
            ..self
        }
    }
}

/// Work a call started that goes on apart from it (a background response, a batch),
/// by the id its answer gave: its usage comes later, with whichever read finds it
/// ended, and the gateway reads it itself when no client does (`proxy::deferred_poll`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedApart {
    /// Its id, a plain token (`resp_…`, `batch_…`, `msgbatch_…`) safe as a path
    /// segment.
    pub id: String,
    /// What kind of work it is.
    pub kind: ApartKind,
}

/// The kinds of work a call starts apart from itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApartKind {
    /// A Responses API response run in the background: its object reports its usage
    /// once it has ended.
    Response,
    /// An OpenAI batch: its object reports the usage of all its requests once ended.
    Batch,
    /// An Anthropic message batch: its object says when it has ended, its results
    /// (a line per request) what each used.
    MessageBatch,
    /// A Gemini batch (`models/{model}:batchGenerateContent`): its operation says when
    /// it has ended, and holds its responses (each with its usage) or names the file
    /// that does.
    GeminiBatch,
}

impl StartedApart {
    /// The work of `kind` whose `id` member has the JSON text `raw_id`; `None` for an
    /// id that is not a plain token of at most 200 letters, digits, `_` and `-`.
    pub fn of(raw_id: &[u8], kind: ApartKind) -> Option<Self> {
        Self::named(unquoted(raw_id.trim_ascii())?, kind)
    }

    /// The work of `kind` whose id is `id`, under the same rule as [`Self::of`].
    pub fn named(id: &[u8], kind: ApartKind) -> Option<Self> {
        let plain = id.len() <= 200
            && id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        plain.then(|| Self {
            id: String::from_utf8_lossy(id).into_owned(),
            kind,
        })
    }
}

/// The file a Gemini download names: `files/{id}:download`, below `v1`, `v1beta` or
/// `v1alpha`, each maybe below `download/` (where Google's REST reference puts it).
fn gemini_download(endpoint: &str) -> Option<&str> {
    let mut parts = endpoint.rsplit('/').filter(|p| !p.is_empty());
    let file = parts.next()?.strip_suffix(":download")?;
    if parts.next()? != "files" || file.is_empty() {
        return None;
    }
    let version = |p: &str| matches!(p, "v1" | "v1beta" | "v1alpha");
    let rest: Vec<&str> = parts.collect();
    let below = match rest.as_slice() {
        [] => true,
        [v] => version(v),
        [v, "download"] => version(v),
        _ => false,
    };
    below.then_some(file)
}

/// The text of a JSON string written without escapes (ids are), else `None`.
pub(crate) fn unquoted(raw: &[u8]) -> Option<&[u8]> {
    raw.strip_prefix(b"\"")?
        .strip_suffix(b"\"")
        .filter(|text| !text.is_empty() && !text.contains(&b'\\'))
}

/// What a batch's tokens cost against the model's price: OpenAI's, Anthropic's and
/// Gemini's batches are billed at half.
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_batchs_results_are_known_alike_however_they_are_named() {
        assert_eq!(
            Some(DeferredAnswer::message_batch_results("msgbatch_1")),
            DeferredAnswer::batch_results("v1/messages/batches/msgbatch_1/results", true, None)
        );
        assert_eq!(
            Some(DeferredAnswer::message_batch_results("msgbatch_1")),
            DeferredAnswer::batch_results("messages/batches/msgbatch_1/results", true, None)
        );
    }

    #[test]
    fn work_started_apart_is_known_by_a_plain_id_only() {
        let started = StartedApart::of(br#" "resp_68a1-x" "#, ApartKind::Response).unwrap();
        assert_eq!(started.id, "resp_68a1-x");
        assert_eq!(
            StartedApart::of(br#""batch_1""#, ApartKind::Batch)
                .unwrap()
                .kind,
            ApartKind::Batch
        );
        for raw in [
            &br#""../files""#[..],
            br#""resp?x=1""#,
            br#""resp\u0031""#,
            br#""""#,
            b"resp_1",
            b"null",
        ] {
            assert_eq!(StartedApart::of(raw, ApartKind::Response), None, "{raw:?}");
        }
        assert!(StartedApart::of(
            format!("\"{}\"", "r".repeat(201)).as_bytes(),
            ApartKind::Response
        )
        .is_none());
    }

    #[test]
    fn an_answer_is_known_by_its_kind_and_id_alone() {
        let one = DeferredAnswer::background_response(br#""resp_68a1""#);
        assert_eq!(
            one,
            DeferredAnswer::background_response(br#" "resp_68a1" "#)
        );
        assert_ne!(one, DeferredAnswer::background_response(br#""resp_68a2""#));
        assert_ne!(
            one.key(),
            DeferredAnswer::batch(br#""resp_68a1""#, None).key()
        );
        // A batch's object and its output file are one output.
        assert_eq!(
            DeferredAnswer::batch(br#""batch_1""#, Some(br#""file-out""#)),
            DeferredAnswer::batch_results("v1/files/file-out/content", false, None).unwrap()
        );
        assert_eq!(
            DeferredAnswer::batch(br#""batch_1""#, Some(b"null")),
            DeferredAnswer::batch(br#""batch_1""#, None)
        );
        assert_eq!(one.key().hex().len(), 32);
        assert!(!one.key().hex().contains("resp"));
        // A path names it as its answers do.
        assert_eq!(one, DeferredAnswer::background_response_named(b"resp_68a1"));
    }

    #[test]
    fn a_gemini_batchs_responses_file_is_known_by_its_name_and_what_it_reports() {
        let named = DeferredAnswer::gemini_responses(b"batch-out", "gemini");
        for endpoint in [
            "files/batch-out:download",
            "v1beta/files/batch-out:download",
            "download/v1beta/files/batch-out:download",
            "v1/files/batch-out:download",
        ] {
            let read = DeferredAnswer::batch_results(endpoint, false, Some("gemini"));
            assert_eq!(read, Some(named), "{endpoint}");
        }
        for other in [
            "files/batch-out",
            "files/:download",
            "x/files/batch-out:download",
            "download/files/batch-out:download",
            "v2/files/batch-out:download",
        ] {
            assert_eq!(
                DeferredAnswer::batch_results(other, false, Some("gemini")),
                None,
                "{other}"
            );
        }
        // Not at a Gemini provider.
        assert_eq!(
            DeferredAnswer::batch_results("files/batch-out:download", false, None),
            None
        );
        // Once read: a file of that name reporting other usage is another file.
        let usage = |input| Usage {
            input,
            ..Default::default()
        };
        let read = named.known_by(&usage(900), &[]);
        assert_eq!(read, named.known_by(&usage(900), &[]));
        assert_ne!(read, named.known_by(&usage(1), &[]));
        assert_ne!(read.key(), named.key());
        assert_eq!(read.known_by(&usage(1), &[]), read, "known once");
        // Nor one reporting the same counts of another model.
        let of = |model: &str| vec![(model.to_string(), usage(900))];
        let priced = named.known_by(&usage(900), &of("gemini-2.5-pro"));
        assert_ne!(priced, named.known_by(&usage(900), &of("cheap")));
        // A read in part asks after the name at its provider, which a whole read marks.
        assert_eq!(priced.part_read_key(), named.name_mark().unwrap());
        let elsewhere = DeferredAnswer::gemini_responses(b"batch-out", "gemini-b");
        assert_ne!(elsewhere.name_mark(), named.name_mark());
        let (a, b) = (
            elsewhere.known_by(&usage(900), &[]),
            named.known_by(&usage(900), &[]),
        );
        assert_eq!(
            a.key(),
            b.key(),
            "one file, whichever provider reads it whole"
        );
        let openai = DeferredAnswer::batch_output(b"file-1");
        assert_eq!(openai.known_by(&usage(1), &[]), openai);
        // Inlined responses: known by the batch, apart from any other kind's id.
        let inlined = DeferredAnswer::gemini_batch(b"b1");
        assert!(inlined.is_batch() && inlined.read_whole());
        assert_ne!(inlined.key(), DeferredAnswer::batch(br#""b1""#, None).key());
        assert_ne!(inlined, DeferredAnswer::gemini_batch(b"b2"));
    }

    #[test]
    fn a_batchs_results_are_told_by_their_endpoint() {
        let read =
            DeferredAnswer::batch_results("v1/messages/batches/msgbatch_01/results", true, None)
                .unwrap();
        assert!(read.is_batch() && read.read_whole());
        assert_eq!(
            Some(read),
            DeferredAnswer::batch_results("messages/batches/msgbatch_01/results/", true, None)
        );
        assert_ne!(
            Some(read),
            DeferredAnswer::batch_results("v1/messages/batches/msgbatch_02/results", true, None)
        );
        assert!(DeferredAnswer::batch_results("files/file-1/content", false, None).is_some());
        for (other, anthropic) in [
            ("v1/messages/batches/msgbatch_01", true),
            ("v1/messages/batches//results", true),
            ("v1/messages", true),
            ("v1/other/messages/batches/msgbatch_01/results", true),
            ("results", true),
            ("v1/messages/batches/msgbatch_01/results", false),
            ("files/file-1/content", true),
            ("files//content", false),
            ("files/content", false),
            ("x/files/file-1/content", false),
        ] {
            assert_eq!(
                DeferredAnswer::batch_results(other, anthropic, None),
                None,
                "{other}"
            );
        }
    }
}
