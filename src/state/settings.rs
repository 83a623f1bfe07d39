//! The state backend's settings (`state:` in the node configuration), and the checks of the
//! NATS connection they describe that need no I/O: one credential form, TLS files in pairs, no
//! credentials in the URL, no plaintext to another machine unless allowed.

use crate::spec::Span;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where tenants' state lives.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StateSettings {
    pub backend: BackendKind,
    /// The most bytes of one job the embedded backend stores: an async call's request envelope
    /// (larger: 413 `job_too_large`) and its result (larger: cut to fit, with an error). On NATS
    /// the server's `max_payload` decides.
    pub max_job_bytes: crate::spec::ByteSize,
    /// NATS server URL(s), comma-separated, for the `nats` backend.
    pub nats_url: String,
    /// Replicas of the reconciler's shared control bucket and module object store (`nats`
    /// backend): 1, 3 or 5. Used when a node creates them; existing buckets keep theirs.
    #[serde(deserialize_with = "replica_count")]
    pub control_replicas: u8,
    /// How long a call waits for the state backend (`nats`) before it fails with 503
    /// `unavailable` (a guest's host call with `-5`); while the node is disconnected, at once.
    /// Connecting at start is bounded by it too.
    pub timeout: Span,
    /// The credentials the node presents to NATS, each read from a file.
    pub auth: Option<NatsAuth>,
    /// TLS to NATS: on when this section is present (even empty) or a URL is `tls://`.
    pub tls: Option<NatsTls>,
    /// Allows a connection without TLS to a NATS server that is not on this machine (a private
    /// network the operator trusts). Loopback servers never need it.
    pub allow_plaintext: bool,
}

/// How the node authenticates to NATS: one of `user` with `passwordFile`, `tokenFile`,
/// `nkeySeedFile` or `credsFile`. Secrets are named by file, never written in `gojinn.yaml`
/// (which is often in git); the `*File` names follow `admin.tokenFile` and `audit.keyFile`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NatsAuth {
    /// User name (not a secret), with `passwordFile`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    /// An NKey seed (`SU...`), as `nk -gen user` writes it.
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and NKey seed), as `nsc` writes it.
    pub creds_file: Option<PathBuf>,
}

/// TLS to NATS: the CA that signed the server's certificate (default: the system's roots) and
/// a client certificate with its key, for servers that verify clients.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NatsTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// One problem of the NATS settings: the setting as written in `gojinn.yaml`, and what is wrong.
pub type SettingProblem = (&'static str, String);

impl StateSettings {
    /// The `nats` backend's settings for the servers at `url`, the rest default.
    pub fn nats(url: &str) -> Self {
        Self { backend: BackendKind::Nats, nats_url: url.to_owned(), ..Self::default() }
    }

    /// The servers of `natsUrl`, trimmed, without empty entries.
    pub fn seeds(&self) -> Vec<&str> {
        self.nats_url.split(',').map(str::trim).filter(|seed| !seed.is_empty()).collect()
    }

    /// Whether the connection to NATS uses TLS: `state.tls` is set or a seed is `tls://` (then
    /// every server must speak TLS, discovered ones included).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
            || self.seeds().iter().any(|seed| {
                async_nats::ServerAddr::from_str(seed)
                    .is_ok_and(|addr| matches!(addr.scheme(), "tls" | "wss"))
            })
    }

    /// Every file the NATS settings name, with the setting that names it.
    pub fn nats_files(&self) -> Vec<(&'static str, &Path)> {
        let mut files = Vec::new();
        if let Some(auth) = &self.auth {
            files.extend(auth.password_file.as_deref().map(|path| ("state.auth.passwordFile", path)));
            files.extend(auth.token_file.as_deref().map(|path| ("state.auth.tokenFile", path)));
            files.extend(auth.nkey_seed_file.as_deref().map(|path| ("state.auth.nkeySeedFile", path)));
            files.extend(auth.creds_file.as_deref().map(|path| ("state.auth.credsFile", path)));
        }
        if let Some(tls) = &self.tls {
            files.extend(tls.ca_file.as_deref().map(|path| ("state.tls.caFile", path)));
            files.extend(tls.cert_file.as_deref().map(|path| ("state.tls.certFile", path)));
            files.extend(tls.key_file.as_deref().map(|path| ("state.tls.keyFile", path)));
        }
        files
    }

    /// What stops these settings from connecting to NATS, found without I/O (the files are
    /// checked where they are read).
    pub fn nats_problems(&self) -> Vec<SettingProblem> {
        let mut problems = Vec::new();
        if let Some(auth) = &self.auth {
            problems.extend(auth.problem());
        }
        if let Some(tls) = &self.tls {
            match (&tls.cert_file, &tls.key_file) {
                (Some(_), None) => problems.push(("state.tls.keyFile", "is required with certFile".into())),
                (None, Some(_)) => problems.push(("state.tls.certFile", "is required with keyFile".into())),
                _ => {}
            }
        }
        let seeds = self.seeds();
        if seeds.is_empty() {
            problems.push(("state.natsUrl", "names no server".into()));
        }
        let tls = self.uses_tls();
        for (index, seed) in seeds.iter().enumerate() {
            // The URL is not repeated: it may hold credentials, which must not reach a log.
            let addr = match async_nats::ServerAddr::from_str(seed) {
                Ok(addr) => addr,
                Err(error) => {
                    problems.push(("state.natsUrl", format!("server {} of the list: {error}", index + 1)));
                    continue;
                }
            };
            let host = addr.host();
            if addr.has_user_pass() {
                problems.push((
                    "state.natsUrl",
                    format!(
                        "the URL of {host} carries credentials (user:password@ or token@): name files in \
                         state.auth instead, so that no secret is written in the configuration"
                    ),
                ));
            } else if !tls && !self.allow_plaintext && !is_loopback(host) {
                problems.push((
                    "state.natsUrl",
                    format!(
                        "{}://{host}:{} is not on this machine and the connection would be plaintext \
                         (credentials, tenants' data and receipts readable on the network): use a tls:// \
                         URL or state.tls, or set state.allowPlaintext: true for a network you trust",
                        addr.scheme(),
                        addr.port()
                    ),
                ));
            }
        }
        problems
    }
}

impl NatsAuth {
    /// Unless exactly one credential form is given whole, what is wrong.
    fn problem(&self) -> Option<SettingProblem> {
        let forms = [
            (self.user.is_some() || self.password_file.is_some(), "user and passwordFile"),
            (self.token_file.is_some(), "tokenFile"),
            (self.nkey_seed_file.is_some(), "nkeySeedFile"),
            (self.creds_file.is_some(), "credsFile"),
        ];
        let given: Vec<&str> = forms.iter().filter(|(set, _)| *set).map(|(_, name)| *name).collect();
        match given.as_slice() {
            [] => Some((
                "state.auth",
                "names no credentials: give user and passwordFile, tokenFile, nkeySeedFile or credsFile"
                    .into(),
            )),
            [_] if self.user.is_some() != self.password_file.is_some() => match self.user {
                Some(_) => Some(("state.auth.passwordFile", "is required with user".into())),
                None => Some(("state.auth.user", "is required with passwordFile".into())),
            },
            [_] => None,
            several => {
                Some(("state.auth", format!("takes one form of credentials, not {}", several.join(", "))))
            }
        }
    }
}

/// Whether `host` (a URL's host, IPv6 without brackets) is this machine: 127.0.0.0/8, ::1 or
/// `localhost`.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A JetStream replica count: 1, 3 or 5.
fn replica_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let replicas = u8::deserialize(deserializer)?;
    if [1, 3, 5].contains(&replicas) {
        Ok(replicas)
    } else {
        Err(serde::de::Error::custom(format!("replicas must be 1, 3 or 5, not {replicas}")))
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A local store under `dataDir/state`, for a single node.
    #[default]
    Embedded,
    /// NATS JetStream, for clusters.
    Nats,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            backend: BackendKind::Embedded,
            max_job_bytes: crate::spec::ByteSize(super::embedded::DEFAULT_MAX_JOB_BYTES as u64),
            nats_url: "nats://127.0.0.1:4222".into(),
            control_replicas: 1,
            timeout: Span(super::nats::DEFAULT_TIMEOUT),
            auth: None,
            tls: None,
            allow_plaintext: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> StateSettings {
        serde_norway::from_str(yaml).unwrap()
    }

    fn problems(yaml: &str) -> Vec<String> {
        parse(yaml)
            .nats_problems()
            .into_iter()
            .map(|(setting, message)| format!("{setting}: {message}"))
            .collect()
    }

    #[test]
    fn loopback_servers_may_be_plaintext_and_others_only_when_allowed() {
        for local in [
            "nats://127.0.0.1:4222",
            "127.0.0.9:4222",
            "nats://[::1]:4222",
            "nats://localhost",
            "LOCALHOST:1",
        ] {
            assert_eq!(problems(&format!("natsUrl: {local:?}")), Vec::<String>::new(), "{local}");
        }
        let refused = problems("natsUrl: nats://127.0.0.1:4222,nats://10.0.0.5:4222");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].starts_with("state.natsUrl: nats://10.0.0.5:4222 is not on this machine and the connection would be plaintext"),
            "{refused:?}"
        );
        assert!(problems("natsUrl: nats://nats.internal:4222").len() == 1, "a host name is not loopback");
        assert!(problems("{ natsUrl: nats://10.0.0.5:4222, allowPlaintext: true }").is_empty());
        assert!(problems("{ natsUrl: nats://10.0.0.5:4222, tls: {} }").is_empty(), "state.tls turns TLS on");
        assert!(problems("natsUrl: tls://10.0.0.5:4222").is_empty());
        assert!(parse("natsUrl: nats://a:1,tls://b:2").uses_tls(), "one tls:// seed requires TLS of all");
        assert!(!parse("natsUrl: nats://a:1").uses_tls());
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_repeating_them() {
        for url in ["nats://gojinn:hunter2@127.0.0.1:4222", "tls://s3cr3t-token@10.0.0.5:4222"] {
            let found = problems(&format!("natsUrl: {url:?}"));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].contains("carries credentials") && found[0].contains("state.auth"), "{found:?}");
            assert!(!found[0].contains("hunter2") && !found[0].contains("s3cr3t"), "{found:?}");
        }
    }

    #[test]
    fn auth_takes_exactly_one_whole_form_and_tls_files_come_in_pairs() {
        assert!(problems("auth: { user: gojinn, passwordFile: /p }").is_empty());
        assert!(problems("auth: { tokenFile: /t }").is_empty());
        assert!(problems("auth: { nkeySeedFile: /n }").is_empty());
        assert!(problems("auth: { credsFile: /c }").is_empty());
        assert_eq!(problems("auth: { user: gojinn }"), ["state.auth.passwordFile: is required with user"]);
        assert_eq!(
            problems("auth: { passwordFile: /p }"),
            ["state.auth.user: is required with passwordFile"]
        );
        assert_eq!(
            problems("auth: { tokenFile: /t, credsFile: /c }"),
            ["state.auth: takes one form of credentials, not tokenFile, credsFile"]
        );
        assert!(problems("auth: {}")[0].starts_with("state.auth: names no credentials"));
        assert_eq!(problems("tls: { certFile: /c }"), ["state.tls.keyFile: is required with certFile"]);
        assert_eq!(problems("tls: { keyFile: /k }"), ["state.tls.certFile: is required with keyFile"]);
        let error = serde_norway::from_str::<StateSettings>("auth: { password: hunter2 }").unwrap_err();
        assert!(error.to_string().contains("unknown field `password`"), "{error}");
    }

    #[test]
    fn every_named_file_is_listed_with_its_setting() {
        let settings =
            parse("{ auth: { user: u, passwordFile: /p }, tls: { caFile: /ca, certFile: /c, keyFile: /k } }");
        let files: Vec<(&str, &str)> =
            settings.nats_files().into_iter().map(|(key, path)| (key, path.to_str().unwrap())).collect();
        assert_eq!(
            files,
            [
                ("state.auth.passwordFile", "/p"),
                ("state.tls.caFile", "/ca"),
                ("state.tls.certFile", "/c"),
                ("state.tls.keyFile", "/k")
            ]
        );
    }
}
