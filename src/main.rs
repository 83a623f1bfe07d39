//! The `gojinn` command line.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use gojinn::api::client::AdminClient;
use gojinn::config::NodeConfig;
use gojinn::jobs::{JobId, parse_status, status_name};
use gojinn::reconcile::source::Source;
use gojinn::reconcile::{Admitted, Reconciler, render};
use gojinn::server::Server;
use gojinn::state::{JobRecord, JobStatus};
use std::io::IsTerminal;
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
    /// Check a spec directory as a deploy would (documents, modules, host imports, limits) and
    /// print every problem with file, line and field.
    Validate {
        /// The spec directory.
        #[arg(long, default_value = "specs")]
        specs: PathBuf,
        /// The node configuration to check modules against (default: the defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
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
    /// Show what `apply` would change, per resource, with the fields that change. Writes nothing
    /// and takes no lock, so it runs beside a node. Exit code 0: planned (whatever the changes);
    /// 1: an error, invalid or denied specs. With --detailed-exitcode, 2 when there are changes.
    Plan {
        #[command(flatten)]
        args: ReconcileArgs,
        /// Exit 0 only when there is nothing to change, 2 when there are changes, 1 on an error
        /// (as `terraform plan -detailed-exitcode`).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Reconcile the state backend with the specs: provision tenants, store modules, prune what
    /// was removed, correct drift. Exit code 0: everything applied; 1: anything failed or was
    /// refused (the rest is applied).
    Apply(ReconcileArgs),
    /// Show per-resource status and the applied commit, through a running node's admin API.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the JSON Schema of the spec documents (Tenant, Function), for editors.
    Schema,
    /// List, show and redrive async jobs through a running node's admin API.
    Jobs(JobsArgs),
    /// Verify tenants' signed receipts.
    Audit {
        #[command(subcommand)]
        command: gojinn::api::audit_cli::AuditCommand,
    },
    /// Make tenants' API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Tools for trying Gojinn on one machine.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new API key for TENANT: prints the key once (it is kept nowhere) and the line to
    /// paste under the Tenant's spec.apiKeys, which holds only its sha256.
    New {
        /// The tenant the key is for.
        tenant: String,
        /// The key's name, unique within the tenant (default: key- and the digest's first 8 digits).
        #[arg(long)]
        name: Option<String>,
        /// What the key opens: invoke, jobs, receipts or mcp; repeat for more (default: all four).
        #[arg(long = "scope")]
        scopes: Vec<gojinn::spec::Scope>,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// Run a cluster on loopback: N nats-servers routed to each other with JetStream and N gojinn
    /// nodes serving one spec directory through them; prints their URLs; one Ctrl-C (or SIGTERM)
    /// stops all of them, a second at once.
    Cluster(DevClusterArgs),
}

#[derive(clap::Args)]
struct DevClusterArgs {
    /// gojinn nodes and nats-servers, each (1 to 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Where the cluster keeps its data, configuration and logs (reused when it exists).
    #[arg(long, default_value = "gojinn-cluster")]
    dir: PathBuf,
    /// The spec directory every node serves.
    #[arg(long, default_value = "specs")]
    specs: PathBuf,
    /// The first node's HTTP port, the others following it; 0: free ports.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The first nats-server's client port, the others following it (routes 2000 above,
    /// monitoring 4000 above); 0: free ports.
    #[arg(long, default_value_t = 4222)]
    nats_port: u16,
    /// The nats-server binary (default: nats-server on PATH).
    #[arg(long, value_name = "PATH")]
    nats_server: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Node configuration file (default: ./gojinn.yaml when it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The spec directory to serve.
    #[arg(long)]
    specs: Option<PathBuf>,
    /// Address to listen on: IP:PORT, [IPv6]:PORT, :PORT (every IPv4 interface) or localhost:PORT.
    #[arg(long, value_parser = gojinn::config::parse_listen)]
    listen: Option<SocketAddr>,
    /// A second address for the admin API, metrics and MCP (`admin.listen`), which `--listen`
    /// then no longer serves.
    #[arg(long, value_parser = gojinn::config::parse_listen)]
    admin_listen: Option<SocketAddr>,
    /// Where the node keeps its state.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Reconcile from this git repository (URL, or local path) instead of a spec directory.
    #[arg(long, value_name = "URL")]
    specs_git: Option<String>,
    /// Branch, tag or commit of --specs-git (default: the remote's HEAD).
    #[arg(long = "ref", requires = "specs_git")]
    reference: Option<String>,
    /// How often to fetch and reconcile --specs-git, e.g. 30s.
    #[arg(long, value_name = "INTERVAL", value_parser = humantime::parse_duration)]
    watch: Option<std::time::Duration>,
    /// Reconcile only at startup and on POST /_gojinn/v1/reconcile, not when the specs change.
    #[arg(long, conflicts_with = "watch")]
    no_watch: bool,
    /// Keep state in NATS JetStream at this URL instead of the embedded store.
    #[arg(long)]
    nats: Option<String>,
}

#[derive(clap::Args)]
struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    #[command(flatten)]
    admin: AdminArgs,
}

/// How to reach a running node's admin API.
#[derive(clap::Args)]
struct AdminArgs {
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

#[derive(clap::Args)]
struct ReconcileArgs {
    /// The specs: a directory, or a git repository (URL, or a local path with --ref).
    source: String,
    /// Branch, tag or commit of a git source (default: the remote's HEAD).
    #[arg(long = "ref")]
    reference: Option<String>,
    /// Node configuration file, for the state backend and data dir (default: ./gojinn.yaml when
    /// it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Use the NATS JetStream backend at this URL.
    #[arg(long)]
    nats: Option<String>,
    /// The data dir (embedded state, git checkouts).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Skip the default admission policies shipped with gojinn (the operator's policies/*.rego
    /// in the source still apply).
    #[arg(long)]
    no_default_policies: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
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
        _ => gojinn::telemetry::init_command(),
    };
    match logs.map_err(anyhow::Error::from).and_then(|()| run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_text(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once: a cause whose text the message above it already
/// includes (`cannot read x: No such file` over `No such file`) is not repeated.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if cause.is_empty() || text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Validate { specs, config, output } => validate(&specs, config.as_deref(), output),
        Command::Jobs(args) => jobs(args),
        Command::Plan { args, detailed_exitcode } => plan(args, detailed_exitcode),
        Command::Apply(args) => apply(args),
        Command::Status { admin } => status(admin),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&gojinn::spec::schema::schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev { command: DevCommand::Cluster(args) } => dev_cluster(args),
        Command::Keys { command: KeysCommand::New { tenant, name, scopes } } => {
            let tenant = gojinn::spec::Name::new(&tenant).map_err(|e| anyhow::anyhow!("tenant: {e}"))?;
            let new = gojinn::api::keys::generate();
            let name = name.unwrap_or_else(|| format!("key-{}", &new.sha256[..8]));
            let name = gojinn::spec::Name::new(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            println!("API key {name} of tenant {tenant}, shown this once and kept nowhere:");
            println!("  {}", new.key);
            println!("Paste under spec.apiKeys of Tenant {tenant}:");
            println!("  {}", gojinn::api::keys::spec_line(&name, &new.sha256, &scopes));
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            Ok(runtime.block_on(gojinn::api::audit_cli::run(command)))
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
        // A spec file named gojinn.yaml (as `gojinn new` wrote before it wrote specs.yaml) is not
        // a node config.
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
    if let Some(listen) = args.admin_listen {
        config.admin.listen = Some(listen);
    }
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    config.watch &= !args.no_watch;
    if let Some(url) = args.specs_git {
        config.reconcile.git = Some(url);
        config.reconcile.reference = args.reference;
    }
    if let Some(interval) = args.watch {
        anyhow::ensure!(!interval.is_zero(), "--watch must be longer than zero");
        config.reconcile.interval = gojinn::spec::Span(interval);
        config.watch = true;
    }
    if let Some(url) = args.nats {
        config.state.backend = gojinn::config::BackendKind::Nats;
        config.state.nats_url = url;
    }
    let export = gojinn::telemetry::ExportConfig::from_env(&config.telemetry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        // Dropped last, inside the runtime: sends the spans still queued.
        let _telemetry = gojinn::telemetry::init(export.as_ref())?;
        let mut signals = Signals::new()?;
        let mut server = Server::start(config).await?;
        let ended = tokio::select! {
            result = server.wait() => Some(result),
            () = signals.next() => None,
        };
        match ended {
            Some(result) => result?,
            None => tokio::select! {
                stopped = server.stop() => stopped?,
                () = signals.next() => {
                    tracing::error!(
                        "a second signal: exiting at once; requests in flight are cut, running jobs are delivered again after their ack wait, receipts still queued are lost"
                    );
                    // Waits for nothing more: not the runtime's tasks, not the span export.
                    std::process::exit(SECOND_SIGNAL_EXIT);
                }
            },
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `gojinn dev cluster`: starts it, prints where it is, runs until a signal.
fn dev_cluster(args: DevClusterArgs) -> anyhow::Result<ExitCode> {
    let options = gojinn::dev::ClusterOptions {
        nodes: args.nodes,
        dir: args.dir,
        specs: args.specs,
        port: args.port,
        nats_port: args.nats_port,
        gojinn: std::env::current_exe().context("finding the gojinn binary to run the nodes with")?,
        nats_server: args.nats_server,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = Signals::new()?;
        let mut cluster = tokio::select! {
            started = gojinn::dev::Cluster::start(&options) => started?,
            () = signals.next() => return Ok(ExitCode::from(SECOND_SIGNAL_EXIT as u8)),
        };
        println!("{}", cluster.describe());
        let exited = tokio::select! {
            exited = cluster.exited() => Some(exited),
            () = signals.next() => None,
        };
        match &exited {
            Some(error) => eprintln!("error: {error}; stopping the rest"),
            None => println!(
                "stopping: the gojinn nodes, then the nats-servers (Ctrl-C again: kill them at once)"
            ),
        }
        let interrupted = tokio::select! {
            () = cluster.stop() => false,
            () = signals.next() => true,
        };
        if interrupted {
            cluster.kill();
            eprintln!("a second signal: killed every process of the cluster");
            return Ok(ExitCode::from(SECOND_SIGNAL_EXIT as u8));
        }
        if exited.is_some() {
            return Ok(ExitCode::FAILURE);
        }
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The exit code after a second stop signal cut the graceful stop short: 128 + SIGINT, as a
/// shell reports a process ended by Ctrl-C.
const SECOND_SIGNAL_EXIT: i32 = 130;

/// Ctrl-C and SIGTERM, listened for from the start so that neither ends the process the
/// default way while the node runs or stops.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The node configuration a `plan` or `apply` works with: `--config` (or ./gojinn.yaml), with
/// the command line's `--data-dir` and `--nats` over it.
fn reconcile_config(args: &ReconcileArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::from_file(path)?,
        None if PathBuf::from("gojinn.yaml").is_file() => NodeConfig::from_file("gojinn.yaml".as_ref())?,
        None => NodeConfig::default(),
    };
    if let Some(data_dir) = &args.data_dir {
        config.data_dir = data_dir.clone();
    }
    if let Some(url) = &args.nats {
        config.state.backend = gojinn::config::BackendKind::Nats;
        config.state.nats_url = url.clone();
    }
    Ok(config)
}

/// `gojinn plan`: reads the state backend beside whatever node writes it (the embedded store
/// read-only, a git source checked out into a temporary directory) and writes nothing.
fn plan(args: ReconcileArgs, detailed_exitcode: bool) -> anyhow::Result<ExitCode> {
    let config = reconcile_config(&args)?;
    let source = Source::parse(&args.source, args.reference.as_deref());
    let scratch = matches!(source, Source::Git { .. })
        .then(tempfile::tempdir)
        .transpose()
        .context("creating a temporary directory for the git checkout")?;
    let work_dir = scratch.as_ref().map_or(std::path::Path::new("."), |dir| dir.path());
    let admitted = Admitted::read(&source, work_dir, !args.no_default_policies, &config.spec_bounds())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let state = runtime
        .block_on(gojinn::state::open_read_only(&config.state, &config.data_dir))
        .context("opening the state backend")?;
    let plan = runtime.block_on(Reconciler::new(state).plan(&admitted))?;
    match args.output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(&render::document(&plan, &admitted, None))?);
        }
        Output::Text => print!(
            "{}",
            render::plan_text(&plan, &admitted, gojinn::telemetry::colored(std::io::stdout().is_terminal()))
        ),
    }
    let refused = !admitted.denials.is_empty() || !admitted.invalid.is_empty();
    Ok(match (refused, detailed_exitcode && !plan.is_empty()) {
        (true, _) => ExitCode::FAILURE,
        (false, true) => ExitCode::from(2),
        (false, false) => ExitCode::SUCCESS,
    })
}

/// `gojinn apply`, straight against the state backend, under the nodes' reconcile lease.
fn apply(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let config = reconcile_config(&args)?;
    let source = Source::parse(&args.source, args.reference.as_deref());
    let bounds = config.spec_bounds();
    let admitted =
        Admitted::read(&source, &config.data_dir.join("sources"), !args.no_default_policies, &bounds)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let state = runtime
        .block_on(gojinn::state::open(&config.state, &config.data_dir))
        .context("opening the state backend (a running node holds the embedded store: stop it, or trigger it with POST /_gojinn/v1/reconcile)")?;
    // The same lease the nodes take: never two reconcilers at once.
    let report = runtime.block_on(Reconciler::new(state).apply_under_lease(&admitted))?;
    match args.output {
        Output::Json => {
            let document = render::document(&report.plan, &admitted, Some(&report));
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        Output::Text => print!(
            "{}",
            render::apply_text(
                &report,
                &admitted,
                gojinn::telemetry::colored(std::io::stdout().is_terminal())
            )
        ),
    }
    let refused = !admitted.denials.is_empty() || !admitted.invalid.is_empty();
    let failed = report.failures().next().is_some();
    Ok(if failed || refused { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn status(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&args.url, &args.token_file)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = runtime.block_on(client.status())?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Text => print!(
            "{}",
            render::status_text(&status, gojinn::telemetry::colored(std::io::stdout().is_terminal()))
        ),
    }
    let healthy = !status.partial
        && status.resources.iter().all(|r| r.state == gojinn::reconcile::ResourceState::Applied);
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn jobs(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let JobsArgs { command, admin: args } = args;
    let client = AdminClient::new(&args.url, &args.token_file)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let parse_id =
        |id: &str| JobId::parse(id).with_context(|| format!("{id:?} is not a job id (tenant.hex)"));
    let job = match command {
        JobsCommand::List { tenant, status, limit } => {
            let jobs = runtime.block_on(client.list(&tenant, status, limit))?;
            match args.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&jobs)?),
                Output::Text => println!("{}", job_table(&jobs)),
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

/// Jobs as a table with aligned columns, as `kubectl get` prints resources.
fn job_table(jobs: &[JobRecord]) -> String {
    use comfy_table::{CellAlignment, Table, presets::NOTHING};
    let mut table = Table::new();
    table.load_style(NOTHING).set_header(["ID", "FUNCTION", "STATUS", "ATTEMPTS", "UPDATED", "ERROR"]);
    for job in jobs {
        let error = job.error.as_deref().unwrap_or("").lines().next().unwrap_or("");
        table.add_row([
            job.id.clone(),
            job.function.to_string(),
            status_name(job.status).to_owned(),
            job.attempts.to_string(),
            timestamp(job.updated_ms),
            error.to_owned(),
        ]);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    if let Some(attempts) = table.column_mut(3) {
        attempts.set_cell_alignment(CellAlignment::Right);
    }
    table.trim_fmt()
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
fn validate(
    specs: &std::path::Path,
    config: Option<&std::path::Path>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let config = match config {
        Some(path) => NodeConfig::from_file(path)?,
        None => NodeConfig::default(),
    };
    let report = gojinn::validate::validate(specs, &config)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, function: &str, error: Option<&str>) -> JobRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "tenant": "acme", "function": function, "status": "dead", "attempts": 12,
            "created_ms": 0, "updated_ms": 0, "error": error,
        }))
        .expect("a job record")
    }

    #[test]
    fn job_columns_line_up_whatever_the_lengths() {
        let jobs = [
            job("acme.01", "a", Some("first line\nsecond line")),
            job("acme.0123456789abcdef", "a-function-name-longer-than-twenty", None),
        ];
        let table = job_table(&jobs);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let column = |line: &str, word: &str| line.find(word).unwrap_or_else(|| panic!("{word} in {line:?}"));
        let status = column(lines[0], "STATUS");
        assert!(lines[1..].iter().all(|line| column(line, "dead") == status), "{table}");
        let attempts_end = column(lines[0], "ATTEMPTS") + "ATTEMPTS".len();
        let attempts = |line: &str| line.rfind("12").expect("attempts") + 2;
        assert!(lines[1..].iter().all(|line| attempts(line) == attempts_end), "right-aligned: {table}");
        assert!(!table.contains("second line"), "only an error's first line: {table}");
        assert!(lines.iter().all(|line| !line.ends_with(' ')), "{table:?}");
    }
}
