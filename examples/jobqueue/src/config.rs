//! Configuration from environment variables.
//!
//! Every knob is an env var (seed 000 names, plus the ones a real deployment
//! needs). All parsing goes through [`Env`], so every bad value fails the same
//! way: a [`ConfigError`] naming the variable, which `main` prints as one line
//! before exiting with 64 (EX_USAGE). Defaults live next to the parse call so
//! the README table and the code cannot drift far apart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::worker::WorkerOptions;

/// A bad or missing environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &str, message: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_string(),
            message: message.into(),
        }
    }
}

/// Source of variables: the process environment, or a fixed list in tests.
pub struct Env {
    lookup: Lookup,
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Env {
    /// Reads the real process environment.
    pub fn process() -> Self {
        Env {
            lookup: Box::new(|k| std::env::var(k).ok()),
        }
    }

    /// A fixed set of variables (tests, embedding).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: std::collections::HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Env {
            lookup: Box::new(move |k| map.get(k).cloned()),
        }
    }

    /// The raw value; empty strings count as unset (Kubernetes renders
    /// `value: ""` for optional settings all the time).
    pub fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, var: &str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| ConfigError::new(var, "is required but not set"))
    }

    pub fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_string())
    }

    /// An integer within `[min, max]`.
    pub fn int(&self, var: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        let value: u64 = raw
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(var, format!("expected a whole number, got {raw:?}")))?;
        if value < min || value > max {
            return Err(ConfigError::new(
                var,
                format!("must be between {min} and {max}, got {value}"),
            ));
        }
        Ok(value)
    }

    /// Seconds, fractions allowed ("1.5"), within `[min, max]`.
    pub fn seconds(
        &self,
        var: &str,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<Duration, ConfigError> {
        let value = match self.get(var) {
            None => default,
            Some(raw) => raw.trim().parse::<f64>().map_err(|_| {
                ConfigError::new(var, format!("expected a number of seconds, got {raw:?}"))
            })?,
        };
        if !value.is_finite() || value < min || value > max {
            return Err(ConfigError::new(
                var,
                format!("must be between {min} and {max} seconds, got {value}"),
            ));
        }
        Ok(Duration::from_secs_f64(value))
    }

    pub fn socket_addr(&self, var: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let raw = self.string(var, default);
        raw.trim().parse().map_err(|_| {
            ConfigError::new(
                var,
                format!("expected host:port like 0.0.0.0:8000, got {raw:?}"),
            )
        })
    }
}

/// `LOG_LEVEL` / `LOG_FORMAT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter directive, e.g. `info` or `jobqueue=debug,info`.
    pub filter: String,
    pub json: bool,
}

impl LogConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let raw = env.string("LOG_LEVEL", "INFO");
        // Accept Python-style names from seed 000 as well as tracing's.
        let level = match raw.trim().to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "info" => "info",
            "warn" | "warning" => "warn",
            "error" | "critical" | "fatal" => "error",
            "off" => "off",
            other => {
                return Err(ConfigError::new(
                    "LOG_LEVEL",
                    format!("expected one of trace, debug, info, warning, error; got {other:?}"),
                ))
            }
        };
        let json = match env
            .string("LOG_FORMAT", "json")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "json" => true,
            "console" | "text" | "pretty" => false,
            other => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected json or console, got {other:?}"),
                ))
            }
        };
        Ok(LogConfig {
            filter: level.to_string(),
            json,
        })
    }
}

/// `DATABASE_URL` and pool size.
#[derive(Clone)]
pub struct DbConfig {
    /// Normalised URL (`postgresql+asyncpg://` → `postgresql://`). Contains
    /// the password: never log it, use [`crate::db::redact`].
    pub url: String,
    pub pool_size: usize,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &crate::db::redact(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl DbConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let raw = env.required("DATABASE_URL")?;
        let url =
            crate::db::normalise_url(&raw).map_err(|m| ConfigError::new("DATABASE_URL", m))?;
        let pool_size = env.int("DATABASE_POOL_SIZE", 10, 1, 1000)? as usize;
        Ok(DbConfig { url, pool_size })
    }
}

/// Settings of the `worker` subcommand: the library's [`WorkerOptions`]
/// (one struct, so the binary and library users cannot drift apart; its
/// `Default` holds the defaults) plus where the ops server listens.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker: WorkerOptions,
    pub metrics_listen: SocketAddr,
}

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = WorkerOptions::default();
        let (queues, queue_concurrency) =
            parse_queue_list(&env.string("WORKER_QUEUES", &d.queues.join(",")))
                .map_err(|m| ConfigError::new("WORKER_QUEUES", m))?;
        let host = env.string("HOSTNAME", "worker");
        let secs = |var: &str, default: Duration, min: f64, max: f64| {
            env.seconds(var, default.as_secs_f64(), min, max)
        };
        let worker = WorkerOptions {
            queues,
            queue_concurrency,
            group_concurrency: env.int(
                "WORKER_GROUP_CONCURRENCY",
                d.group_concurrency as u64,
                1,
                10_000,
            )? as usize,
            concurrency: env.int("WORKER_CONCURRENCY", d.concurrency as u64, 1, 10_000)? as usize,
            batch_size: env.int("WORKER_BATCH_SIZE", d.batch_size as u64, 1, 1000)? as usize,
            poll_interval: secs(
                "WORKER_POLL_INTERVAL_SECONDS",
                d.poll_interval,
                0.01,
                3600.0,
            )?,
            lease_duration: secs(
                "WORKER_LEASE_DURATION_SECONDS",
                d.lease_duration,
                1.0,
                86_400.0,
            )?,
            shutdown_timeout: secs(
                "WORKER_SHUTDOWN_TIMEOUT_SECONDS",
                d.shutdown_timeout,
                0.0,
                86_400.0,
            )?,
            heartbeat_file: env.get("WORKER_HEARTBEAT_FILE").map(PathBuf::from),
            worker_id: env.string("WORKER_ID", &format!("{host}-{}", std::process::id())),
            retry_base: secs("WORKER_RETRY_BASE_SECONDS", d.retry_base, 0.0, 86_400.0)?,
            retry_max: secs("WORKER_RETRY_MAX_SECONDS", d.retry_max, 0.0, 604_800.0)?,
        };
        Ok(WorkerConfig {
            worker,
            metrics_listen: env.socket_addr("METRICS_LISTEN", "0.0.0.0:9090")?,
        })
    }
}

/// The queues of `WORKER_QUEUES`: `default,mail:5` gives the queues that
/// share `WORKER_CONCURRENCY` (`default`) and those with a concurrency of
/// their own (`mail` with 5).
#[allow(clippy::type_complexity)]
pub fn parse_queue_list(raw: &str) -> Result<(Vec<String>, Vec<(String, usize)>), String> {
    let mut shared: Vec<String> = Vec::new();
    let mut own: Vec<(String, usize)> = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|q| !q.is_empty()) {
        let (q, n) = match entry.rsplit_once(':') {
            Some((q, n)) => {
                let n = n
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        format!("queue {entry:?}: the concurrency after ':' must be 1 to 10000")
                    })?;
                (q.trim(), Some(n))
            }
            None => (entry, None),
        };
        crate::job::validate_queue_name(q).map_err(|m| format!("queue {q:?}: {m}"))?;
        let seen = shared.iter().any(|x| x == q) || own.iter().any(|(x, _)| x == q);
        match (seen, n) {
            (true, Some(_)) => return Err(format!("queue {q:?} is listed twice")),
            (true, None) => {}
            (false, Some(n)) => own.push((q.to_string(), n)),
            (false, None) => shared.push(q.to_string()),
        }
    }
    if shared.is_empty() && own.is_empty() {
        return Err("needs at least one queue name".into());
    }
    Ok((shared, own))
}

/// Settings of the `reaper` subcommand.
#[derive(Debug, Clone)]
pub struct ReaperConfig {
    pub interval: Duration,
    pub depth_interval: Duration,
    /// Finished jobs older than this are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
    pub metrics_listen: SocketAddr,
}

impl ReaperConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let hours = env.seconds("REAPER_RETENTION_HOURS", 168.0, 0.0, 87_600.0)?;
        Ok(ReaperConfig {
            interval: env.seconds("REAPER_INTERVAL_SECONDS", 60.0, 0.05, 86_400.0)?,
            depth_interval: env.seconds("REAPER_DEPTH_INTERVAL_SECONDS", 15.0, 0.05, 86_400.0)?,
            // The variable is in hours; `seconds` parsed the number, scale it.
            retention: (!hours.is_zero()).then(|| hours * 3600),
            metrics_listen: env.socket_addr("METRICS_LISTEN", "0.0.0.0:9090")?,
        })
    }
}

/// Settings of the `api` subcommand.
#[derive(Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub secret_key: Option<String>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub max_batch: usize,
    /// Job submissions per client per minute; 0 disables the limiter.
    pub rate_limit_per_minute: u64,
    pub redis_url: Option<String>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<set>"))
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("max_batch", &self.max_batch)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(crate::db::redact),
            )
            .finish()
    }
}

impl ApiConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let redis_url = env.get("REDIS_URL");
        if let Some(url) = &redis_url {
            // Also reads a `sslrootcert` CA file of a rediss:// URL. The
            // message never repeats the URL (it may hold a password).
            berth_tls::redis_tls::client(url).map_err(|e| match e {
                berth_tls::redis_tls::RedisUrlError::Invalid => ConfigError::new(
                    "REDIS_URL",
                    "must start with redis://, rediss:// (TLS) or unix://",
                ),
                other => ConfigError::new("REDIS_URL", other.to_string()),
            })?;
        }
        Ok(ApiConfig {
            listen: env.socket_addr("API_LISTEN", "0.0.0.0:8000")?,
            secret_key: env.get("API_SECRET_KEY"),
            body_limit: env.int("API_BODY_LIMIT_BYTES", 1_048_576, 1024, 1 << 30)? as usize,
            request_timeout: env.seconds("API_REQUEST_TIMEOUT_SECONDS", 30.0, 0.1, 3600.0)?,
            max_batch: env.int("API_MAX_BATCH", 1000, 1, 100_000)? as usize,
            rate_limit_per_minute: env.int(
                "API_RATE_LIMIT_PER_MINUTE",
                6000,
                0,
                u32::MAX as u64,
            )?,
            redis_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_seed_000() {
        let env = Env::from_pairs([("DATABASE_URL", "postgresql+asyncpg://u:p@h:5432/db")]);
        let w = WorkerConfig::from_env(&env).expect("valid").worker;
        assert_eq!(w.concurrency, 20);
        assert_eq!(w.batch_size, 10);
        assert_eq!(w.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(w.poll_interval, Duration::from_secs(1));
        assert_eq!(w.lease_duration, Duration::from_secs(300));
        assert_eq!(w.queues, vec!["default".to_string()]);
        assert_eq!(w.group_concurrency, 1);
        assert!(w.queue_concurrency.is_empty());
        let lanes = parse_queue_list("default, mail:5,bulk:20,default").expect("valid");
        assert_eq!(
            lanes,
            (
                vec!["default".to_string()],
                vec![("mail".to_string(), 5), ("bulk".to_string(), 20)]
            )
        );
        let r = ReaperConfig::from_env(&env).expect("valid");
        assert_eq!(r.interval, Duration::from_secs(60));
        let l = LogConfig::from_env(&env).expect("valid");
        assert_eq!(
            l,
            LogConfig {
                filter: "info".into(),
                json: true
            }
        );
        let db = DbConfig::from_env(&env).expect("valid");
        assert_eq!(db.url, "postgresql://u:p@h:5432/db");
        assert!(!format!("{db:?}").contains(":p@"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("WORKER_BATCH_SIZE", "ten"),
            ("WORKER_BATCH_SIZE", "0"),
            ("WORKER_POLL_INTERVAL_SECONDS", "-1"),
            ("WORKER_LEASE_DURATION_SECONDS", "NaN"),
            ("WORKER_QUEUES", " , "),
            ("WORKER_QUEUES", "bad queue!"),
            ("WORKER_QUEUES", "mail:0"),
            ("WORKER_QUEUES", "mail:x"),
            ("WORKER_QUEUES", "mail:5,mail:2"),
            ("WORKER_QUEUES", "mail,mail:2"),
            ("WORKER_QUEUES", "a:b:3"),
            ("WORKER_GROUP_CONCURRENCY", "0"),
            ("METRICS_LISTEN", "nowhere"),
        ];
        for (var, value) in cases {
            let env = Env::from_pairs([(var, value)]);
            let err = WorkerConfig::from_env(&env).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
        let err = LogConfig::from_env(&Env::from_pairs([("LOG_FORMAT", "xml")])).expect_err("xml");
        assert_eq!(err.var, "LOG_FORMAT");
        let err = LogConfig::from_env(&Env::from_pairs([("LOG_LEVEL", "loud")])).expect_err("loud");
        assert_eq!(err.var, "LOG_LEVEL");
        let err = DbConfig::from_env(&Env::from_pairs([("X", "y")])).expect_err("missing");
        assert_eq!(err.var, "DATABASE_URL");
        let err = DbConfig::from_env(&Env::from_pairs([("DATABASE_URL", "mysql://x")]))
            .expect_err("scheme");
        assert_eq!(err.var, "DATABASE_URL");
        let err =
            ApiConfig::from_env(&Env::from_pairs([("REDIS_URL", "http://x")])).expect_err("redis");
        assert_eq!(err.var, "REDIS_URL");
    }
}
