//! `gojinn audit verify`: reads a tenant's audit log, through a running node's admin API
//! (`--url`) or straight from the state backend (`--nats`, or the embedded store of a data dir
//! no running node holds), and verifies it with the keyring of the node's configuration.
//!
//! Exit codes: 0 the log verified, 1 a bad entry was found (named in the output), 2 the log
//! could not be read, the keys could not be loaded, or none of the log's receipts and
//! checkpoints verifies with them (the wrong keys, not a tampered log).

use super::client::{AdminClient, ClientError};
use super::token::TOKEN_FILE_NAME;
use crate::audit::log::{self, Stored};
use crate::audit::{
    Finding, KeyError, Keyring, Problem, Subject, Verdict, Window, any_verifies, key_file, read_keyring,
    verify,
};
use crate::config::{BackendKind, ConfigError, NodeConfig};
use crate::spec::Name;
use crate::state::embedded::{self, EmbeddedBackend};
use crate::state::nats::NatsBackend;
use crate::state::{AuditLog, StateError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Verify a tenant's audit log: every signature and chain; names the first bad receipt.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The tenant whose log to verify.
    #[arg(long)]
    pub tenant: String,
    /// Start at the first receipt of an execution that ended at or after this time (Unix ms).
    #[arg(long)]
    pub from: Option<u64>,
    /// Stop at the first receipt of an execution that ended at or after this time (Unix ms).
    #[arg(long)]
    pub to: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Node configuration file: its keys, data dir and state backend (default: the defaults).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The node's data dir (overrides the config): its keys, and its embedded store.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The master key file (default: audit.keyFile, or DATA_DIR/audit.key).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// A retired master key file, in addition to audit.previousKeyFiles (repeatable).
    #[arg(long = "previous-key-file")]
    pub previous_key_files: Vec<PathBuf>,
    /// Read the log through the admin API of the node at this URL.
    #[arg(long, conflicts_with = "nats")]
    pub url: Option<String>,
    /// The admin token file for --url (default: admin.tokenFile, or DATA_DIR/admin.token).
    #[arg(long, requires = "url")]
    pub token_file: Option<PathBuf>,
    /// Read the log from NATS JetStream at this URL (default: the config's state backend).
    #[arg(long)]
    pub nats: Option<String>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot load the audit keys: {0}")]
    Key(#[from] KeyError),
    #[error("invalid tenant name: {0}")]
    Tenant(String),
    #[error("cannot read the audit log: {0}")]
    State(#[from] StateError),
    #[error("cannot read the audit log: {0}")]
    Client(#[from] ClientError),
    #[error("no embedded store in {0} (pass the node's --data-dir, or --nats / --url)")]
    NoStore(PathBuf),
    #[error(
        "no receipt verified with the given key(s): wrong key? The log is signed with key id {signed}; \
         the keys given have id(s) {given} (pass the node's --key-file, or --previous-key-file for a \
         retired key)"
    )]
    WrongKeys { signed: String, given: String },
}

/// Records asked of the admin API at once.
const API_PAGE: usize = 5_000;

/// Runs `gojinn audit ...`.
pub async fn run(command: AuditCommand) -> ExitCode {
    let AuditCommand::Verify(args) = command;
    match read_and_verify(&args).await {
        Ok((records, verdict)) => {
            report(&args, &records, &verdict);
            if verdict.first_bad.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn read_and_verify(args: &VerifyArgs) -> Result<(Vec<Stored>, Verdict), CliError> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::from_file(path)?,
        None => NodeConfig::default(),
    };
    if let Some(data_dir) = &args.data_dir {
        config.data_dir = data_dir.clone();
    }
    let tenant = Name::new(&args.tenant).map_err(CliError::Tenant)?;
    let current = args.key_file.clone().unwrap_or_else(|| key_file(&config.audit, &config.data_dir));
    let previous: Vec<PathBuf> =
        config.audit.previous_key_files.iter().chain(&args.previous_key_files).cloned().collect();
    let keys = read_keyring(&current, &previous, false)?;
    let records = read(args, &config, &tenant).await?;
    let window = Window { from_ms: args.from, to_ms: args.to };
    let bytes: Vec<&[u8]> = records.iter().map(|(_, record)| record.as_ref()).collect();
    let verdict = verify(&keys, tenant.as_str(), &bytes, window);
    if let Some(signed) = foreign_key(&keys, tenant.as_str(), &bytes, &verdict) {
        return Err(CliError::WrongKeys { signed, given: keys.ids().join(", ") });
    }
    Ok((records, verdict))
}

/// The key id the log's first entry names when it is none of `keys`' and nothing of the log
/// verifies with them: the keys are wrong, which says nothing of the log. A log of which
/// anything verifies and the first entry does not is tampered with (or signed with several
/// keys, one of them missing); a bad signature under a key id of `keys` is tampering too.
fn foreign_key(keys: &Keyring, tenant: &str, records: &[&[u8]], verdict: &Verdict) -> Option<String> {
    match &verdict.first_bad.as_ref()?.problem {
        Problem::UnknownKey { key_id } if verdict.checked == 0 && !any_verifies(keys, tenant, records) => {
            Some(key_id.clone())
        }
        _ => None,
    }
}

/// The tenant's whole log, from where the arguments and the config say.
async fn read(args: &VerifyArgs, config: &NodeConfig, tenant: &Name) -> Result<Vec<Stored>, CliError> {
    if let Some(url) = &args.url {
        let token_file = args.token_file.clone().or_else(|| config.admin.token_file.clone());
        let client =
            AdminClient::new(url, &token_file.unwrap_or_else(|| config.data_dir.join(TOKEN_FILE_NAME)))?;
        return read_api(&client, tenant).await;
    }
    let mut state = config.state.clone();
    if let Some(url) = &args.nats {
        state.backend = BackendKind::Nats;
        state.nats_url = url.clone();
    }
    let audit: Arc<dyn AuditLog> = match state.backend {
        BackendKind::Nats => Arc::new(NatsBackend::open(&state).await?),
        BackendKind::Embedded => Arc::new(open_embedded(&config.data_dir.join("state"))?),
    };
    Ok(log::read_all(&*audit, tenant).await?)
}

/// The embedded store under `dir`, which must exist (opening creates a missing one).
fn open_embedded(dir: &Path) -> Result<EmbeddedBackend, CliError> {
    if !dir.join(embedded::FILE_NAME).is_file() {
        return Err(CliError::NoStore(dir.to_path_buf()));
    }
    EmbeddedBackend::open(dir).map_err(|error| match error {
        StateError::Unavailable(why) => CliError::State(StateError::Unavailable(format!(
            "{why}; if a node is running on this data dir, read through it with --url"
        ))),
        other => other.into(),
    })
}

async fn read_api(client: &AdminClient, tenant: &Name) -> Result<Vec<Stored>, CliError> {
    let mut records = Vec::new();
    loop {
        let after = records.last().map_or(0, |(sequence, _)| *sequence);
        let page = client.audit_records(tenant.as_str(), after, API_PAGE).await?;
        let full = page.len() == API_PAGE;
        records.extend(page);
        if !full {
            return Ok(records);
        }
    }
}

fn report(args: &VerifyArgs, records: &[Stored], verdict: &Verdict) {
    let sequence = |finding: &Finding| records.get(finding.record).map(|(sequence, _)| *sequence);
    match args.output {
        Format::Json => {
            let first_bad = verdict.first_bad.as_ref().map(|finding| {
                serde_json::json!({
                    "sequence": sequence(finding),
                    "record": finding.record,
                    "subject": finding.subject,
                    "problem": finding.problem,
                    "message": finding.problem.to_string(),
                })
            });
            let json = serde_json::json!({
                "tenant": args.tenant,
                "ok": first_bad.is_none(),
                "records": records.len(),
                "checked": verdict.checked,
                "repeated": verdict.repeated,
                "checkpoints": verdict.checkpoints,
                "chains": verdict.chains,
                "first_bad": first_bad,
            });
            println!("{}", serde_json::to_string_pretty(&json).expect("JSON serializes"));
        }
        Format::Text => match &verdict.first_bad {
            None => {
                println!(
                    "tenant {}: ok: {} receipt(s) in {} chain(s) and {} checkpoint(s) verified ({} record(s))",
                    args.tenant,
                    verdict.checked,
                    verdict.chains,
                    verdict.checkpoints,
                    records.len()
                );
                if verdict.repeated > 0 {
                    println!(
                        "{} receipt(s) were stored twice in a row by a retried append (an outage, not a \
                         replay) and counted once",
                        verdict.repeated
                    );
                }
            }
            Some(finding) => {
                let what = match &finding.subject {
                    Subject::Receipt { id } => format!("receipt {id}"),
                    Subject::Checkpoint { chain, seq } => format!("checkpoint of chain {chain} at seq {seq}"),
                    Subject::Record => "a record".to_owned(),
                };
                let at = sequence(finding).map_or_else(String::new, |s| format!(" (log sequence {s})"));
                println!("tenant {}: FAILED: {what}{at}: {}", args.tenant, finding.problem);
                println!("{} receipt(s) before it verified", verdict.checked);
            }
        },
    }
}
