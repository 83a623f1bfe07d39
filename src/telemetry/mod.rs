//! Tracing for the process, set up in one function ([`init`]; [`init_command`] for the commands
//! other than `serve`): log lines to stderr filtered by `RUST_LOG` (default `info` for the node,
//! `warn` for the other commands, whose output is their answer), coloured only on a terminal and
//! never with `NO_COLOR` set, and, when an OTLP endpoint is configured (`telemetry` in
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
use std::io::IsTerminal;
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
    announce(export);
    Ok(telemetry)
}

/// Sets up log lines for a command other than `gojinn serve`: warnings and errors only unless
/// `RUST_LOG` says otherwise, so libraries' progress lines do not bury the command's output.
pub fn init_command() -> Result<(), TelemetryError> {
    Dispatch::new(tracing_subscriber::registry().with(log_lines(LevelFilter::WARN))).try_init()?;
    Ok(())
}

fn announce(export: Option<&ExportConfig>) {
    if let Some(export) = export {
        let endpoint = export.endpoint.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*");
        tracing::info!(?export.protocol, endpoint, service = export.service_name, "exporting spans over OTLP");
    }
}

/// Log lines to stderr, filtered by `RUST_LOG` or else at `default`, coloured per [`colored`].
fn log_lines<S>(default: LevelFilter) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let filter = EnvFilter::builder().with_default_directive(default.into()).from_env_lossy();
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colored(std::io::stderr().is_terminal()))
        .with_filter(filter)
}

/// Whether output to a stream may be coloured: only a terminal, and never with `NO_COLOR` set
/// to anything but the empty string (<https://no-color.org>).
pub fn colored(terminal: bool) -> bool {
    allows_color(terminal, std::env::var_os("NO_COLOR"))
}

fn allows_color(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// The subscriber [`init`] installs, for a caller that installs it itself (a test, with
/// `tracing::dispatcher::set_default`). With `export`, call it inside a tokio runtime.
pub fn subscriber(export: Option<&ExportConfig>) -> Result<(Dispatch, Telemetry), TelemetryError> {
    let registry = tracing_subscriber::registry().with(log_lines(LevelFilter::INFO));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(allows_color(true, None));
        assert!(allows_color(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!allows_color(true, Some("1".into())));
        assert!(!allows_color(true, Some("false".into())), "any value counts");
        assert!(!allows_color(false, None), "a pipe or a file gets no escape codes");
    }
}
