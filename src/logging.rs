//! Process-wide logging whose filter can change while the gateway runs, and which
//! never writes a credential.
//!
//! env_logger fixes its filter when it is built, so Aurora installs its own
//! [`log::Log`]: an env_logger that formats and writes everything it is handed, behind
//! a filter (`RUST_LOG` syntax) held in an atomic pointer. A reload swaps the filter
//! and moves `log::max_level` with it, so disabled levels stay as cheap as before.
//!
//! Pingora prints whole request headers (keys included) at `debug` and `trace`, so
//! its targets are held at [`PINGORA_MAX_LEVEL`] whatever the filter says, and every
//! record that is written goes through [`redact`] first.

mod access_writer;
mod clipped;
mod redact;

use std::sync::Arc;

use arc_swap::ArcSwap;
use env_filter::Filter;
use log::{LevelFilter, Log, Metadata, Record};
use once_cell::sync::Lazy;

pub use access_writer::{AccessLogWriter, LineFilter, ACCESS_LOG_CAPACITY};
pub use clipped::clipped;
pub use redact::{
    is_credential_header, is_credential_param, redact, redact_access_line, RedactedHeaders,
    CREDENTIAL_HEADERS, REDACTED,
};

/// The filter used when neither `RUST_LOG` nor `server.log_level` says otherwise.
pub const DEFAULT_LOG_FILTER: &str = "info";

static FILTER: Lazy<ArcSwap<Filter>> = Lazy::new(|| {
    ArcSwap::from_pointee(
        parse_filter(DEFAULT_LOG_FILTER).unwrap_or_else(|_| env_filter::Builder::new().build()),
    )
});

/// The access log's writer thread, started on the first access line. Its lines go to
/// stderr like every other record, redacted on the writer thread; a full queue drops
/// them into `aurora_log_lines_dropped_total`.
static ACCESS_LOG: Lazy<Option<AccessLogWriter>> = Lazy::new(|| {
    let dropped = match crate::metrics::metrics() {
        Some(m) => m.log_lines_dropped(),
        None => prometheus::IntCounter::new("log_lines_dropped_total", "unregistered").ok()?,
    };
    match AccessLogWriter::spawn(
        Box::new(std::io::stderr()),
        redact_access_line,
        ACCESS_LOG_CAPACITY,
        dropped,
    ) {
        Ok(writer) => Some(writer),
        Err(e) => {
            log::error!("the access log is unavailable: cannot start its writer: {e}");
            None
        }
    }
});

/// The process-wide access log writer, if its thread could be started.
pub fn access_log() -> Option<&'static AccessLogWriter> {
    ACCESS_LOG.as_ref()
}

/// Writes out the access lines still queued, waiting at most `timeout`: called
/// before the process exits. Nothing to do when no line was ever logged.
pub fn flush_access_log(timeout: std::time::Duration) {
    if let Some(Some(writer)) = Lazy::get(&ACCESS_LOG) {
        if !writer.flush(timeout) {
            log::warn!("access lines still queued after {timeout:?} at exit are lost");
        }
    }
}

/// The most verbose level written for Pingora's own targets (`pingora_proxy::…`,
/// `pingora_core::…`): below it they log whole request headers.
pub const PINGORA_MAX_LEVEL: LevelFilter = LevelFilter::Info;

/// Whether a record of `target` at `level` is beyond what Aurora ever writes,
/// whatever the filter.
fn held_back(target: &str, level: log::Level) -> bool {
    target.starts_with("pingora") && level > PINGORA_MAX_LEVEL
}

/// Parses a `RUST_LOG`-style filter (`info`, `warn,aurora::access=info`), refusing the
/// malformed directives env_logger would only warn about and skip.
pub fn parse_filter(spec: &str) -> Result<Filter, String> {
    let mut builder = env_filter::Builder::new();
    builder.try_parse(spec).map_err(|e| {
        format!("`{spec}` is not a log filter like `info` or `warn,aurora::access=info`: {e}")
    })?;
    Ok(builder.build())
}

/// Installs the reloadable logger with `spec` as its filter. Later calls only change
/// the filter, so tests and embedders may call it more than once.
pub fn install(spec: &str) -> Result<(), String> {
    let writer = env_logger::Builder::new()
        .filter_level(LevelFilter::Trace)
        .build();
    // An already installed logger (a second call) is fine: the filter below still applies.
    let _ = log::set_boxed_logger(Box::new(ReloadableLogger { writer }));
    set_filter(spec)
}

/// Replaces the filter for every log call from now on.
pub fn set_filter(spec: &str) -> Result<(), String> {
    let filter = parse_filter(spec)?;
    log::set_max_level(filter.filter());
    FILTER.store(Arc::new(filter));
    Ok(())
}

/// The most verbose level the current filter lets through.
pub fn max_level() -> LevelFilter {
    FILTER.load().filter()
}

struct ReloadableLogger {
    writer: env_logger::Logger,
}

impl Log for ReloadableLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !held_back(metadata.target(), metadata.level()) && FILTER.load().enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if held_back(record.target(), record.level()) || !FILTER.load().matches(record) {
            return;
        }
        let formatted;
        let message = match record.args().as_str() {
            Some(fixed) => fixed,
            None => {
                formatted = record.args().to_string();
                &formatted
            }
        };
        let message = redact(message);
        self.writer.log(
            &Record::builder()
                .args(format_args!("{message}"))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.writer.flush();
    }
}

/// Serialises unit tests that change the process-wide filter.
#[cfg(test)]
pub(crate) static TEST_FILTER_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_levels_and_per_target_directives() {
        assert_eq!(parse_filter("warn").unwrap().filter(), LevelFilter::Warn);
        let f = parse_filter("error,aurora::access=info").unwrap();
        assert_eq!(f.filter(), LevelFilter::Info);
    }

    #[test]
    fn refuses_what_env_logger_would_ignore() {
        let err = parse_filter("aurora=shout").unwrap_err();
        assert!(err.contains("`aurora=shout`"), "{err}");
        assert!(parse_filter("a=b=c").is_err());
    }

    #[test]
    fn pingora_targets_are_held_at_info_whatever_the_filter() {
        use log::Level;
        for target in [
            "pingora_proxy::proxy_h1",
            "pingora_core::protocols::http::v1::client",
            "pingora_proxy",
        ] {
            assert!(held_back(target, Level::Debug), "{target}");
            assert!(held_back(target, Level::Trace), "{target}");
            assert!(!held_back(target, Level::Info), "{target}");
            assert!(!held_back(target, Level::Error), "{target}");
        }
        assert!(!held_back("aurora::proxy::headers", Level::Trace));
    }

    #[test]
    fn a_trace_filter_does_not_enable_pingora_debug_records() {
        let _guard = TEST_FILTER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        set_filter("trace").unwrap();
        let logger = ReloadableLogger {
            writer: env_logger::Builder::new().build(),
        };
        let meta = |target, level| Metadata::builder().target(target).level(level).build();
        assert!(!logger.enabled(&meta("pingora_proxy::proxy_h1", log::Level::Debug)));
        assert!(!logger.enabled(&meta("pingora_core::connectors", log::Level::Trace)));
        assert!(logger.enabled(&meta("pingora_proxy", log::Level::Warn)));
        assert!(logger.enabled(&meta("aurora::proxy", log::Level::Trace)));
        set_filter("warn").unwrap();
    }

    #[test]
    fn set_filter_moves_the_global_max_level() {
        let _guard = TEST_FILTER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        set_filter("debug").unwrap();
        assert_eq!(log::max_level(), LevelFilter::Debug);
        assert_eq!(max_level(), LevelFilter::Debug);
        set_filter("warn").unwrap();
        assert_eq!(log::max_level(), LevelFilter::Warn);
        assert!(set_filter("aurora=loud").is_err());
        assert_eq!(
            max_level(),
            LevelFilter::Warn,
            "a bad filter changes nothing"
        );
    }
}
