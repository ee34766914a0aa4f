//! Golden tests of the translation core: every recorded provider answer (JSON and
//! SSE) through the provider's decoder and every client encoder that can face it,
//! compared byte for byte with the answer kept under `tests/fixtures/golden/`. A
//! stream must give the same bytes however the provider's bytes are split.
//!
//! After a deliberate change of output, `AURORA_BLESS=1 cargo nextest run --test
//! translation_golden` rewrites the golden files; review their diff.

use std::path::PathBuf;
use std::sync::Arc;

use aurora::translate::responses::{ResponsesOptions, ToolNames};
use aurora::translate::{ClientEncoder, ProviderDecoder, ResponseCodecs, ResponseTranslator};
use pingora_http::ResponseHeader;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The client encoders a provider's answer can meet, by name.
fn clients(provider: &ProviderDecoder) -> Vec<(&'static str, ClientEncoder)> {
    let responses = ClientEncoder::Responses {
        options: ResponsesOptions {
            id: "resp_golden".into(),
            model: "client-model".into(),
            created_at: 1_700_000_000,
            tool_names: Arc::new(ToolNames::default()),
            include_encrypted_reasoning: true,
            echo: String::new(),
        },
        on_completed: None,
        omitted_tools: None,
    };
    match provider {
        ProviderDecoder::Messages => vec![
            (
                "chat",
                ClientEncoder::Chat {
                    model: "client-model".into(),
                    created: 1_700_000_000,
                    include_usage: true,
                },
            ),
            ("responses", responses),
        ],
        ProviderDecoder::Chat => vec![
            (
                "messages",
                ClientEncoder::Messages {
                    model: "client-model".into(),
                },
            ),
            ("responses", responses),
        ],
    }
}

/// The client's bytes for a provider answer fed in pieces of `split` bytes
/// (`usize::MAX`: whole).
fn translate(translation: &ResponseCodecs, body: &[u8], stream: bool, split: usize) -> Vec<u8> {
    let mut t = ResponseTranslator::new(translation.clone());
    let mut header = ResponseHeader::build(200, None).unwrap();
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    header.insert_header("content-type", content_type).unwrap();
    t.on_header(&mut header).unwrap();
    let mut out = Vec::new();
    for piece in body.chunks(split.min(body.len().max(1))) {
        out.extend_from_slice(&t.on_body(Some(piece), false));
    }
    out.extend_from_slice(&t.on_body(None, true));
    out
}

/// Every recorded answer: (provider decoder, fixture path, is a stream).
fn recorded() -> Vec<(ProviderDecoder, String, bool)> {
    let mut out = Vec::new();
    for (dir, decoder) in [
        ("anthropic", ProviderDecoder::Messages),
        ("openai", ProviderDecoder::Chat),
        ("groq", ProviderDecoder::Chat),
        ("xai", ProviderDecoder::Chat),
        ("gemini", ProviderDecoder::Chat),
    ] {
        let mut names: Vec<String> = std::fs::read_dir(fixtures().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("messages") || n.starts_with("chat_"))
            .collect();
        names.sort();
        for name in names {
            let stream = name.ends_with("_stream.txt");
            out.push((decoder.clone(), format!("{dir}/{name}"), stream));
        }
    }
    out
}

#[test]
fn recorded_answers_translate_to_their_golden_form_for_every_client() {
    let bless = std::env::var_os("AURORA_BLESS").is_some();
    let mut checked = 0;
    for (decoder, path, stream) in recorded() {
        let body = std::fs::read(fixtures().join(&path)).unwrap();
        for (client_name, client) in clients(&decoder) {
            let translation = ResponseCodecs {
                provider: decoder.clone(),
                client,
                stream,
            };
            let got = translate(&translation, &body, stream, usize::MAX);
            let extension = if stream { "txt" } else { "json" };
            let golden = fixtures().join(format!(
                "golden/{}.to_{client_name}.{extension}",
                path.trim_end_matches(".json")
                    .trim_end_matches(".txt")
                    .replace('/', "__")
            ));
            if bless {
                std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
                std::fs::write(&golden, &got).unwrap();
            }
            let expected = std::fs::read(&golden).unwrap_or_else(|_| {
                panic!("{} missing: run with AURORA_BLESS=1", golden.display())
            });
            assert!(
                got == expected,
                "{path} → {client_name} differs from {}:\n{}",
                golden.display(),
                String::from_utf8_lossy(&got)
            );
            if stream {
                // The same bytes however the provider's stream is cut.
                for split in [1, 2, 3, 7, 64, 1000] {
                    assert!(
                        translate(&translation, &body, true, split) == expected,
                        "{path} → {client_name} differs when split every {split} bytes"
                    );
                }
            }
            checked += 1;
        }
    }
    // 5 Anthropic answers and 2 streams, 18 Chat answers and 4 streams, two clients each.
    assert!(checked >= 40, "only {checked} pairs checked");
}
