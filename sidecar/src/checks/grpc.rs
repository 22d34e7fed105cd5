//! `grpc`: one `grpc.health.v1.Health/Check` call to `address` (the
//! standard gRPC health protocol, what Kubernetes' `grpc:` probe speaks);
//! up only when the answer is `SERVING`.
//!
//! Why no gRPC framework: the call is one unary request with a few bytes
//! each way, so [`crate::grpc`] encodes it by hand and hyper's HTTP/2 client
//! (already in the binary) carries it; tonic and prost would multiply the
//! binary size for nothing. Plain-text HTTP/2 (h2c, "prior knowledge", what
//! gRPC servers accept without TLS) by default; `tls: true` for TLS with the
//! same keys as the `https` check. The HTTP/2 connection is kept between
//! runs and dropped after any error or timeout.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::https::{connect_tls, error_chain, CertAsked, TlsFields, TlsSettings};
use super::{io_source, CheckDef, CheckType, Probe};
use crate::config::{validate_host_port, ConfigError, Cx, Scalar};
use crate::grpc::{self, ServingStatus};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "grpc",
    keys: &[
        "address",
        "service",
        "tls",
        "caFile",
        "clientCert",
        "clientKey",
        "insecureSkipVerify",
        "authority",
    ],
    parse,
};

/// Longest `grpc-message` kept for the error detail.
const MAX_GRPC_MESSAGE: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    address: Option<Scalar>,
    service: Option<Scalar>,
    tls: Option<Scalar>,
    ca_file: Option<Scalar>,
    client_cert: Option<Scalar>,
    client_key: Option<Scalar>,
    insecure_skip_verify: Option<Scalar>,
    authority: Option<Scalar>,
}

#[derive(Debug)]
struct Grpc {
    host: String,
    port: u16,
    /// The name the server certificate is verified against: the host of
    /// `authority` if given, else of `address`.
    server_name: String,
    /// `http(s)://<authority or address>/grpc.health.v1.Health/Check`.
    uri: http::Uri,
    service: String,
    /// `None`: plain-text HTTP/2.
    tls: Option<TlsSettings>,
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = |key: &str| format!("{path}.{key}");
    let address = cx.required(&field("address"), &f.address, " for a grpc check")?;
    validate_host_port(&address.value).map_err(|m| ConfigError::new(field("address"), m))?;
    let (host, port) = split_host_port(&address.value)
        .ok_or_else(|| ConfigError::new(field("address"), "must be host:port"))?;
    let service = cx
        .opt_text(&field("service"), &f.service)?
        .map(|t| t.value)
        .unwrap_or_default();
    let authority = match cx.opt_text(&field("authority"), &f.authority)? {
        None => None,
        Some(t) => {
            let a: http::uri::Authority = t
                .value
                .parse()
                .map_err(|_| ConfigError::new(field("authority"), "must be host or host:port"))?;
            if a.host().is_empty() || t.value.contains('@') {
                return Err(ConfigError::new(
                    field("authority"),
                    "must be host or host:port",
                ));
            }
            Some(a)
        }
    };
    let tls_on = cx.boolean(&field("tls"), &f.tls)?.unwrap_or(false);
    let tls = if tls_on {
        Some(TlsSettings::parse(
            path,
            cx,
            TlsFields {
                ca_file: &f.ca_file,
                client_cert: &f.client_cert,
                client_key: &f.client_key,
                insecure_skip_verify: &f.insecure_skip_verify,
            },
            b"h2",
        )?)
    } else {
        // TLS keys without `tls: true` would silently go unused.
        for (key, given) in [
            ("caFile", &f.ca_file),
            ("clientCert", &f.client_cert),
            ("clientKey", &f.client_key),
            ("insecureSkipVerify", &f.insecure_skip_verify),
        ] {
            if given.is_some() {
                return Err(ConfigError::new(field(key), "needs tls: true"));
            }
        }
        None
    };
    let server_name = authority
        .as_ref()
        .map(|a| a.host().trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(host)
        .to_string();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shown = authority
        .as_ref()
        .map(|a| a.as_str())
        .unwrap_or(address.value.as_str());
    let uri: http::Uri = format!("{scheme}://{shown}{}", grpc::CHECK_PATH)
        .parse()
        .map_err(|_| ConfigError::new(field("address"), "must be host:port"))?;
    Ok(Arc::new(Grpc {
        host: host.to_string(),
        port,
        server_name,
        uri,
        service,
        tls,
    }))
}

/// `host:port` or `[v6]:port` → (host without brackets, port).
fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

impl CheckDef for Grpc {
    fn kind(&self) -> &'static str {
        "grpc"
    }

    fn probe(&self, timeout: Duration) -> Box<dyn Probe> {
        Box::new(GrpcProbe {
            // The server may give up when berth will have stopped waiting.
            deadline: format!("{}m", timeout.as_millis().clamp(1, 99_999_999)),
            host: self.host.clone(),
            port: self.port,
            server_name: self.server_name.clone(),
            uri: self.uri.clone(),
            body: Bytes::from(grpc::frame(&grpc::encode_request(&self.service))),
            tls: self.tls.clone(),
            conn: None,
            asked: CertAsked::default(),
        })
    }
}

type Sender = http2::SendRequest<Full<Bytes>>;

struct GrpcProbe {
    host: String,
    port: u16,
    server_name: String,
    uri: http::Uri,
    /// The framed request, the same every run.
    body: Bytes,
    /// `grpc-timeout` header: the check's timeout, in milliseconds.
    deadline: String,
    tls: Option<TlsSettings>,
    conn: Option<(Sender, JoinHandle<()>)>,
    /// Whether the server of the last connection asked for a client certificate.
    asked: CertAsked,
}

impl GrpcProbe {
    async fn connect(&mut self, secrets: &Secrets) -> Result<(), CheckError> {
        self.reset();
        let builder = http2::Builder::new(TokioExecutor::new());
        self.asked = CertAsked::default();
        let (sender, task) = match &self.tls {
            Some(settings) => {
                let (tls, asked) = connect_tls(
                    settings,
                    &self.host,
                    &self.server_name,
                    self.port,
                    b"h2",
                    secrets,
                )
                .await?;
                self.asked = asked;
                let (sender, conn) = builder
                    .handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| h2_error(&e, secrets))?;
                (sender, tokio::spawn(async move { drop(conn.await) }))
            }
            None => {
                let tcp = TcpStream::connect((self.host.as_str(), self.port))
                    .await
                    .map_err(|e| CheckError::from_io(&e, secrets))?;
                let _ = tcp.set_nodelay(true);
                let (sender, conn) = builder
                    .handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| h2_error(&e, secrets))?;
                (sender, tokio::spawn(async move { drop(conn.await) }))
            }
        };
        self.conn = Some((sender, task));
        Ok(())
    }

    /// One Check call on the current connection. `Err` with `transport:
    /// true` means the call did not get an answer (worth one retry on a
    /// fresh connection); otherwise the server's verdict.
    async fn call(&mut self, secrets: &Secrets) -> Result<(), (CheckError, bool)> {
        let Some((sender, _)) = self.conn.as_mut() else {
            return Err((CheckError::new("connection_lost", ""), true));
        };
        sender
            .ready()
            .await
            .map_err(|e| (h2_error(&e, secrets), true))?;
        let req = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("grpc-timeout", self.deadline.as_str())
            .header(
                http::header::USER_AGENT,
                concat!("berth/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(self.body.clone()))
            .map_err(|_| (CheckError::new("bad_request", ""), false))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| (h2_error(&e, secrets), true))?;
        let (parts, mut body) = resp.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err((
                CheckError::new(
                    "grpc_error",
                    format!("HTTP {}, not a gRPC answer", parts.status.as_u16()),
                ),
                false,
            ));
        }
        // A "trailers-only" answer (errors, e.g. NOT_FOUND for an unknown
        // service) carries grpc-status in the headers.
        if let Some(err) = grpc_status_error(&parts.headers, secrets) {
            return Err((err, false));
        }
        let is_grpc = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.starts_with("application/grpc"))
            .unwrap_or(false);
        if !is_grpc {
            return Err((
                CheckError::new("grpc_error", "not a gRPC answer (content-type)"),
                false,
            ));
        }
        // Bounded read: one health message and the trailers.
        let mut buf: Vec<u8> = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| (h2_error(&e, secrets), false))?;
            match frame.into_data() {
                Ok(data) => {
                    if buf.len() + data.len() > 5 + grpc::MAX_MESSAGE {
                        return Err((
                            CheckError::new(
                                "grpc_error",
                                format!("answer larger than {} bytes", grpc::MAX_MESSAGE),
                            ),
                            false,
                        ));
                    }
                    buf.extend_from_slice(&data);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        let Some(trailers) = trailers else {
            return Err((
                CheckError::new("grpc_error", "answer without grpc-status trailer"),
                false,
            ));
        };
        if let Some(err) = grpc_status_error(&trailers, secrets) {
            return Err((err, false));
        }
        if !trailers.contains_key("grpc-status") {
            return Err((
                CheckError::new("grpc_error", "answer without grpc-status trailer"),
                false,
            ));
        }
        let bad = |e: grpc::DecodeError| (CheckError::new("grpc_error", e.to_string()), false);
        let (msg, _) = grpc::unframe(&buf)
            .map_err(bad)?
            .ok_or_else(|| bad(grpc::DecodeError::Truncated))?;
        match grpc::decode_response(msg).map_err(bad)? {
            ServingStatus::Serving => Ok(()),
            s @ (ServingStatus::NotServing | ServingStatus::Unknown) => Err((
                CheckError::new("not_serving", format!("health status {}", s.as_str())),
                false,
            )),
            s @ ServingStatus::ServiceUnknown => Err((
                CheckError::new("service_unknown", format!("health status {}", s.as_str())),
                false,
            )),
        }
    }
}

impl Probe for GrpcProbe {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            let result = self.run(secrets).await;
            result.map_err(|e| self.asked.explain(e))
        })
    }

    fn reset(&mut self) {
        if let Some((sender, task)) = self.conn.take() {
            drop(sender);
            task.abort();
        }
    }
}

impl GrpcProbe {
    async fn run(&mut self, secrets: &Secrets) -> Result<(), CheckError> {
        let reused = self
            .conn
            .as_ref()
            .map(|(s, _)| !s.is_closed())
            .unwrap_or(false);
        if !reused {
            self.connect(secrets).await?;
        }
        match self.call(secrets).await {
            Ok(()) => Ok(()),
            // The server may have gone away (GOAWAY, restart) since the
            // last run: one retry on a fresh connection.
            Err((_, true)) if reused => {
                self.connect(secrets).await?;
                self.call(secrets).await.map_err(|(e, transport)| {
                    if transport {
                        self.reset();
                    }
                    e
                })
            }
            Err((e, transport)) => {
                if transport {
                    self.reset();
                }
                Err(e)
            }
        }
    }
}

/// A non-zero `grpc-status` in `headers` as a check error: `NOT_FOUND` (5)
/// is the health service's answer for a service it does not know.
fn grpc_status_error(headers: &http::HeaderMap, secrets: &Secrets) -> Option<CheckError> {
    let status = headers.get("grpc-status")?;
    let code: u32 = match status.to_str().ok().and_then(|s| s.trim().parse().ok()) {
        Some(0) => return None,
        Some(code) => code,
        None => {
            return Some(CheckError::new("grpc_error", "malformed grpc-status"));
        }
    };
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode_lossy(m.as_bytes()))
        .unwrap_or_default();
    let message = truncate(&secrets.scrub(&message), MAX_GRPC_MESSAGE);
    let name = code_name(code);
    let detail = if message.is_empty() {
        format!("grpc-status {code} ({name})")
    } else {
        format!("grpc-status {code} ({name}): {message}")
    };
    let kind = if code == 5 {
        "service_unknown"
    } else {
        "grpc_error"
    };
    Some(CheckError::new(kind, detail))
}

fn code_name(code: u32) -> &'static str {
    match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "?",
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec); a malformed
/// escape is kept as written.
fn percent_decode_lossy(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

fn h2_error(e: &hyper::Error, secrets: &Secrets) -> CheckError {
    if let Some(reason) = berth_tls::tls_failure(e) {
        return CheckError::new("tls_failed", secrets.scrub(&reason));
    }
    if let Some(io) = io_source(e) {
        return CheckError::from_io(io, secrets);
    }
    if e.is_closed() || e.is_canceled() || e.is_incomplete_message() {
        return CheckError::new("connection_lost", secrets.scrub(&error_chain(e)));
    }
    // e.g. an HTTP/1-only server on the port: the HTTP/2 preface fails.
    CheckError::new(
        "http2_error",
        format!(
            "{} (not a gRPC server, or TLS is needed: tls: true?)",
            secrets.scrub(&error_chain(e))
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_decoding_and_hosts() {
        assert_eq!(percent_decode_lossy(b"a%20b%2"), "a b%2");
        assert_eq!(percent_decode_lossy(b"%"), "%");
        assert_eq!(percent_decode_lossy(b"%e2%9c%93"), "✓");
        assert_eq!(split_host_port("[::1]:50051"), Some(("::1", 50051)));
        assert_eq!(split_host_port("svc.ns:80"), Some(("svc.ns", 80)));
        assert_eq!(split_host_port("svc:0"), None);
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
