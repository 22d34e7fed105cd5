//! `jobqueue` binary: parses the environment, then runs one subcommand.
//!
//! Exit codes: 0 done (including a graceful shutdown), 64 bad usage or
//! configuration (one line on stderr naming the variable), 1 runtime error.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use jobqueue::config::{
    ApiConfig, ConfigError, DbConfig, Env, LogConfig, ReaperConfig, WorkerConfig,
};

const USAGE: &str = "usage: jobqueue <migrate|api|worker|reaper>

  migrate   apply database migrations (idempotent; safe to run concurrently)
  api       HTTP API on API_LISTEN (default 0.0.0.0:8000)
  worker    run jobs; /metrics, /healthz, /readyz on METRICS_LISTEN (default 0.0.0.0:9090)
  reaper    re-queue expired leases, delete old jobs, export queue depth

Configuration is by environment variables (DATABASE_URL is required); see README.md.";

enum Command {
    Migrate,
    Api(ApiConfig),
    Worker(WorkerConfig),
    Reaper(ReaperConfig),
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("jobqueue: {msg}");
    ExitCode::from(64)
}

fn config_error(e: ConfigError) -> ExitCode {
    eprintln!("jobqueue: invalid configuration: {e}");
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sub = match args.first().map(String::as_str) {
        Some("--version" | "-V" | "version") => {
            println!("jobqueue {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        None => {
            return usage_error("missing subcommand (migrate, api, worker, reaper); see --help")
        }
        Some(s) => s.to_string(),
    };
    if args.len() > 1 {
        return usage_error(&format!(
            "unexpected argument {:?}; configuration is by environment variables",
            args[1]
        ));
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
    let command = match sub.as_str() {
        "migrate" => Ok(Command::Migrate),
        "api" => ApiConfig::from_env(&env).map(Command::Api),
        "worker" => WorkerConfig::from_env(&env).map(Command::Worker),
        "reaper" => ReaperConfig::from_env(&env).map(Command::Reaper),
        other => {
            return usage_error(&format!(
                "unknown subcommand {other:?} (expected migrate, api, worker, reaper)"
            ))
        }
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
            jobqueue::api::run(&db, &cfg, shutdown).await
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
            result
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
            result
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
            Err(e) if berth_tls::tls_failure(e.as_ref()).is_some() => {
                let reason = berth_tls::tls_failure(e.as_ref()).unwrap_or_default();
                return Err(e.context(format!("connecting to the database: {reason}")));
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.context("connecting to the database")),
        }
    };
    let applied = jobqueue::migrate::run(&mut client).await?;
    let version = jobqueue::migrate::current_version(&client).await?;
    tracing::info!(applied = ?applied, schema_version = version, "migrations done");
    Ok(())
}
