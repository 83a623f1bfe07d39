//! Provisioning: the desired streams of a tenant (its KV buckets are streams too, laid out as
//! NATS KV expects), created when absent and updated only when a setting we own differs, so a
//! second `ensure` writes nothing. Removal treats an absent stream as done.

use super::{NatsBackend, NatsResult};
use crate::spec::Name;
use crate::state::{Provisioner, StateError, TenantResources, names};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_trait::async_trait;
use std::time::Duration;

/// How long the jobs stream remembers a `Nats-Msg-Id` to drop a duplicate publish. Idempotency
/// keys dedup forever through the job record; this only covers a republish after a lost ack.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The server's default window, set explicitly on other streams so the comparison is stable.
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60);

#[async_trait]
impl Provisioner for NatsBackend {
    async fn ensure_tenant(&self, tenant: &TenantResources) -> Result<bool, StateError> {
        self.run_unbounded(&tenant.name, async {
            let mut wrote = false;
            for config in desired_streams(tenant) {
                wrote |= self.ensure_stream(config).await?;
            }
            if wrote {
                // Cached bucket handles carry the stream settings they were opened with.
                self.forget(&tenant.name);
            }
            Ok(wrote)
        })
        .await
        .map(|wrote| self.count(wrote))
    }

    /// Reads each stream's configuration from the JetStream API (its leader answers) and
    /// compares the settings we own: a missing stream, then one line per differing setting, in
    /// creation order. A tenant with none of its streams has no resources: no drift. Each read
    /// waits as long as provisioning does: it is part of planning a pass.
    async fn drift(&self, tenant: &TenantResources) -> Result<Vec<String>, StateError> {
        self.run_unbounded(&tenant.name, async {
            let mut lines = Vec::new();
            for desired in desired_streams(tenant) {
                match self.provisioning.get_stream(&desired.name).await {
                    Ok(stream) => {
                        let actual = Settings::of(&stream.cached_info().config);
                        let differences = actual.differences(&Settings::of(&desired));
                        lines
                            .extend(differences.into_iter().map(|d| format!("stream {}: {d}", desired.name)));
                    }
                    Err(err) if is_stream_not_found(err.kind()) => {
                        lines.push(format!("stream {} is missing", desired.name));
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Ok(lines)
        })
        .await
    }

    async fn remove_tenant(&self, tenant: &Name) -> Result<bool, StateError> {
        let removed = self.run_unbounded(tenant, async {
            let mut existed = false;
            for name in stream_names(tenant) {
                existed |= self.delete_stream(&name).await?;
            }
            Ok(existed)
        });
        let removed = removed.await;
        self.forget(tenant);
        removed.map(|existed| self.count(existed))
    }
}

impl NatsBackend {
    /// Creates the stream or brings its settings to `desired`; true if it wrote.
    async fn ensure_stream(&self, desired: Config) -> NatsResult<bool> {
        match self.provisioning.get_stream(&desired.name).await {
            Ok(stream) if Settings::of(&stream.cached_info().config) == Settings::of(&desired) => Ok(false),
            Ok(_) => {
                self.provisioning.update_stream(&desired).await?;
                Ok(true)
            }
            Err(err) if is_stream_not_found(err.kind()) => {
                self.provisioning.create_stream(desired).await?;
                Ok(true)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes a stream; false if it did not exist.
    async fn delete_stream(&self, name: &str) -> NatsResult<bool> {
        match self.provisioning.delete_stream(name).await {
            Ok(_) => Ok(true),
            Err(err) if is_stream_not_found(err.kind()) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

pub(super) fn is_stream_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// The stream behind a KV bucket, as NATS KV names it.
pub(super) fn bucket_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// Every stream of a tenant, KV buckets by their stream names (`KV_<bucket>`).
fn stream_names(tenant: &Name) -> [String; 5] {
    desired_streams(&TenantResources {
        name: tenant.clone(),
        replicas: 1,
        kv_max_bytes: None,
        kv_max_keys: None,
    })
    .map(|c| c.name)
}

/// A stream with every setting we own written out, so comparing it with what the server echoes
/// back is stable.
pub(super) fn base_stream(
    name: String,
    subjects: Vec<String>,
    retention: RetentionPolicy,
    replicas: u8,
) -> Config {
    Config {
        name,
        subjects,
        retention,
        storage: StorageType::File,
        num_replicas: usize::from(replicas.max(1)),
        max_bytes: -1,
        max_messages: -1,
        max_messages_per_subject: -1,
        max_message_size: -1,
        discard: DiscardPolicy::Old,
        duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        ..Config::default()
    }
}

/// The stream of KV bucket `bucket`, laid out as NATS KV clients expect: one value per key,
/// rollups, deletes only as markers, and discard-new so a full bucket refuses writes (the
/// quota). No direct gets: any replica may answer one, a lagging follower too, so a read could
/// miss an acknowledged write; reads go through the stream leader instead.
pub(super) fn bucket_stream_config(bucket: &str, replicas: u8, max_bytes: Option<u64>) -> Config {
    let limit = max_bytes.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
    Config {
        max_messages_per_subject: 1,
        max_bytes: limit,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        ..base_stream(
            bucket_stream(bucket),
            vec![format!("$KV.{bucket}.>")],
            RetentionPolicy::Limits,
            replicas,
        )
    }
}

/// The streams a tenant should have, in creation order.
fn desired_streams(tenant: &TenantResources) -> [Config; 5] {
    let name = &tenant.name;
    let stream = |name: String, subject: String, retention: RetentionPolicy| {
        base_stream(name, vec![subject], retention, tenant.replicas)
    };
    [
        Config {
            // One message per key (values, and locks), deletes purge theirs (see `kv`).
            max_messages: tenant.kv_max_keys.map_or(-1, i64::from),
            ..bucket_stream_config(&names::kv_bucket(name), tenant.replicas, tenant.kv_max_bytes)
        },
        bucket_stream_config(&names::job_state_bucket(name), tenant.replicas, None),
        Config {
            duplicate_window: DUPLICATE_WINDOW,
            ..stream(names::jobs_stream(name), format!("gojinn.jobs.{name}.*"), RetentionPolicy::WorkQueue)
        },
        stream(names::dead_letter_stream(name), format!("gojinn.dlq.{name}.*"), RetentionPolicy::Limits),
        Config {
            deny_delete: true,
            deny_purge: true,
            ..stream(names::audit_stream(name), names::audit_subject(name), RetentionPolicy::Limits)
        },
    ]
}

/// The settings we own of a stream. The server adds its own (metadata, consumer limits, derived
/// defaults); those never count as a difference. Unlimited is `-1` whatever way it was written.
#[derive(Debug, PartialEq, Eq)]
struct Settings<'a> {
    subjects: &'a [String],
    retention: RetentionPolicy,
    storage: StorageType,
    replicas: usize,
    limits: [i64; 4],
    max_age: Duration,
    discard: DiscardPolicy,
    duplicate_window: Duration,
    flags: [bool; 4],
}

impl<'a> Settings<'a> {
    fn of(config: &'a Config) -> Self {
        let unlimited = |v: i64| if v <= 0 { -1 } else { v };
        Self {
            subjects: &config.subjects,
            retention: config.retention,
            storage: config.storage,
            replicas: config.num_replicas.max(1),
            limits: [
                unlimited(config.max_bytes),
                unlimited(config.max_messages),
                unlimited(config.max_messages_per_subject),
                unlimited(i64::from(config.max_message_size)),
            ],
            max_age: config.max_age,
            discard: config.discard,
            duplicate_window: config.duplicate_window,
            flags: [config.allow_rollup, config.allow_direct, config.deny_delete, config.deny_purge],
        }
    }

    /// `<field> <actual>, want <wanted>` for each owned setting that differs from `wanted`.
    fn differences(&self, wanted: &Self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut compare = |field: &str, actual: String, want: String| {
            if actual != want {
                lines.push(format!("{field} {actual}, want {want}"));
            }
        };
        compare("subjects", self.subjects.join(" "), wanted.subjects.join(" "));
        compare("retention", format!("{:?}", self.retention), format!("{:?}", wanted.retention));
        compare("storage", format!("{:?}", self.storage), format!("{:?}", wanted.storage));
        compare("replicas", self.replicas.to_string(), wanted.replicas.to_string());
        let limit = |v: i64| if v < 0 { "unlimited".to_owned() } else { v.to_string() };
        for (i, field) in ["max_bytes", "max_messages", "max_messages_per_subject", "max_message_size"]
            .into_iter()
            .enumerate()
        {
            compare(field, limit(self.limits[i]), limit(wanted.limits[i]));
        }
        let age = |d: Duration| {
            if d.is_zero() { "unlimited".to_owned() } else { humantime::format_duration(d).to_string() }
        };
        compare("max_age", age(self.max_age), age(wanted.max_age));
        compare("discard", format!("{:?}", self.discard), format!("{:?}", wanted.discard));
        let window = |d: Duration| humantime::format_duration(d).to_string();
        compare("duplicate_window", window(self.duplicate_window), window(wanted.duplicate_window));
        for (i, field) in
            ["allow_rollup", "allow_direct", "deny_delete", "deny_purge"].into_iter().enumerate()
        {
            compare(field, self.flags[i].to_string(), wanted.flags[i].to_string());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(replicas: u8, kv_max_bytes: Option<u64>) -> TenantResources {
        TenantResources { name: Name::new("acme-co").unwrap(), replicas, kv_max_bytes, kv_max_keys: None }
    }

    #[test]
    fn names_and_subjects_follow_the_design() {
        let [kv, jobstate, jobs, dlq, audit] =
            desired_streams(&TenantResources { kv_max_keys: Some(3), ..acme(3, Some(4096)) });
        assert_eq!(
            (kv.name.as_str(), kv.subjects[0].as_str()),
            ("KV_GOJINN_KV_ACME_CO", "$KV.GOJINN_KV_ACME_CO.>")
        );
        assert_eq!(
            (kv.max_bytes, kv.max_messages, kv.max_messages_per_subject, kv.num_replicas),
            (4096, 3, 1, 3)
        );
        assert_eq!(jobstate.name, "KV_GOJINN_JOBSTATE_ACME_CO");
        assert_eq!((jobstate.max_bytes, jobstate.max_messages), (-1, -1));
        assert_eq!(
            (jobs.subjects[0].as_str(), jobs.retention),
            ("gojinn.jobs.acme-co.*", RetentionPolicy::WorkQueue)
        );
        assert_eq!(
            (dlq.subjects[0].as_str(), dlq.retention),
            ("gojinn.dlq.acme-co.*", RetentionPolicy::Limits)
        );
        assert_eq!(audit.subjects[0], "gojinn.audit.acme-co");
        assert!(audit.deny_delete && audit.deny_purge);
        assert_eq!(stream_names(&acme(1, None).name)[2], "GOJINN_JOBS_ACME_CO");
    }

    #[test]
    fn server_defaults_and_extras_are_not_differences() {
        let [desired, ..] = desired_streams(&acme(1, None));
        // What a server echoes back: unlimited as 0 or -1, metadata and consumer limits of its own.
        let mut echoed = desired.clone();
        echoed.max_messages = 0;
        echoed.max_message_size = 0;
        echoed.num_replicas = 1;
        echoed.metadata.insert("_nats.req.level".into(), "0".into());
        echoed.description = Some("set by someone".into());
        assert_eq!(Settings::of(&echoed), Settings::of(&desired));
    }

    #[test]
    fn owned_settings_are_differences() {
        let [desired, ..] = desired_streams(&acme(1, None));
        for changed in [
            desired_streams(&acme(3, None))[0].clone(),
            desired_streams(&acme(1, Some(1 << 20)))[0].clone(),
            Config { deny_delete: false, ..desired.clone() },
            Config { subjects: vec!["other.>".into()], ..desired.clone() },
        ] {
            assert_ne!(Settings::of(&changed), Settings::of(&desired), "{changed:?}");
        }
    }

    #[test]
    fn differences_name_the_field_the_actual_and_the_wanted_value() {
        let [desired, ..] = desired_streams(&acme(3, None));
        let [actual, ..] = desired_streams(&acme(1, Some(4096)));
        let actual = Config { deny_delete: false, ..actual };
        assert_eq!(
            Settings::of(&actual).differences(&Settings::of(&desired)),
            ["replicas 1, want 3", "max_bytes 4096, want unlimited", "deny_delete false, want true"]
        );
        assert!(Settings::of(&desired).differences(&Settings::of(&desired)).is_empty());
        let [_, _, jobs, ..] = desired_streams(&acme(3, None));
        let lines = Settings::of(&jobs).differences(&Settings::of(&desired));
        assert!(lines.iter().any(|l| l.starts_with("retention WorkQueue, want Limits")), "{lines:?}");
        assert!(lines.iter().any(|l| l == "duplicate_window 10m, want 2m"), "{lines:?}");
    }
}
