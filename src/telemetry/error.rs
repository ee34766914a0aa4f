//! Why tracing could not be switched on.

/// A failure to set up the span exporter. The gateway then serves without traces.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (its HTTP client, most likely).
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The thread that sends spans could not be started.
    #[error("cannot start the span export thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The dropped-span counter could not be made.
    #[error("cannot make the dropped-span counter: {0}")]
    Counter(#[from] prometheus::Error),
    /// Tracing was already set up in this process; the first setup stays.
    #[error("tracing is already set up in this process")]
    AlreadyInstalled,
}
