//! Where spans are exported to: the OTLP settings of `gojinn.yaml` merged with the standard
//! `OTEL_*` environment variables, and the tracer provider that batches and sends spans.
//!
//! The environment wins over the file, as command-line flags do: an orchestrator sets `OTEL_*`
//! per process, the file is often baked into an image. Without an endpoint in either place, or
//! with `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`, nothing is exported.

use super::TelemetryError;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Trace export over OTLP. Unset keys fall back to the standard `OTEL_*` environment variables,
/// which override the file where both are set (see `telemetry`). Without an endpoint in either
/// place, nothing is exported.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TelemetrySettings {
    /// Collector base URL, e.g. `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318` (HTTP;
    /// `/v1/traces` is appended).
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http` (protobuf); default `http`, as the OpenTelemetry specification says.
    pub protocol: Option<OtlpProtocol>,
    /// The `service.name` of exported spans; default `gojinn`.
    pub service_name: Option<String>,
    /// Share of new traces kept, 0.0 to 1.0; a request with a `traceparent` follows its caller's
    /// decision. Default 1.0.
    pub sample_ratio: Option<f64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

const DEFAULT_SERVICE_NAME: &str = "gojinn";
/// Appended to a base endpoint for OTLP/HTTP, as the specification says.
const HTTP_TRACES_PATH: &str = "/v1/traces";

/// How and where spans are exported.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// The URL the exporter sends to (for HTTP, the full `/v1/traces` URL). `None`: the exporter
    /// reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` itself.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    pub sampler: Sampler,
}

impl ExportConfig {
    /// Exports every span to `endpoint` (a base URL) over `protocol`.
    pub fn new(endpoint: &str, protocol: OtlpProtocol) -> Self {
        Self {
            endpoint: Some(full_endpoint(endpoint, protocol)),
            protocol,
            service_name: DEFAULT_SERVICE_NAME.into(),
            sampler: Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        }
    }

    /// What `settings` and the process environment ask for; `None` when export is off.
    pub fn from_env(settings: &TelemetrySettings) -> Result<Option<Self>, TelemetryError> {
        Self::resolve(settings, |name| std::env::var(name).ok())
    }

    /// What `settings` and the variables `env` returns ask for; `None` when export is off.
    pub fn resolve(
        settings: &TelemetrySettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TelemetryError> {
        let env = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match env("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => return Err(invalid_env("OTEL_TRACES_EXPORTER", other, "use otlp or none")),
        }
        let from_env =
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if from_env.is_none() && settings.otlp_endpoint.is_none() {
            return Ok(None);
        }
        let protocol =
            match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")) {
                Some(name) => protocol(&name)?,
                None => settings.protocol.unwrap_or(OtlpProtocol::Http),
            };
        let endpoint = match from_env {
            Some(_) => None,
            None => settings.otlp_endpoint.as_deref().map(|base| full_endpoint(base, protocol)),
        };
        let service_name = env("OTEL_SERVICE_NAME")
            .or_else(|| settings.service_name.clone())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
        let sampler = match env("OTEL_TRACES_SAMPLER") {
            Some(name) => sampler(&name, env("OTEL_TRACES_SAMPLER_ARG").as_deref())?,
            None => match settings.sample_ratio {
                Some(ratio) if !(0.0..=1.0).contains(&ratio) => {
                    return Err(TelemetryError::SampleRatio(ratio));
                }
                Some(ratio) if ratio < 1.0 => {
                    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
                }
                _ => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            },
        };
        Ok(Some(Self { endpoint, protocol, service_name, sampler }))
    }

    /// The tracer provider: a batch of spans is handed from its own thread to the exporter,
    /// which runs on the calling tokio runtime (call this inside one).
    pub(super) fn provider(&self) -> Result<SdkTracerProvider, TelemetryError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let exporter = OnRuntime { exporter: Arc::new(self.exporter()?), runtime };
        let resource = Resource::builder()
            .with_service_name(self.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(self.sampler.clone())
            .with_resource(resource)
            .build())
    }

    fn exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let exporter = match (self.protocol, &self.endpoint) {
            (OtlpProtocol::Grpc, None) => builder.with_tonic().build(),
            (OtlpProtocol::Grpc, Some(endpoint)) => builder.with_tonic().with_endpoint(endpoint).build(),
            (OtlpProtocol::Http, None) => builder.with_http().with_protocol(Protocol::HttpBinary).build(),
            (OtlpProtocol::Http, Some(endpoint)) => {
                builder.with_http().with_protocol(Protocol::HttpBinary).with_endpoint(endpoint).build()
            }
        };
        exporter.map_err(|e| TelemetryError::Exporter(e.to_string()))
    }
}

/// The URL to send to for a base endpoint: HTTP appends the traces path.
fn full_endpoint(base: &str, protocol: OtlpProtocol) -> String {
    match protocol {
        OtlpProtocol::Grpc => base.to_owned(),
        OtlpProtocol::Http => format!("{}{HTTP_TRACES_PATH}", base.trim_end_matches('/')),
    }
}

fn invalid_env(name: &'static str, value: &str, reason: &str) -> TelemetryError {
    TelemetryError::Env { name, value: value.to_owned(), reason: reason.to_owned() }
}

fn protocol(name: &str) -> Result<OtlpProtocol, TelemetryError> {
    match name {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::Http),
        other => Err(invalid_env("OTEL_EXPORTER_OTLP_PROTOCOL", other, "use grpc or http/protobuf")),
    }
}

/// `OTEL_TRACES_SAMPLER` and its argument, as the specification names them.
fn sampler(name: &str, arg: Option<&str>) -> Result<Sampler, TelemetryError> {
    let ratio = || match arg {
        None => Ok(1.0),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| invalid_env("OTEL_TRACES_SAMPLER_ARG", text, "use a ratio from 0 to 1")),
    };
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    Ok(match name {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => parent_based(Sampler::AlwaysOn),
        "parentbased_always_off" => parent_based(Sampler::AlwaysOff),
        "parentbased_traceidratio" => parent_based(Sampler::TraceIdRatioBased(ratio()?)),
        other => {
            return Err(invalid_env(
                "OTEL_TRACES_SAMPLER",
                other,
                "use always_on, always_off, traceidratio or their parentbased_ forms",
            ));
        }
    })
}

/// Runs each export on the tokio runtime the provider was built in. The SDK's batch processor
/// calls exporters from a thread of its own, where neither tonic nor hyper can do I/O.
#[derive(Debug)]
struct OnRuntime {
    exporter: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let exporter = self.exporter.clone();
        let export = self.runtime.spawn(async move { exporter.export(batch).await });
        export.await.map_err(|e| OTelSdkError::InternalFailure(format!("the export task failed: {e}")))?
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // The provider sets the resource once, before any export shares the exporter.
        if let Some(exporter) = Arc::get_mut(&mut self.exporter) {
            exporter.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        settings: &TelemetrySettings,
        vars: &[(&str, &str)],
    ) -> Result<Option<ExportConfig>, TelemetryError> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ExportConfig::resolve(settings, |name| vars.get(name).cloned())
    }

    fn file(endpoint: &str) -> TelemetrySettings {
        TelemetrySettings { otlp_endpoint: Some(endpoint.into()), ..TelemetrySettings::default() }
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        assert!(resolve(&TelemetrySettings::default(), &[("OTEL_SERVICE_NAME", "x")]).unwrap().is_none());
        assert!(resolve(&file("http://c:4318"), &[("OTEL_SDK_DISABLED", "true")]).unwrap().is_none());
        assert!(resolve(&file("http://c:4318"), &[("OTEL_TRACES_EXPORTER", "none")]).unwrap().is_none());
    }

    #[test]
    fn the_file_alone_configures_export_with_http_as_the_default_protocol() {
        let settings = TelemetrySettings {
            otlp_endpoint: Some("http://c:4318/".into()),
            service_name: Some("edge-eu".into()),
            sample_ratio: Some(0.25),
            ..TelemetrySettings::default()
        };
        let config = resolve(&settings, &[]).unwrap().unwrap();
        assert_eq!(config.endpoint.as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(config.protocol, OtlpProtocol::Http);
        assert_eq!(config.service_name, "edge-eu");
        assert_eq!(format!("{:?}", config.sampler), "ParentBased(TraceIdRatioBased(0.25))");
        let grpc = TelemetrySettings { protocol: Some(OtlpProtocol::Grpc), ..file("http://c:4317") };
        assert_eq!(resolve(&grpc, &[]).unwrap().unwrap().endpoint.as_deref(), Some("http://c:4317"));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ];
        let config = resolve(&file("http://file:4318"), &vars).unwrap().unwrap();
        assert_eq!(config.endpoint, None, "the exporter reads the endpoint variables itself");
        assert_eq!(config.protocol, OtlpProtocol::Grpc);
        assert_eq!(config.service_name, "from-env");
        assert_eq!(format!("{:?}", config.sampler), "TraceIdRatioBased(0.5)");
    }

    #[test]
    fn bad_values_are_named() {
        let env_error =
            |vars: &[(&str, &str)]| resolve(&file("http://c:4318"), vars).unwrap_err().to_string();
        assert!(
            env_error(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])
                .contains("OTEL_EXPORTER_OTLP_PROTOCOL")
        );
        assert!(env_error(&[("OTEL_TRACES_SAMPLER", "sometimes")]).contains("OTEL_TRACES_SAMPLER"));
        let arg = [("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")];
        assert!(env_error(&arg).contains("OTEL_TRACES_SAMPLER_ARG"));
        let ratio = TelemetrySettings { sample_ratio: Some(1.5), ..file("http://c:4318") };
        assert!(resolve(&ratio, &[]).unwrap_err().to_string().contains("sampleRatio"));
    }
}
