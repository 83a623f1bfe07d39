//! Tracing for the process, set up in one function ([`init`]): log lines to stderr filtered by
//! `RUST_LOG` (default `info`), and, when an OTLP endpoint is configured (`telemetry` in
//! `gojinn.yaml` or the `OTEL_*` variables, see [`ExportConfig`]), the spans of [`spans`]
//! exported over OTLP/gRPC or OTLP/HTTP. Without an endpoint no OpenTelemetry layer is installed
//! at all, and the spans, disabled at their call sites, cost next to nothing.
//!
//! The exporter sees only the spans of [`spans`] (target [`TARGET`]), never log events: a guest's
//! log lines stay in the node's logs.

mod export;
pub mod spans;

pub use export::{ExportConfig, OtlpProtocol, TelemetrySettings};

use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// The `tracing` target of every exported span.
pub const TARGET: &str = "gojinn::trace";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{name}={value:?}: {reason}")]
    Env { name: &'static str, value: String, reason: String },
    #[error("telemetry.sampleRatio must be from 0 to 1, not {0}")]
    SampleRatio(f64),
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
    #[error("the OTLP exporter needs a tokio runtime: set up telemetry inside one")]
    NoRuntime,
    #[error("cannot install the tracing subscriber: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error("exporting spans failed: {0}")]
    Export(String),
}

/// Sets up tracing for the process: installs [`subscriber`] as the global default, and routes
/// the `log` records of dependencies into it. Keep the returned guard alive; dropping it sends
/// the spans not yet exported.
pub fn init(export: Option<&ExportConfig>) -> Result<Telemetry, TelemetryError> {
    let (dispatch, telemetry) = subscriber(export)?;
    dispatch.try_init()?;
    if let Some(export) = export {
        let endpoint = export.endpoint.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*");
        tracing::info!(?export.protocol, endpoint, service = export.service_name, "exporting spans over OTLP");
    }
    Ok(telemetry)
}

/// The subscriber [`init`] installs, for a caller that installs it itself (a test, with
/// `tracing::dispatcher::set_default`). With `export`, call it inside a tokio runtime.
pub fn subscriber(export: Option<&ExportConfig>) -> Result<(Dispatch, Telemetry), TelemetryError> {
    let filter = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into()).from_env_lossy();
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter);
    let registry = tracing_subscriber::registry().with(logs);
    let Some(export) = export else {
        return Ok((Dispatch::new(registry), Telemetry { provider: None }));
    };
    let provider = export.provider()?;
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("gojinn"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(Targets::new().with_target(TARGET, LevelFilter::DEBUG));
    Ok((Dispatch::new(registry.with(spans)), Telemetry { provider: Some(provider) }))
}

/// Keeps span export running; dropping it exports what is still queued and stops the exporter
/// (waiting a few seconds at most).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now. The wait happens on a blocking thread, so the runtime
    /// that runs the exporter (even a current-thread one) keeps going.
    pub async fn flush(&self) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider.clone() else { return Ok(()) };
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        flushed
            .map_err(|e| TelemetryError::Export(e.to_string()))?
            .map_err(|e| TelemetryError::Export(e.to_string()))
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {error}");
        }
    }
}
