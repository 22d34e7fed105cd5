//! `jobqueue` binary: parses the environment, then runs one subcommand.
//!
//! Exit codes: 0 done (including a graceful shutdown), 64 bad usage or
//! configuration (one line on stderr naming the variable), 1 runtime error.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jobqueue::config::{
    ApiConfig, ConfigError, DbConfig, Env, LogConfig, ReaperConfig, WorkerConfig,
};

const EX_USAGE: u8 = 64;

/// The command line: a subcommand only. Every setting is an environment
/// variable (DATABASE_URL is required; see README.md), as in a pod spec.
#[derive(Parser)]
#[command(
    name = "jobqueue",
    version,
    about = "A PostgreSQL job-queue runtime: API, workers, reaper, migrations",
    after_help = "Configuration is by environment variables (DATABASE_URL is required); see README.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand, Clone, Copy)]
enum Sub {
    /// Apply database migrations (idempotent; safe to run concurrently)
    Migrate,
    /// HTTP API on API_LISTEN (default 0.0.0.0:8000)
    Api,
    /// Run jobs; /metrics, /healthz, /readyz on METRICS_LISTEN (default 0.0.0.0:9090)
    Worker,
    /// Re-queue expired leases, delete old jobs, export queue depth
    Reaper,
    /// Print the version
    #[command(hide = true)]
    Version,
}

enum Command {
    Migrate,
    Api(ApiConfig),
    Worker(WorkerConfig),
    Reaper(ReaperConfig),
}

fn config_error(e: ConfigError) -> ExitCode {
    eprintln!("jobqueue: invalid configuration: {e}");
    ExitCode::from(EX_USAGE)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, exit 64 (EX_USAGE), like a bad variable.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad command line");
            eprintln!("jobqueue: {first}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Sub::Version = cli.command {
        println!("jobqueue {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let env = Env::process();
    let log = match LogConfig::from_env(&env) {
        Ok(l) => l,
        Err(e) => return config_error(e),
    };
    let db = match DbConfig::from_env(&env) {
        Ok(d) => d,
        Err(e) => return config_error(e),
    };
    let command = match cli.command {
        Sub::Migrate | Sub::Version => Ok(Command::Migrate),
        Sub::Api => ApiConfig::from_env(&env).map(Command::Api),
        Sub::Worker => WorkerConfig::from_env(&env).map(Command::Worker),
        Sub::Reaper => ReaperConfig::from_env(&env).map(Command::Reaper),
    };
    let command = match command {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    jobqueue::telemetry::init(&log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jobqueue: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command, db)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, db: DbConfig) -> anyhow::Result<()> {
    tracing::info!(database = %jobqueue::db::redact(&db.url), version = env!("CARGO_PKG_VERSION"), "starting");
    match command {
        Command::Migrate => migrate(&db).await,
        Command::Api(cfg) => {
            let shutdown = jobqueue::shutdown::from_signals()?;
            Ok(jobqueue::api::run(&db, &cfg, shutdown).await?)
        }
        Command::Worker(cfg) => {
            let shutdown = jobqueue::shutdown::from_signals()?;
            let worker =
                jobqueue::Worker::new(&db.url, jobqueue::Registry::with_builtins(), cfg.worker)?;
            // The ops server outlives the drain so /metrics stays scrapable.
            let (ops_stop, ops_shutdown) = jobqueue::shutdown::Shutdown::manual();
            let ops = jobqueue::ops::serve(
                cfg.metrics_listen,
                worker.metrics(),
                worker.readiness(),
                ops_shutdown,
            )
            .await
            .map_err(|e| anyhow::anyhow!("METRICS_LISTEN {}: {e}", cfg.metrics_listen))?;
            let result = worker.run(shutdown).await;
            let _ = ops_stop.send(true);
            let _ = ops.await;
            Ok(result?)
        }
        Command::Reaper(cfg) => {
            let shutdown = jobqueue::shutdown::from_signals()?;
            let reaper = jobqueue::Reaper::new(&db.url, jobqueue::ReaperOptions::from(&cfg))?;
            let (ops_stop, ops_shutdown) = jobqueue::shutdown::Shutdown::manual();
            let ops = jobqueue::ops::serve(
                cfg.metrics_listen,
                reaper.metrics(),
                reaper.readiness(),
                ops_shutdown,
            )
            .await
            .map_err(|e| anyhow::anyhow!("METRICS_LISTEN {}: {e}", cfg.metrics_listen))?;
            let result = reaper.run(shutdown).await;
            let _ = ops_stop.send(true);
            let _ = ops.await;
            Ok(result?)
        }
    }
}

/// Retries the connection for up to 60 s: a migration Job often starts
/// before the database accepts connections. A TLS failure (untrusted
/// certificate, no TLS on the server) is not retried: waiting cannot fix it.
async fn migrate(db: &DbConfig) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut client = loop {
        match jobqueue::db::connect(&db.url).await {
            Ok(c) => break c,
            Err(jobqueue::Error::Tls(reason)) => {
                anyhow::bail!("connecting to the database: {reason}");
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("connecting to the database")),
        }
    };
    let applied = jobqueue::migrate::run(&mut client).await?;
    let version = jobqueue::migrate::current_version(&client).await?;
    tracing::info!(applied = ?applied, schema_version = version, "migrations done");
    Ok(())
}
