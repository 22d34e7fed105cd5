//! The `berth` binary: CLI parsing, runtime setup and exit codes.
//!
//! Exit codes: 0 success, 1 `berth wait` timed out or the server failed,
//! 64 (EX_USAGE) bad command line or configuration — always with one line
//! on stderr that names the field.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth::config::{self, Config};
use berth::state::Health;
use berth::{checks, logging, signals, App};
use clap::{Parser, Subcommand};

const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Kubernetes sidecar: dependency checks, honest health endpoints, graceful drain"
)]
struct Cli {
    /// Config file (for the default `serve` command).
    #[arg(long, env = "BERTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the check types and their keys as JSON (the chart's schema is generated from it).
    #[command(hide = true)]
    Schema,
    /// Run the sidecar (the default).
    Serve,
    /// Validate a config file and exit (0 valid, 64 invalid).
    CheckConfig {
        /// The file to check (default: --config, BERTH_CONFIG, /etc/berth/berth.yaml).
        file: Option<PathBuf>,
    },
    /// Run the checks until the startup gate passes (exit 0) or --timeout (exit 1).
    Wait {
        #[arg(long, default_value = "60s")]
        timeout: String,
    },
    /// Add berth to Kubernetes YAML (stdin or files) as the chart would; --remove takes it out.
    Inject(berth::inject::InjectArgs),
    /// Serve the mutating admission webhook that injects berth into opted-in pods.
    Injector(berth::inject::injector::InjectorArgs),
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
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad command line");
            eprintln!("berth: {first}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
    match cli.command.unwrap_or(Command::Serve) {
        Command::Inject(args) => berth::inject::run(args, cli.config.as_deref()),
        Command::Injector(args) => berth::inject::injector::run(args),
        Command::Schema => {
            use std::io::Write;
            // A closed pipe (`berth schema | head`) is not worth a panic.
            let _ = writeln!(std::io::stdout(), "{:#}", berth::checks::schema());
            ExitCode::SUCCESS
        }
        Command::Serve => {
            let config = match load(&config_path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            logging::init();
            serve(config, config_path)
        }
        Command::CheckConfig { file } => {
            let path = file.unwrap_or(config_path);
            match load(&path) {
                Ok(c) => {
                    println!(
                        "{}: ok ({} checks, listen {}, mode {})",
                        path.display(),
                        c.checks.len(),
                        c.listen,
                        c.mode.as_str()
                    );
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Wait { timeout } => {
            let Some(timeout) = config::parse_duration(&timeout) else {
                eprintln!("berth: --timeout: bad duration {timeout:?} (expected e.g. 60s)");
                return ExitCode::from(EX_USAGE);
            };
            let config = match load(&config_path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            logging::init();
            wait(config, timeout)
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("berth: invalid configuration: {e}");
        ExitCode::from(EX_USAGE)
    })
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // One thread: a sidecar's work is a handful of timers and short
    // requests, and one thread keeps memory and CPU share predictable.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn serve(config: Config, config_path: PathBuf) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = rt.block_on(async move {
        let signal_stream = signals::install()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
            })?;
        let lifecycle = match &config.lifecycle {
            Some(lc) => Some(
                tokio::net::TcpListener::bind(lc.listen)
                    .await
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot listen on {} (lifecycle.listen): {e}", lc.listen),
                        )
                    })?,
            ),
            None => None,
        };
        let grpc = match config.grpc_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr} (grpcListen): {e}"),
                )
            })?),
            None => None,
        };
        let lifecycle_listen = config
            .lifecycle
            .as_ref()
            .map(|lc| lc.listen.to_string())
            .unwrap_or_else(|| "loopback only (no lifecycle.token)".into());
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            listen = %config.listen,
            lifecycle = %lifecycle_listen,
            checks = config.checks.len(),
            mode = config.mode.as_str(),
            "berth serving"
        );
        if config.lifecycle.is_none() && !config.listen.ip().is_loopback() {
            tracing::warn!(
                "no lifecycle.token: prestop answers loopback callers only, so a preStop hook from the node will be refused"
            );
        }
        let app = App::new(config);
        let shutdown = signals::shutdown(app.clone(), signal_stream);
        let listeners = berth::Listeners {
            health: listener,
            lifecycle,
            grpc,
            reload_from: Some(config_path),
        };
        berth::serve(app, listeners, shutdown).await
    });
    // Dropping the runtime would wait for blocking tasks; nothing is worth
    // delaying the exit for once checkers have closed their connections.
    std::mem::forget(rt);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "berth failed");
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

fn wait(config: Config, timeout: Duration) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let passed = rt.block_on(async move {
        let health = Arc::new(Health::new(&config));
        let secrets = Arc::new(config.secrets());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let handles = checks::spawn_all(&health, &config.checks, &[], &secrets, &stop_rx);
        let mut changes = health.subscribe_changes();
        let gate = tokio::time::timeout(timeout, async {
            while !health.started() {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        stop_tx.send_replace(true);
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            futures::future::join_all(handles),
        )
        .await;
        if gate.is_ok() && health.started() {
            tracing::info!("berth wait: startup gate passed");
            return true;
        }
        let pending: Vec<String> = health
            .startup_pending()
            .into_iter()
            .map(|name| {
                let why = health
                    .cell(&name)
                    .map(|c| {
                        let s = c.snapshot();
                        s.error
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| s.status.as_str().to_string())
                    })
                    .unwrap_or_default();
                format!("{name} ({why})")
            })
            .collect();
        eprintln!(
            "berth wait: timed out after {}; still failing: {}",
            config::fmt_duration(timeout),
            pending.join(", ")
        );
        false
    });
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
