//! `amqp`: an AMQP 0-9-1 connection (RabbitMQ) opens on the virtual host
//! and closes cleanly: protocol header, `Connection.Start` → `Start-Ok`
//! (PLAIN), `Tune` → `Tune-Ok`, `Open(vhost)` → `Open-Ok`, `Close` →
//! `Close-Ok`. That proves the broker is up, accepts the credentials and
//! serves the vhost, without declaring or touching anything.
//!
//! Spoken by hand (see `wire`); a fresh connection per run: it is a few
//! small frames, and a broker counts idle connections against its limits.
//!
//! `url: amqp://user:password@host:5672/vhost` (`%2f` is the vhost `/`, as
//! is no path; no user means guest/guest), `amqps://…:5671/…` for TLS with
//! RabbitMQ's own URI options `cacertfile=/path/ca.pem` and
//! `verify=verify_none`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rustls::ClientConfig;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::{self, Reader, ServiceUrl, Stream, Verify};
use super::{CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "amqp",
    keys: &["url"],
    parse,
};

/// Frames before `Tune` are small (`Connection.Start` with the server's
/// properties is under 1 KiB); a bigger announced size is refused before
/// allocating.
const MAX_FRAME: usize = 1024 * 1024;
const FRAME_METHOD: u8 = 1;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xce;
/// What berth offers in `Tune-Ok` at most (RabbitMQ's default).
const FRAME_MAX: u32 = 131_072;

// Connection class (10) methods.
const START: u16 = 10;
const START_OK: u16 = 11;
const TUNE: u16 = 30;
const TUNE_OK: u16 = 31;
const OPEN: u16 = 40;
const OPEN_OK: u16 = 41;
const CLOSE: u16 = 50;
const CLOSE_OK: u16 = 51;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    url: Option<Scalar>,
}

struct Target {
    host: String,
    port: u16,
    user: String,
    password: String,
    vhost: String,
    /// `Some` for `amqps://`.
    tls: Option<Arc<ClientConfig>>,
}

struct Amqp {
    url: String,
    target: Arc<Target>,
}

// The URL carries the password: never print it, even in Debug.
impl std::fmt::Debug for Amqp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::redact::debug_url(f, "Amqp", &self.url)
    }
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = format!("{path}.url");
    let url = cx.required(&field, &f.url, " for an amqp check")?;
    let target = target(&url.value).map_err(|m| {
        // Only the CA file error names something from the URL (its path).
        let m = if m.starts_with("cacertfile: ") {
            wire::ca_message(m, &url, "cacertfile")
        } else {
            m
        };
        ConfigError::new(&field, m)
    })?;
    Ok(Arc::new(Amqp {
        url: url.value,
        target: Arc::new(target),
    }))
}

fn target(url: &str) -> Result<Target, String> {
    let u = ServiceUrl::parse(url, &["amqp", "amqps"], |s| {
        if s == "amqps" {
            5671
        } else {
            5672
        }
    })?;
    let vhost = match u.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(v) => v.to_string(),
    };
    // Short strings on the wire: one length byte.
    if vhost.len() > 255 || u.user.as_ref().is_some_and(|s| s.len() > 255) {
        return Err("has a user name or vhost longer than 255 bytes".into());
    }
    let tls = if u.scheme == "amqps" {
        let verify = match u.param("verify") {
            None | Some("verify_peer") => Verify::Full,
            Some("verify_none") => Verify::Nothing,
            Some(_) => {
                return Err("has an unknown verify (expected verify_peer or verify_none)".into())
            }
        };
        let roots = wire::roots(u.param("cacertfile"));
        Some(wire::tls_config(verify, &roots).map_err(|e| format!("cacertfile: {e}"))?)
    } else {
        None
    };
    Ok(Target {
        host: u.host.clone(),
        port: u.port,
        user: u.user.clone().unwrap_or_else(|| "guest".into()),
        password: match (&u.user, &u.password) {
            (None, _) => "guest".into(),
            (Some(_), pw) => pw.clone().unwrap_or_default(),
        },
        vhost,
        tls,
    })
}

impl CheckDef for Amqp {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(AmqpProbe {
            target: self.target.clone(),
        })
    }

    // The URL's password, as written and decoded (not the implied
    // guest/guest of a URL without credentials).
    fn add_secrets(&self, secrets: &mut Secrets) {
        secrets.add_url_userinfo(&self.url);
    }
}

struct AmqpProbe {
    target: Arc<Target>,
}

impl Probe for AmqpProbe {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        // The connection lives inside this future: a timeout drops it.
        Box::pin(open_and_close(&self.target, secrets))
    }
}

async fn open_and_close(t: &Target, secrets: &Secrets) -> Result<(), CheckError> {
    let tcp = wire::connect(&t.host, t.port, secrets).await?;
    let mut s: Stream = match &t.tls {
        Some(config) => wire::tls_connect(config, &t.host, tcp, secrets).await?,
        None => Box::new(tcp),
    };
    send(&mut s, b"AMQP\x00\x00\x09\x01", secrets).await?;

    let start = expect(&mut s, START, "Connection.Start", secrets).await?;
    let mut r = Reader::new(&start);
    r.bytes(2)?; // version major, minor
    let props = r.u32_be()? as usize;
    r.bytes(props)?; // server properties
    let mechanisms = long_str(&mut r)?;
    if !mechanisms.split(|&b| b == b' ').any(|m| m == b"PLAIN") {
        return Err(CheckError::new(
            "auth_unsupported",
            "the broker does not offer PLAIN authentication",
        ));
    }

    let mut args = Vec::with_capacity(256);
    client_properties(&mut args);
    short_str(&mut args, "PLAIN");
    let mut response = Vec::with_capacity(2 + t.user.len() + t.password.len());
    response.push(0);
    response.extend(t.user.as_bytes());
    response.push(0);
    response.extend(t.password.as_bytes());
    args.extend((response.len() as u32).to_be_bytes());
    args.extend(response);
    short_str(&mut args, "en_US");
    send_method(&mut s, START_OK, &args, secrets).await?;

    let tune = expect(&mut s, TUNE, "Connection.Tune", secrets).await?;
    let mut r = Reader::new(&tune);
    let channel_max = r.u16_be()?;
    let frame_max = r.u32_be()?;
    let frame_max = if frame_max == 0 {
        FRAME_MAX
    } else {
        frame_max.min(FRAME_MAX)
    };
    let mut args = Vec::with_capacity(8);
    args.extend(channel_max.to_be_bytes());
    args.extend(frame_max.to_be_bytes());
    // No heartbeats: the connection lives for one exchange.
    args.extend(0u16.to_be_bytes());
    send_method(&mut s, TUNE_OK, &args, secrets).await?;

    let mut args = Vec::with_capacity(t.vhost.len() + 3);
    short_str(&mut args, &t.vhost);
    short_str(&mut args, ""); // reserved
    args.push(0); // reserved bit
    send_method(&mut s, OPEN, &args, secrets).await?;
    expect(&mut s, OPEN_OK, "Connection.Open-Ok", secrets).await?;

    let mut args = Vec::with_capacity(32);
    args.extend(200u16.to_be_bytes());
    short_str(&mut args, "berth health check");
    args.extend([0u8; 4]); // class, method
    send_method(&mut s, CLOSE, &args, secrets).await?;
    // The broker is already proven up; a missing Close-Ok is not a failure
    // of the dependency, and the socket is dropped either way.
    let _ = expect(&mut s, CLOSE_OK, "Connection.Close-Ok", secrets).await;
    Ok(())
}

/// `capabilities.authentication_failure_close`: RabbitMQ then answers
/// wrong credentials with `Connection.Close` 403 instead of just closing
/// the socket, so the failure can be named.
fn client_properties(out: &mut Vec<u8>) {
    let mut caps = Vec::new();
    short_str(&mut caps, "authentication_failure_close");
    caps.extend([b't', 1]);
    let mut table = Vec::new();
    short_str(&mut table, "product");
    table.push(b'S');
    table.extend(5u32.to_be_bytes());
    table.extend(b"berth");
    short_str(&mut table, "capabilities");
    table.push(b'F');
    table.extend((caps.len() as u32).to_be_bytes());
    table.extend(caps);
    out.extend((table.len() as u32).to_be_bytes());
    out.extend(table);
}

/// Callers keep strings ≤ 255 bytes (checked at load time).
fn short_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(255);
    out.push(n as u8);
    out.extend(&b[..n]);
}

fn long_str<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], CheckError> {
    let n = r.u32_be()? as usize;
    r.bytes(n)
}

async fn send(s: &mut Stream, bytes: &[u8], secrets: &Secrets) -> Result<(), CheckError> {
    s.write_all(bytes)
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))?;
    s.flush()
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))
}

async fn send_method(
    s: &mut Stream,
    method: u16,
    args: &[u8],
    secrets: &Secrets,
) -> Result<(), CheckError> {
    let size = (4 + args.len()) as u32;
    let mut frame = Vec::with_capacity(12 + args.len());
    frame.push(FRAME_METHOD);
    frame.extend(0u16.to_be_bytes()); // channel 0: the connection
    frame.extend(size.to_be_bytes());
    frame.extend(10u16.to_be_bytes()); // class: connection
    frame.extend(method.to_be_bytes());
    frame.extend(args);
    frame.push(FRAME_END);
    send(s, &frame, secrets).await
}

/// The next connection method, which must be `want`; its arguments.
/// `Connection.Close` from the broker becomes its reply code as a failure.
async fn expect(
    s: &mut Stream,
    want: u16,
    what: &str,
    secrets: &Secrets,
) -> Result<Vec<u8>, CheckError> {
    loop {
        let mut head = [0u8; 7];
        s.read_exact(&mut head).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                CheckError::new(
                    "connection_lost",
                    format!("the broker closed the connection while berth waited for {what}"),
                )
            } else {
                CheckError::from_io(&e, secrets)
            }
        })?;
        if &head[..4] == b"AMQP" {
            return Err(CheckError::new(
                "protocol_error",
                "the broker does not speak AMQP 0-9-1",
            ));
        }
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        // Payload and the frame-end octet.
        let frame = wire::read_exact_capped(
            s,
            size.saturating_add(1),
            MAX_FRAME,
            "an AMQP frame",
            secrets,
        )
        .await?;
        if frame.last() != Some(&FRAME_END) {
            return Err(CheckError::new(
                "protocol_error",
                "AMQP frame without its end marker",
            ));
        }
        match head[0] {
            FRAME_HEARTBEAT => continue,
            FRAME_METHOD => {}
            _ => {
                return Err(CheckError::new(
                    "protocol_error",
                    format!(
                        "unexpected AMQP frame type {} while waiting for {what}",
                        head[0]
                    ),
                ))
            }
        }
        let mut r = Reader::new(&frame[..size]);
        let (class, method) = (r.u16_be()?, r.u16_be()?);
        let args = r.rest().to_vec();
        if (class, method) == (10, want) {
            return Ok(args);
        }
        if (class, method) == (10, CLOSE) {
            // Answer politely; the failure is what the broker said.
            let _ = send_method(s, CLOSE_OK, &[], secrets).await;
            return Err(close_error(&args, secrets));
        }
        return Err(CheckError::new(
            "protocol_error",
            format!("unexpected AMQP method {class}.{method} while waiting for {what}"),
        ));
    }
}

/// `Connection.Close` from the broker → a failure kind and its reply text.
fn close_error(args: &[u8], secrets: &Secrets) -> CheckError {
    let mut r = Reader::new(args);
    let code = r.u16_be().unwrap_or(0);
    let text = r
        .u8()
        .and_then(|n| r.bytes(usize::from(n)))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    let kind = match code {
        403 => "auth_failed",
        530 => "not_allowed",
        320 => "server_unavailable",
        _ => "amqp_error",
    };
    CheckError::new(kind, secrets.scrub(&format!("{code} {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_defaults_and_vhosts() {
        let t = target("amqp://h").expect("valid");
        assert_eq!(
            (
                t.user.as_str(),
                t.password.as_str(),
                t.vhost.as_str(),
                t.port
            ),
            ("guest", "guest", "/", 5672)
        );
        let t = target("amqp://app:s3cret@h:5673/%2f").expect("valid");
        assert_eq!(
            (t.user.as_str(), t.password.as_str(), t.vhost.as_str()),
            ("app", "s3cret", "/")
        );
        let t = target("amqp://app:s3cret@h/orders").expect("valid");
        assert_eq!(t.vhost, "orders");
        let t = target("amqps://app:s3cret@h/orders?verify=verify_none").expect("valid");
        assert!(t.tls.is_some() && t.port == 5671);
        for bad in [
            "amqps://app:s3cret@h/?verify=maybe",
            "amqps://app:s3cret@h/?cacertfile=/nonexistent/ca.pem",
            "http://app:s3cret@h/",
        ] {
            let e = target(bad).err().unwrap_or_default();
            assert!(!e.is_empty() && !e.contains("s3cret"), "{bad}: {e}");
        }
    }

    #[test]
    fn broker_close_codes_name_the_failure() {
        let mut args = 530u16.to_be_bytes().to_vec();
        short_str(&mut args, "NOT_ALLOWED - vhost nope not found");
        args.extend([0u8; 4]);
        let e = close_error(&args, &Secrets::default());
        assert_eq!(e.kind, "not_allowed");
        assert_eq!(e.detail, "530 NOT_ALLOWED - vhost nope not found");
        assert_eq!(
            close_error(&403u16.to_be_bytes(), &Secrets::default()).kind,
            "auth_failed"
        );
    }
}
