//! The `gojinn` command line.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use gojinn::api::client::AdminClient;
use gojinn::config::NodeConfig;
use gojinn::jobs::{JobId, parse_status, status_name};
use gojinn::server::Server;
use gojinn::state::{JobRecord, JobStatus};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Instantiating a guest per request allocates and frees many small objects on several threads;
/// mimalloc does this markedly faster than the system allocator (see benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gojinn", version, about = "Self-hosted serverless platform for WebAssembly functions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the functions of a spec directory over HTTP, redeploying when it changes.
    Serve(ServeArgs),
    /// Check a spec directory and print every problem with file, line and field.
    Validate {
        /// The spec directory.
        #[arg(long, default_value = "specs")]
        specs: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Create a new Rust function project.
    New {
        /// Function name (lowercase letters, digits and '-').
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Tenant the function belongs to.
        #[arg(long, default_value = "demo")]
        tenant: String,
        /// Path of the gojinn-sdk crate (default: the SDK of the source tree gojinn was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// List, show and redrive async jobs through a running node's admin API.
    Jobs(JobsArgs),
    /// Verify tenants' signed receipts.
    Audit {
        #[command(subcommand)]
        command: gojinn::audit::cli::AuditCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Node configuration file (default: ./gojinn.yaml when it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The spec directory to serve.
    #[arg(long)]
    specs: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the node keeps its state.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Do not redeploy when the spec directory changes.
    #[arg(long)]
    no_watch: bool,
    /// Keep state in NATS JetStream at this URL instead of the embedded store.
    #[arg(long)]
    nats: Option<String>,
}

#[derive(clap::Args)]
struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    /// The node's HTTP address.
    #[arg(long, global = true, env = "GOJINN_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// File holding the admin token (the node writes one to DATA_DIR/admin.token unless
    /// admin.tokenFile is configured).
    #[arg(long, global = true, env = "GOJINN_TOKEN_FILE", default_value = "gojinn-data/admin.token")]
    token_file: PathBuf,
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List a tenant's jobs, newest first.
    List {
        /// The tenant.
        tenant: String,
        /// Only jobs with this status: queued, running, succeeded, failed or dead.
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        /// The most jobs to list (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one job: status, attempts, timestamps, and its result or last error.
    Show {
        /// The job id (`tenant.hex`), as the 202 response gave it.
        id: String,
    },
    /// Queue a dead job again, with a fresh attempt count.
    Redrive {
        /// The job id (`tenant.hex`).
        id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up tracing itself, inside its runtime, where span export runs.
    let logs = match cli.command {
        Command::Serve(_) => Ok(()),
        _ => gojinn::telemetry::init(None).map(drop),
    };
    match logs.map_err(anyhow::Error::from).and_then(|()| run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Validate { specs, output } => validate(&specs, output),
        Command::Jobs(args) => jobs(args),
        Command::Audit { command } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            Ok(runtime.block_on(gojinn::audit::cli::run(command)))
        }
        Command::New { name, path, tenant, sdk } => {
            let sdk = match sdk.or_else(gojinn::scaffold::bundled_sdk) {
                Some(sdk) => std::path::absolute(&sdk).unwrap_or(sdk),
                None => bail!("cannot find the gojinn-sdk crate; pass --sdk PATH/TO/gojinn/sdk/rust"),
            };
            let dir = path.unwrap_or_else(|| PathBuf::from(&name));
            gojinn::scaffold::create(&dir, &name, &tenant, &sdk)?;
            println!("Created {}. Next:", dir.display());
            println!("  cd {} && cargo build --release --target wasm32-wasip1", dir.display());
            println!("  gojinn serve --specs .");
            println!("  curl 'http://127.0.0.1:8080/{tenant}/{name}?name=you'");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let default_config = PathBuf::from("gojinn.yaml");
    let mut config = match &args.config {
        Some(path) => NodeConfig::from_file(path)?,
        // A spec file named gojinn.yaml (as `gojinn new` writes) is not a node config.
        None if default_config.is_file() && args.specs.is_none() => NodeConfig::from_file(&default_config)
            .context("reading ./gojinn.yaml (pass --config or --specs)")?,
        None => NodeConfig::default(),
    };
    if let Some(specs) = args.specs {
        config.specs = specs;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    config.watch &= !args.no_watch;
    if let Some(url) = args.nats {
        config.state.backend = gojinn::config::BackendKind::Nats;
        config.state.nats_url = url;
    }
    let export = gojinn::telemetry::ExportConfig::from_env(&config.telemetry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        // Dropped last, inside the runtime: sends the spans still queued.
        let _telemetry = gojinn::telemetry::init(export.as_ref())?;
        let mut server = Server::start(config).await?;
        let ended = tokio::select! {
            result = server.wait() => Some(result),
            () = shutdown_signal() => None,
        };
        match ended {
            Some(result) => result?,
            None => {
                tracing::info!("shutting down: finishing requests and running jobs");
                server.stop().await?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn jobs(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&args.url, &args.token_file)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let parse_id =
        |id: &str| JobId::parse(id).with_context(|| format!("{id:?} is not a job id (tenant.hex)"));
    let job = match args.command {
        JobsCommand::List { tenant, status, limit } => {
            let jobs = runtime.block_on(client.list(&tenant, status, limit))?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&jobs)?),
                Output::Text => print_job_table(&jobs),
            }
            return Ok(ExitCode::SUCCESS);
        }
        JobsCommand::Show { id } => runtime.block_on(client.show(&parse_id(&id)?))?,
        JobsCommand::Redrive { id } => runtime.block_on(client.redrive(&parse_id(&id)?))?,
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&job)?),
        Output::Text => print_job(&job),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_job_table(jobs: &[JobRecord]) {
    let width = jobs.iter().map(|job| job.id.len()).max().unwrap_or(2).max(2);
    println!(
        "{:<width$}  {:<20}  {:<9}  {:>8}  {:<20}  ERROR",
        "ID", "FUNCTION", "STATUS", "ATTEMPTS", "UPDATED"
    );
    for job in jobs {
        let error = job.error.as_deref().unwrap_or("").lines().next().unwrap_or("");
        println!(
            "{:<width$}  {:<20}  {:<9}  {:>8}  {:<20}  {error}",
            job.id,
            job.function,
            status_name(job.status),
            job.attempts,
            timestamp(job.updated_ms)
        );
    }
}

fn print_job(job: &JobRecord) {
    println!("id:        {}", job.id);
    println!("function:  {}/{}", job.tenant, job.function);
    println!("status:    {}", status_name(job.status));
    println!("attempts:  {}", job.attempts);
    println!("created:   {}", timestamp(job.created_ms));
    println!("updated:   {}", timestamp(job.updated_ms));
    if let Some(error) = &job.error {
        println!("error:     {error}");
    }
    if let Some(result) = &job.result {
        println!("result:    {}", serde_json::to_string_pretty(result).unwrap_or_default());
    }
}

/// Unix milliseconds as RFC 3339, to the second.
fn timestamp(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Exit codes: 0 valid, 1 invalid documents.
fn validate(specs: &std::path::Path, output: Output) -> anyhow::Result<ExitCode> {
    let report = gojinn::spec::load_dir(specs);
    match output {
        Output::Text => {
            eprint!("{}", report.error_text());
            println!(
                "{} tenant(s), {} function(s), {} error(s)",
                report.state.tenants.len(),
                report.state.functions.len(),
                report.errors.len()
            );
        }
        Output::Json => {
            let json = serde_json::json!({ "desired": report.state, "errors": report.errors });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }
    Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
