//! Process-wide logging whose filter can change while the gateway runs.
//!
//! env_logger fixes its filter when it is built, so Aurora installs its own
//! [`log::Log`]: an env_logger that formats and writes everything it is handed, behind
//! a filter (`RUST_LOG` syntax) held in an atomic pointer. A reload swaps the filter
//! and moves `log::max_level` with it, so disabled levels stay as cheap as before.

use std::sync::Arc;

use arc_swap::ArcSwap;
use env_filter::Filter;
use log::{LevelFilter, Log, Metadata, Record};
use once_cell::sync::Lazy;

/// The filter used when neither `RUST_LOG` nor `server.log_level` says otherwise.
pub const DEFAULT_LOG_FILTER: &str = "info";

static FILTER: Lazy<ArcSwap<Filter>> = Lazy::new(|| {
    ArcSwap::from_pointee(
        parse_filter(DEFAULT_LOG_FILTER).unwrap_or_else(|_| env_filter::Builder::new().build()),
    )
});

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
        FILTER.load().enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if FILTER.load().matches(record) {
            self.writer.log(record);
        }
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
