//! The `gojinn` command line.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use gojinn::config::NodeConfig;
use gojinn::server::Server;
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

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        tokio::select! {
            result = server.wait() => result?,
            _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
        }
        Ok(ExitCode::SUCCESS)
    })
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
