//! `nats`: the NATS client protocol by hand (see `wire`): read the
//! server's `INFO`, send `CONNECT` (with credentials) and `PING`, expect
//! `PONG`. One connection is kept between runs and answers `PONG` to a
//! fresh `PING` each time (a dead server cannot fake that), reconnecting
//! after any error.
//!
//! `url: nats://[user:password@]host:4222` (a user without a password is
//! a token), `tls://…` to insist on TLS. TLS is also used whenever the
//! server's `INFO` says `tls_required`, as every NATS client does. The
//! server certificate is verified against `caFile` (PEM) or the compiled-in
//! Mozilla roots.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rustls::ClientConfig;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::{self, ServiceUrl, Stream, Verify};
use super::{CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "nats",
    keys: &["url", "caFile"],
    parse,
};

/// `INFO` of a large cluster lists its peers; 64 KiB is plenty, and a
/// longer line is refused rather than buffered without end.
const MAX_LINE: usize = 64 * 1024;
/// Lines berth reads past while waiting for `PONG` (`+OK`, `INFO`
/// updates, the server's own `PING`s) before giving up.
const MAX_LINES: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    url: Option<Scalar>,
    ca_file: Option<Scalar>,
}

struct Target {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    /// `tls://`: refuse a server without TLS.
    tls_only: bool,
    ca_file: Option<String>,
    /// Built at load time for `tls://` or a `caFile` (so a bad file is a
    /// config error); otherwise when a server first asks for TLS.
    tls: Option<Arc<ClientConfig>>,
}

struct Nats {
    url: String,
    target: Arc<Target>,
}

// The URL may carry a password or token: never print it, even in Debug.
impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("url", &crate::redact::fingerprint(&self.url))
            .field("ca_file", &self.target.ca_file)
            .finish()
    }
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = format!("{path}.url");
    let url = cx.required(&field, &f.url, " for a nats check")?;
    let ca_field = format!("{path}.caFile");
    let ca_text = cx.opt_text(&ca_field, &f.ca_file)?;
    let ca_file = ca_text.as_ref().map(|t| t.value.clone());
    let u = ServiceUrl::parse(&url.value, &["nats", "tls"], |_| 4222)
        .map_err(|m| ConfigError::new(&field, m))?;
    let tls_only = u.scheme == "tls";
    let tls = if tls_only || ca_file.is_some() {
        Some(
            wire::tls_config(Verify::Full, &wire::roots(ca_file.as_deref())).map_err(|m| {
                match &ca_text {
                    Some(t) => ConfigError::new(&ca_field, wire::ca_message(m, t, "caFile")),
                    None => ConfigError::new(&ca_field, m),
                }
            })?,
        )
    } else {
        None
    };
    let target = Target {
        host: u.host.clone(),
        port: u.port,
        user: u.user.clone(),
        password: u.password.clone(),
        tls_only,
        ca_file,
        tls,
    };
    Ok(Arc::new(Nats {
        url: url.value,
        target: Arc::new(target),
    }))
}

impl CheckDef for Nats {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(NatsProbe {
            target: self.target.clone(),
            conn: None,
        })
    }

    fn add_secrets(&self, secrets: &mut Secrets) {
        if let Some(pw) = &self.target.password {
            secrets.add(pw);
        } else if let Some(token) = &self.target.user {
            secrets.add(token);
        }
        secrets.add_url_userinfo(&self.url);
    }
}

struct Conn {
    stream: Stream,
    /// Bytes read past the last line.
    buf: Vec<u8>,
}

struct NatsProbe {
    target: Arc<Target>,
    conn: Option<Conn>,
}

impl Probe for NatsProbe {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            if let Some(mut conn) = self.conn.take() {
                match ping(&mut conn, secrets).await {
                    Ok(()) => {
                        self.conn = Some(conn);
                        return Ok(());
                    }
                    // The server answered: its answer is the result.
                    Err(e) if e.kind != "connection_lost" && e.kind != "io_error" => return Err(e),
                    // A connection that died between runs says nothing about
                    // the server now: try a fresh one before reporting.
                    Err(_) => {}
                }
            }
            let mut conn = connect(&self.target, secrets).await?;
            ping(&mut conn, secrets).await?;
            self.conn = Some(conn);
            Ok(())
        })
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}

async fn connect(t: &Target, secrets: &Secrets) -> Result<Conn, CheckError> {
    let mut tcp = wire::connect(&t.host, t.port, secrets).await?;
    let mut buf = Vec::new();
    let line = read_line(&mut tcp, &mut buf, secrets).await?;
    let Some(json) = line.strip_prefix("INFO ") else {
        return Err(CheckError::new(
            "protocol_error",
            "not a NATS server (no INFO greeting)",
        ));
    };
    let info: serde_json::Value = serde_json::from_str(json.trim())
        .map_err(|_| CheckError::new("protocol_error", "the server's INFO is not JSON"))?;
    let flag = |k: &str| info.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    let want_tls = t.tls_only || flag("tls_required");
    let stream: Stream = if want_tls {
        if !(flag("tls_required") || flag("tls_available")) {
            return Err(CheckError::new(
                "tls_failed",
                "the server does not offer TLS (the URL is tls://)",
            ));
        }
        if !buf.is_empty() {
            return Err(CheckError::new(
                "protocol_error",
                "the server sent more than INFO before TLS",
            ));
        }
        let config = match &t.tls {
            Some(c) => c.clone(),
            None => wire::tls_config(Verify::Full, &wire::roots(t.ca_file.as_deref()))
                .map_err(|m| CheckError::new("tls_config", m))?,
        };
        wire::tls_connect(&config, &t.host, tcp, secrets).await?
    } else {
        Box::new(tcp)
    };

    let mut connect = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "tls_required": want_tls,
        "name": "berth",
        "lang": "rust",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
    });
    match (&t.user, &t.password) {
        (Some(user), Some(pass)) => {
            connect["user"] = user.as_str().into();
            connect["pass"] = pass.as_str().into();
        }
        (Some(token), None) => connect["auth_token"] = token.as_str().into(),
        _ => {}
    }
    let mut conn = Conn { stream, buf };
    // serde_json cannot fail on a Value built here; an empty string would
    // just be refused by the server.
    let text = format!(
        "CONNECT {}\r\n",
        serde_json::to_string(&connect).unwrap_or_default()
    );
    write(&mut conn.stream, text.as_bytes(), secrets).await?;
    Ok(conn)
}

/// `PING` → `PONG`, reading past `+OK`, `INFO` and the server's `PING`.
async fn ping(conn: &mut Conn, secrets: &Secrets) -> Result<(), CheckError> {
    write(&mut conn.stream, b"PING\r\n", secrets).await?;
    for _ in 0..MAX_LINES {
        let line = read_line(&mut conn.stream, &mut conn.buf, secrets).await?;
        let word = line
            .split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match word.as_str() {
            "PONG" => return Ok(()),
            "+OK" | "INFO" => {}
            "PING" => write(&mut conn.stream, b"PONG\r\n", secrets).await?,
            "-ERR" => return Err(server_error(&line, secrets)),
            _ => {
                return Err(CheckError::new(
                    "protocol_error",
                    "unexpected line from the server while waiting for PONG",
                ))
            }
        }
    }
    Err(CheckError::new("protocol_error", "no PONG from the server"))
}

/// `-ERR 'Authorization Violation'` → a failure kind; the text is the
/// server's own, scrubbed.
fn server_error(line: &str, secrets: &Secrets) -> CheckError {
    let text = line
        .trim_start_matches("-ERR")
        .trim()
        .trim_matches('\'')
        .chars()
        .take(200)
        .collect::<String>();
    let lower = text.to_ascii_lowercase();
    let kind = if lower.contains("authorization")
        || lower.contains("authentication")
        || lower.contains("permissions violation for connect")
    {
        "auth_failed"
    } else if lower.contains("maximum connections") {
        "server_unavailable"
    } else if lower.contains("tls required") || lower.contains("secure connection") {
        "tls_failed"
    } else {
        "nats_error"
    };
    CheckError::new(kind, secrets.scrub(&text))
}

async fn write<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    bytes: &[u8],
    secrets: &Secrets,
) -> Result<(), CheckError> {
    w.write_all(bytes)
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))?;
    w.flush()
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))
}

/// One `\r\n`-terminated line (without it), at most [`MAX_LINE`] long.
async fn read_line<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    secrets: &Secrets,
) -> Result<String, CheckError> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).take(i).collect();
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if buf.len() > MAX_LINE {
            return Err(CheckError::new(
                "protocol_error",
                format!("a line from the server is over {MAX_LINE} bytes"),
            ));
        }
        let mut chunk = [0u8; 4096];
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| CheckError::from_io(&e, secrets))?;
        if n == 0 {
            return Err(CheckError::new(
                "connection_lost",
                "the server closed the connection",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified() {
        let mut s = Secrets::default();
        s.add("hunter22");
        let e = server_error("-ERR 'Authorization Violation'", &s);
        assert_eq!(
            (e.kind, e.detail.as_str()),
            ("auth_failed", "Authorization Violation")
        );
        assert_eq!(
            server_error("-ERR 'Maximum Connections Exceeded'", &s).kind,
            "server_unavailable"
        );
        let e = server_error("-ERR 'Unknown Protocol Operation hunter22'", &s);
        assert_eq!(e.kind, "nats_error");
        assert!(!e.detail.contains("hunter22"));
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut data: &[u8] = b"+OK\r\nPONG\r\n";
        let mut buf = Vec::new();
        let s = Secrets::default();
        assert_eq!(
            read_line(&mut data, &mut buf, &s).await.expect("line"),
            "+OK"
        );
        assert_eq!(
            read_line(&mut data, &mut buf, &s).await.expect("line"),
            "PONG"
        );
        assert_eq!(
            read_line(&mut data, &mut buf, &s)
                .await
                .expect_err("eof")
                .kind,
            "connection_lost"
        );
        let long = vec![b'x'; MAX_LINE + 8192];
        let mut data: &[u8] = &long;
        let e = read_line(&mut data, &mut Vec::new(), &s)
            .await
            .expect_err("too long");
        assert_eq!(e.kind, "protocol_error");
    }
}
