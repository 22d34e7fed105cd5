//! `redis`: PING over one multiplexed connection, reconnecting after any
//! error; `rediss://` for TLS (berth-tls).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "redis",
    keys: &["url"],
    parse,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    url: Option<Scalar>,
}

struct Redis {
    url: String,
}

// The URL carries the password: never print it, even in Debug.
impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::redact::debug_url(f, "Redis", &self.url)
    }
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = format!("{path}.url");
    let url = cx.required(&field, &f.url, " for a redis check")?;
    berth_tls::redis_tls::client(&url.value)
        .map_err(|e| ConfigError::new(&field, e.to_string()))?;
    Ok(Arc::new(Redis { url: url.value }))
}

impl CheckDef for Redis {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(RedisProbe {
            client: berth_tls::redis_tls::client(&self.url).ok(),
            conn: None,
        })
    }

    fn add_secrets(&self, secrets: &mut Secrets) {
        if let Ok(info) = redis::IntoConnectionInfo::into_connection_info(self.url.as_str()) {
            if let Some(pw) = info.redis.password {
                secrets.add(&pw);
            }
        }
        secrets.add_url_userinfo(&self.url);
    }
}

struct RedisProbe {
    client: Option<redis::Client>,
    conn: Option<redis::aio::MultiplexedConnection>,
}

impl Probe for RedisProbe {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            let Some(client) = self.client.as_ref() else {
                return Err(CheckError::new("bad_url", ""));
            };
            if self.conn.is_none() {
                let c = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| redis_error(&e, secrets))?;
                self.conn = Some(c);
            }
            let Some(c) = self.conn.as_mut() else {
                return Err(CheckError::new("connection_lost", ""));
            };
            match redis::cmd("PING").query_async::<String>(c).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    self.conn = None;
                    Err(redis_error(&e, secrets))
                }
            }
        })
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}

fn redis_error(e: &redis::RedisError, secrets: &Secrets) -> CheckError {
    if let Some(reason) = berth_tls::tls_failure(e) {
        return CheckError::new("tls_failed", secrets.scrub(&reason));
    }
    let kind = if e.is_connection_refusal() {
        "connection_refused"
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        "auth_failed"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection_lost"
    } else {
        "redis_error"
    };
    CheckError::new(kind, secrets.scrub(&e.to_string()))
}
