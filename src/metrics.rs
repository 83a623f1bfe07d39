//! The node's Prometheus metrics: what is counted and timed, with which labels, and their
//! encoding in the text exposition format served at `GET /_gojinn/metrics`.
//!
//! Label values come only from bounded sets: `tenant` and `function` name a deployed function
//! (a request that reaches none is counted under [`UNROUTED`], never under its path, and an MCP
//! request under [`MCP`], never under the tool or method it names), `status`
//! is a numeric HTTP status, `state` and `result` are fixed words. A label is never a request
//! path, header, query or body. Recording is a few atomic operations and one map lookup under a
//! read lock; nothing here allocates per request.

use crate::spec::{FunctionId, Name};
use crate::state::JobStatus;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The `tenant` and `function` label value of a request no deployed function serves.
pub const UNROUTED: &str = "_unrouted";

/// The `tenant` and `function` label value of a request to the MCP endpoint.
pub const MCP: &str = "_mcp";

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request latency buckets, in seconds: 100 µs to a minute.
const LATENCY_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];
/// Instantiation buckets, in seconds: 5 µs to 10 ms.
const INSTANTIATE_BUCKETS: [f64; 12] =
    [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025];

/// How a job attempt ended, as the `state` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    Succeeded,
    /// Failed and will be retried.
    Failed,
    /// Failed for the last time: dead-lettered.
    Dead,
}

impl From<JobStatus> for JobState {
    /// How an attempt ended, from the status the backend recorded for its job.
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Succeeded => Self::Succeeded,
            JobStatus::Dead => Self::Dead,
            JobStatus::Queued | JobStatus::Running | JobStatus::Failed => Self::Failed,
        }
    }
}

/// What a reconcile pass did, as the `result` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    /// Desired and actual state already matched.
    Unchanged,
    /// Changes were applied, all of them.
    Applied,
    /// The pass ran, but some resources failed, were denied or are invalid (the rest is applied).
    Partial,
    /// The pass could not run: the source, the policies or the state backend failed.
    Failed,
}

/// Every metric of a node, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<FunctionLabels, Histogram, Buckets>,
    admission_wait: Family<FunctionLabels, Histogram, Buckets>,
    instantiate: Histogram,
    active_instances: Gauge,
    jobs: Family<JobLabels, Counter>,
    dead_jobs: Family<TenantLabels, Gauge>,
    reconciles: Family<ReconcileLabels, Counter>,
    deploy_failures: Family<TenantLabels, Counter>,
    receipts: Family<TenantLabels, Counter>,
    spooled_receipts: Family<TenantLabels, Gauge>,
    guest_cpu: Family<FunctionLabels, Counter<f64, AtomicU64>>,
    rate_limited: Family<RateLimitedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gojinn");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests by tenant, function and HTTP status (MCP requests under tenant and function _mcp)",
            requests.clone(),
        );
        let request_duration = Family::new_with_constructor(Buckets(&LATENCY_BUCKETS));
        registry.register_with_unit(
            "request_duration",
            "Time from a function request's arrival to its response, by tenant and function",
            Unit::Seconds,
            request_duration.clone(),
        );
        let admission_wait = Family::new_with_constructor(Buckets(&LATENCY_BUCKETS));
        registry.register_with_unit(
            "admission_wait",
            "Time a call waited in its function's and tenant's admission queues",
            Unit::Seconds,
            admission_wait.clone(),
        );
        let instantiate = Histogram::new(INSTANTIATE_BUCKETS);
        registry.register_with_unit(
            "instantiate_duration",
            "Time to instantiate a guest in a fresh sandbox",
            Unit::Seconds,
            instantiate.clone(),
        );
        let active_instances = Gauge::default();
        registry.register("active_instances", "Guest instances alive on this node", active_instances.clone());
        let jobs = Family::default();
        registry.register("jobs", "Job attempts by tenant, function and how they ended", jobs.clone());
        let dead_jobs = Family::default();
        registry.register("dead_jobs", "Jobs in a tenant's dead-letter queue", dead_jobs.clone());
        let reconciles = Family::default();
        registry.register("reconciles", "Reconcile passes by result", reconciles.clone());
        let deploy_failures = Family::default();
        registry.register(
            "deploy_failures",
            "Function deploys that failed (a module that does not load on this node), per attempt",
            deploy_failures.clone(),
        );
        let receipts = Family::default();
        registry.register("receipts", "Receipts appended to a tenant's audit log", receipts.clone());
        let spooled_receipts = Family::default();
        registry.register(
            "audit_spooled_receipts",
            "Receipts kept in this node's spool (on its disk) until the tenant's audit log takes them",
            spooled_receipts.clone(),
        );
        let guest_cpu = Family::default();
        registry.register_with_unit(
            "guest_cpu",
            "CPU time guests used (instantiation and run, not waits), by tenant and function",
            Unit::Seconds,
            guest_cpu.clone(),
        );
        let rate_limited = Family::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit (429 rate_limited), by tenant, function and whose limit",
            rate_limited.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            admission_wait,
            instantiate,
            active_instances,
            jobs,
            dead_jobs,
            reconciles,
            deploy_failures,
            receipts,
            spooled_receipts,
            guest_cpu,
            rate_limited,
        }
    }

    /// Every metric in the OpenMetrics text format (which Prometheus reads), ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and no label or value here fails to encode.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// A function request was answered: `function` is `None` when no deployed function served it.
    pub fn request(&self, function: Option<&Arc<FunctionId>>, status: u16, took: Duration) {
        let function = FunctionLabels(function.cloned());
        self.request_duration.get_or_create(&function).observe(took.as_secs_f64());
        self.requests.get_or_create(&RequestLabels { endpoint: Endpoint::Function(function), status }).inc();
    }

    /// A request to the MCP endpoint was answered with `status`.
    pub fn mcp_request(&self, status: u16) {
        self.requests.get_or_create(&RequestLabels { endpoint: Endpoint::Mcp, status }).inc();
    }

    /// A call of `function` used `cpu` of CPU time.
    pub fn guest_cpu(&self, function: &Arc<FunctionId>, cpu: Duration) {
        self.guest_cpu.get_or_create(&FunctionLabels(Some(function.clone()))).inc_by(cpu.as_secs_f64());
    }

    /// A call of `function` was admitted after waiting `waited` in its queues.
    pub fn admitted(&self, function: &Arc<FunctionId>, waited: Duration) {
        self.admission_wait
            .get_or_create(&FunctionLabels(Some(function.clone())))
            .observe(waited.as_secs_f64());
    }

    /// A request for `function` was refused by a rate limit, its own or its tenant's (`limit`:
    /// `function` or `tenant`).
    pub fn rate_limited(&self, function: &Arc<FunctionId>, limit: &'static str) {
        self.rate_limited.get_or_create(&RateLimitedLabels { function: function.clone(), limit }).inc();
    }

    /// A guest instance was created in `took`; it counts as active until the guard drops.
    pub fn instance(&self, took: Duration) -> ActiveInstance {
        self.instantiate.observe(took.as_secs_f64());
        ActiveInstance::new(self.active_instances.clone())
    }

    /// A job attempt of `function` ended.
    pub fn job(&self, function: &Arc<FunctionId>, state: JobState) {
        self.jobs.get_or_create(&JobLabels { function: function.clone(), state }).inc();
    }

    /// `tenant` has `count` dead jobs now.
    pub fn dead_jobs(&self, tenant: &Name, count: u64) {
        self.dead_jobs
            .get_or_create(&TenantLabels(tenant.clone()))
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A reconcile ended with `result`.
    pub fn reconciled(&self, result: ReconcileResult) {
        self.reconciles.get_or_create(&ReconcileLabels(result)).inc();
    }

    /// A function of `tenant` could not be deployed.
    pub fn deploy_failed(&self, tenant: &Name) {
        self.deploy_failures.get_or_create(&TenantLabels(tenant.clone())).inc();
    }

    /// A receipt was appended to `tenant`'s audit log.
    pub fn receipt_appended(&self, tenant: &Name) {
        self.receipts.get_or_create(&TenantLabels(tenant.clone())).inc();
    }

    /// `tenant` has `count` receipts in this node's spool now.
    pub fn receipts_spooled(&self, tenant: &Name, count: u64) {
        self.spooled_receipts
            .get_or_create(&TenantLabels(tenant.clone()))
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// Counts an instance as active while it lives.
#[must_use = "the instance counts as active only while this guard lives"]
pub struct ActiveInstance(Gauge);

impl ActiveInstance {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for ActiveInstance {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Makes the histograms of a family with fixed buckets.
#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// `tenant` and `function` of a deployed function, or [`UNROUTED`] for both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FunctionLabels(Option<Arc<FunctionId>>);

impl EncodeLabelSet for FunctionLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let (tenant, function) = match &self.0 {
            Some(id) => (id.tenant.as_str(), id.function.as_str()),
            None => (UNROUTED, UNROUTED),
        };
        ("tenant", tenant).encode(encoder.encode_label())?;
        ("function", function).encode(encoder.encode_label())
    }
}

/// What a request reached: a function (or none), or the MCP endpoint ([`MCP`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Endpoint {
    Function(FunctionLabels),
    Mcp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RequestLabels {
    endpoint: Endpoint,
    status: u16,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match &self.endpoint {
            Endpoint::Function(function) => function.encode(encoder)?,
            Endpoint::Mcp => {
                ("tenant", MCP).encode(encoder.encode_label())?;
                ("function", MCP).encode(encoder.encode_label())?;
            }
        }
        ("status", self.status).encode(encoder.encode_label())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct JobLabels {
    function: Arc<FunctionId>,
    state: JobState,
}

impl EncodeLabelSet for JobLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        FunctionLabels(Some(self.function.clone())).encode(encoder)?;
        let state = match self.state {
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        };
        ("state", state).encode(encoder.encode_label())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RateLimitedLabels {
    function: Arc<FunctionId>,
    limit: &'static str,
}

impl EncodeLabelSet for RateLimitedLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        FunctionLabels(Some(self.function.clone())).encode(encoder)?;
        ("limit", self.limit).encode(encoder.encode_label())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TenantLabels(Name);

impl EncodeLabelSet for TenantLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("tenant", self.0.as_str()).encode(encoder.encode_label())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ReconcileLabels(ReconcileResult);

impl EncodeLabelSet for ReconcileLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let result = match self.0 {
            ReconcileResult::Unchanged => "unchanged",
            ReconcileResult::Applied => "applied",
            ReconcileResult::Partial => "partial",
            ReconcileResult::Failed => "failed",
        };
        ("result", result).encode(encoder.encode_label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(tenant: &str, function: &str) -> Arc<FunctionId> {
        Arc::new(FunctionId { tenant: Name::new(tenant).unwrap(), function: Name::new(function).unwrap() })
    }

    #[test]
    fn requests_are_labelled_by_function_and_status_and_unrouted_and_mcp_ones_by_fixed_values() {
        let metrics = Metrics::new();
        let hello = id("acme", "hello");
        metrics.request(Some(&hello), 200, Duration::from_millis(2));
        metrics.request(Some(&hello), 200, Duration::from_millis(3));
        metrics.request(None, 404, Duration::from_micros(50));
        metrics.mcp_request(200);
        metrics.mcp_request(200);
        metrics.mcp_request(401);
        let text = metrics.encode();
        assert!(
            text.contains(r#"gojinn_requests_total{tenant="_mcp",function="_mcp",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gojinn_requests_total{tenant="_mcp",function="_mcp",status="401"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gojinn_requests_total{tenant="acme",function="hello",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gojinn_requests_total{tenant="_unrouted",function="_unrouted",status="404"} 1"#)
        );
        assert!(text.contains(r#"gojinn_request_duration_seconds_count{tenant="acme",function="hello"} 2"#));
        assert!(text.contains(
            r#"gojinn_request_duration_seconds_bucket{le="0.0025",tenant="acme",function="hello"} 1"#
        ));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn an_instance_is_active_while_its_guard_lives() {
        let metrics = Metrics::new();
        let guard = metrics.instance(Duration::from_micros(20));
        assert!(metrics.encode().contains("gojinn_active_instances 1\n"));
        drop(guard);
        let text = metrics.encode();
        assert!(text.contains("gojinn_active_instances 0\n"));
        assert!(text.contains("gojinn_instantiate_duration_seconds_count 1\n"), "{text}");
    }

    #[test]
    fn jobs_dead_letters_reconciles_and_receipts_have_fixed_label_values() {
        let metrics = Metrics::new();
        let work = id("acme", "work");
        metrics.job(&work, JobState::Succeeded);
        metrics.job(&work, JobState::Dead);
        metrics.dead_jobs(&work.tenant, 3);
        metrics.reconciled(ReconcileResult::Applied);
        metrics.reconciled(ReconcileResult::Partial);
        metrics.deploy_failed(&work.tenant);
        metrics.receipt_appended(&work.tenant);
        metrics.rate_limited(&work, "tenant");
        let text = metrics.encode();
        for line in [
            r#"gojinn_jobs_total{tenant="acme",function="work",state="succeeded"} 1"#,
            r#"gojinn_jobs_total{tenant="acme",function="work",state="dead"} 1"#,
            r#"gojinn_dead_jobs{tenant="acme"} 3"#,
            r#"gojinn_reconciles_total{result="applied"} 1"#,
            r#"gojinn_reconciles_total{result="partial"} 1"#,
            r#"gojinn_deploy_failures_total{tenant="acme"} 1"#,
            r#"gojinn_receipts_total{tenant="acme"} 1"#,
            r#"gojinn_rate_limited_total{tenant="acme",function="work",limit="tenant"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
