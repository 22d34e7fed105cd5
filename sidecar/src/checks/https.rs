//! `https`: a GET to `url` over TLS answers a status within `expectStatus`
//! (default 200-399). For services that only speak TLS (MinIO, internal
//! APIs behind a private CA, anything that wants a client certificate).
//!
//! Why a check of its own rather than `http` with an `https://` scheme: TLS
//! brings keys of its own (`caFile`, `clientCert`/`clientKey`,
//! `insecureSkipVerify`) and a failure kind of its own (`tls_failed`, with
//! the reason rustls gives), and the `grpc` check reuses the same TLS
//! settings ([`TlsSettings`]). One connection (TCP + TLS handshake) is kept
//! between runs: a health check every few seconds should not cost a
//! handshake each time.
//!
//! Certificate files are read and parsed at load time (a missing or broken
//! file is a config error naming the field) and again on every new
//! connection, so a rotated Secret (cert-manager) is picked up without a
//! restart.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_tls::verify::NoVerification;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{io_source, CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar, Text};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "https",
    keys: &[
        "url",
        "expectStatus",
        "caFile",
        "clientCert",
        "clientKey",
        "insecureSkipVerify",
    ],
    parse,
};

/// Bytes of a response body read to keep the connection reusable; a longer
/// body is not drained, the connection is dropped instead.
const MAX_DRAIN: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    url: Option<Scalar>,
    expect_status: Option<Scalar>,
    ca_file: Option<Scalar>,
    client_cert: Option<Scalar>,
    client_key: Option<Scalar>,
    insecure_skip_verify: Option<Scalar>,
}

struct Https {
    url: String,
    host: String,
    port: u16,
    /// `Host` header: the authority without userinfo.
    host_header: String,
    target: String,
    expect: (u16, u16),
    tls: TlsSettings,
}

// The URL may carry userinfo: never print it, even in Debug. The identity
// used for reloads is a hash of it.
impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https")
            .field("url", &crate::redact::fingerprint(&self.url))
            .field("expect", &self.expect)
            .field("tls", &self.tls)
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
    let url = cx.required(&field, &f.url, " for an https check")?;
    let uri = parse_https_url(&url.value).map_err(|m| ConfigError::new(&field, m))?;
    let expect = cx.status_range(&format!("{path}.expectStatus"), &f.expect_status)?;
    let tls = TlsSettings::parse(
        path,
        cx,
        TlsFields {
            ca_file: &f.ca_file,
            client_cert: &f.client_cert,
            client_key: &f.client_key,
            insecure_skip_verify: &f.insecure_skip_verify,
        },
        b"http/1.1",
    )?;
    let authority = uri.authority.as_ref().map(|a| a.host()).unwrap_or("");
    let host = authority.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port.unwrap_or(443);
    let host_header = match uri.port {
        Some(p) => format!("{authority}:{p}"),
        None => authority.to_string(),
    };
    Ok(Arc::new(Https {
        url: url.value.clone(),
        host: host.to_string(),
        port,
        host_header,
        target: uri.target,
        expect,
        tls,
    }))
}

struct HttpsUrl {
    authority: Option<http::uri::Authority>,
    port: Option<u16>,
    target: String,
}

/// An `https://host[:port]/path` URL. Messages never repeat it.
fn parse_https_url(url: &str) -> Result<HttpsUrl, String> {
    let bad = || "not a valid https:// URL (https://host:port/path)".to_string();
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") => {
            return Err("must be an https:// URL (use a check of type http for http://)".into())
        }
        _ => return Err(bad()),
    }
    let authority = uri.authority().cloned();
    if authority
        .as_ref()
        .map(|a| a.host().is_empty())
        .unwrap_or(true)
    {
        return Err(bad());
    }
    let port = uri.port_u16();
    if port == Some(0) {
        return Err(bad());
    }
    let target = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/")
        .to_string();
    Ok(HttpsUrl {
        authority,
        port,
        target,
    })
}

impl CheckDef for Https {
    fn kind(&self) -> &'static str {
        "https"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(HttpsProbe {
            host: self.host.clone(),
            port: self.port,
            host_header: self.host_header.clone(),
            target: self.target.clone(),
            expect: self.expect,
            tls: self.tls.clone(),
            conn: None,
            asked: CertAsked::default(),
        })
    }

    fn add_secrets(&self, secrets: &mut Secrets) {
        secrets.add_url_userinfo(&self.url);
    }
}

type Sender = http1::SendRequest<Empty<Bytes>>;

struct HttpsProbe {
    host: String,
    port: u16,
    host_header: String,
    target: String,
    expect: (u16, u16),
    tls: TlsSettings,
    conn: Option<(Sender, JoinHandle<()>)>,
    /// Whether the server of the last connection asked for a client certificate.
    asked: CertAsked,
}

impl HttpsProbe {
    async fn connect(&mut self, secrets: &Secrets) -> Result<(), CheckError> {
        self.reset();
        self.asked = CertAsked::default();
        let (tls, asked) = connect_tls(
            &self.tls,
            &self.host,
            &self.host,
            self.port,
            b"http/1.1",
            secrets,
        )
        .await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| hyper_error(&e, secrets))?;
        let task = tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = conn.await;
        });
        self.conn = Some((sender, task));
        self.asked = asked;
        Ok(())
    }

    /// One GET on the current connection: the status code.
    async fn get(&mut self, secrets: &Secrets) -> Result<u16, CheckError> {
        let Some((sender, _)) = self.conn.as_mut() else {
            return Err(CheckError::new("connection_lost", ""));
        };
        sender.ready().await.map_err(|e| hyper_error(&e, secrets))?;
        let req = http::Request::get(self.target.as_str())
            .header(http::header::HOST, self.host_header.as_str())
            .header(
                http::header::USER_AGENT,
                concat!("berth/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|_| CheckError::new("bad_request", ""))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| hyper_error(&e, secrets))?;
        let code = resp.status().as_u16();
        // Read the (short) body so the connection can serve the next run;
        // anything long or broken costs the connection, not the verdict.
        let mut body = resp.into_body();
        let mut read = 0usize;
        let drained = loop {
            match body.frame().await {
                None => break true,
                Some(Ok(frame)) => {
                    read += frame.data_ref().map(|d| d.len()).unwrap_or(0);
                    if read > MAX_DRAIN {
                        break false;
                    }
                }
                Some(Err(_)) => break false,
            }
        };
        if !drained {
            self.reset();
        }
        Ok(code)
    }
}

impl Probe for HttpsProbe {
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

impl HttpsProbe {
    async fn run(&mut self, secrets: &Secrets) -> Result<(), CheckError> {
        let reused = self
            .conn
            .as_ref()
            .map(|(s, _)| !s.is_closed())
            .unwrap_or(false);
        if !reused {
            self.connect(secrets).await?;
        }
        let code = match self.get(secrets).await {
            Ok(code) => code,
            // The server may have closed an idle kept connection just
            // as we used it: one retry on a fresh connection.
            Err(_) if reused => {
                self.connect(secrets).await?;
                self.get(secrets).await.inspect_err(|_| self.reset())?
            }
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        let (lo, hi) = self.expect;
        if (lo..=hi).contains(&code) {
            Ok(())
        } else {
            Err(CheckError::new(
                "unexpected_status",
                format!("HTTP {code}, expected {lo}-{hi}"),
            ))
        }
    }
}

fn hyper_error(e: &hyper::Error, secrets: &Secrets) -> CheckError {
    if let Some(reason) = berth_tls::tls_failure(e) {
        return CheckError::new("tls_failed", secrets.scrub(&reason));
    }
    if let Some(io) = io_source(e) {
        return CheckError::from_io(io, secrets);
    }
    if e.is_closed() || e.is_incomplete_message() || e.is_canceled() {
        return CheckError::new("connection_lost", secrets.scrub(&error_chain(e)));
    }
    CheckError::new("http_error", secrets.scrub(&error_chain(e)))
}

/// An error and its sources in one line: hyper's own text ("http2 error")
/// says little without what it wraps.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

// ------------------------------------------------------------ TLS settings

/// The TLS keys as written, for [`TlsSettings::parse`].
pub(super) struct TlsFields<'a> {
    pub ca_file: &'a Option<Scalar>,
    pub client_cert: &'a Option<Scalar>,
    pub client_key: &'a Option<Scalar>,
    pub insecure_skip_verify: &'a Option<Scalar>,
}

/// TLS client settings shared by the `https` and `grpc` checks: trust
/// anchors (`caFile`, else the Mozilla roots compiled in), an optional
/// client certificate (mTLS) and `insecureSkipVerify`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TlsSettings {
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// Encrypt but do not authenticate the server (handshake signatures
    /// are still checked). For self-signed endpoints one cannot get a CA of.
    pub insecure: bool,
}

/// A TLS setting that cannot be used: which key, and why (never its value).
#[derive(Debug)]
pub(super) struct TlsSettingError {
    pub key: &'static str,
    pub message: String,
}

/// PEM files are small; a bound keeps `caFile: /dev/zero`-style mistakes
/// from hanging or exhausting anything.
const MAX_PEM: u64 = 1 << 20;

impl TlsSettings {
    /// Reads and validates the TLS keys of the check at `path` (the files
    /// are read and parsed now, so a broken one is a config error).
    pub(super) fn parse(
        path: &str,
        cx: &Cx,
        f: TlsFields<'_>,
        alpn: &'static [u8],
    ) -> Result<TlsSettings, ConfigError> {
        let field = |key: &str| format!("{path}.{key}");
        let non_empty = |key: &str, s: &Option<Scalar>| -> Result<Option<Text>, ConfigError> {
            match cx.opt_text(&field(key), s)? {
                Some(t) if t.value.is_empty() => {
                    Err(ConfigError::new(field(key), "must not be empty"))
                }
                t => Ok(t),
            }
        };
        let ca = non_empty("caFile", f.ca_file)?;
        let cert = non_empty("clientCert", f.client_cert)?;
        let key = non_empty("clientKey", f.client_key)?;
        match (&cert, &key) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    field("clientKey"),
                    "is required with clientCert (both or neither)",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    field("clientCert"),
                    "is required with clientKey (both or neither)",
                ))
            }
            _ => {}
        }
        let insecure = cx
            .boolean(&field("insecureSkipVerify"), f.insecure_skip_verify)?
            .unwrap_or(false);
        let settings = TlsSettings {
            ca_file: ca.as_ref().map(|t| t.value.clone()),
            client_cert: cert.as_ref().map(|t| t.value.clone()),
            client_key: key.as_ref().map(|t| t.value.clone()),
            insecure,
        };
        settings.client_config(alpn).map_err(|e| {
            // Name the file as written (or by its `${…}` reference).
            let what = match e.key {
                "caFile" => ca.as_ref(),
                "clientCert" => cert.as_ref(),
                _ => key.as_ref(),
            }
            .map(Text::describe)
            .unwrap_or_default();
            ConfigError::new(field(e.key), format!("{what}: {}", e.message))
        })?;
        Ok(settings)
    }

    /// A rustls client configuration offering `alpn`. Reads the files.
    pub(super) fn client_config(
        &self,
        alpn: &'static [u8],
    ) -> Result<(Arc<ClientConfig>, CertAsked), TlsSettingError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let err = |key: &'static str, message: String| TlsSettingError { key, message };
        let roots = match &self.ca_file {
            None => berth_tls::Roots::Builtin
                .load()
                .map_err(|e| err("caFile", e.to_string()))?,
            Some(path) => {
                let pem = read_pem(path).map_err(|m| err("caFile", m))?;
                let mut store = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| err("caFile", format!("bad PEM: {e}")))?;
                    store.add(cert).map_err(|e| {
                        err(
                            "caFile",
                            format!("a certificate is not usable as a trust anchor: {e}"),
                        )
                    })?;
                }
                if store.is_empty() {
                    return Err(err("caFile", "holds no PEM certificate".into()));
                }
                store
            }
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("caFile", e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
        } else {
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| err("caFile", e.to_string()))?;
            builder.with_webpki_verifier(verifier)
        };
        let (mut config, asked) = match (&self.client_cert, &self.client_key) {
            (Some(cert_path), Some(key_path)) => {
                let pem = read_pem(cert_path).map_err(|m| err("clientCert", m))?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| err("clientCert", format!("bad PEM: {e}")))?;
                if certs.is_empty() {
                    return Err(err("clientCert", "holds no PEM certificate".into()));
                }
                let pem = read_pem(key_path).map_err(|m| err("clientKey", m))?;
                // The key's bytes never go into a message.
                let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                    err(
                        "clientKey",
                        match e {
                            rustls::pki_types::pem::Error::NoItemsFound => {
                                "holds no PEM private key".to_string()
                            }
                            _ => "is not a readable PEM private key".to_string(),
                        },
                    )
                })?;
                let config = builder.with_client_auth_cert(certs, key).map_err(|e| {
                    err(
                        "clientKey",
                        format!("does not go with clientCert or is not supported ({e})"),
                    )
                })?;
                (config, CertAsked::default())
            }
            _ => {
                let asked = Arc::new(NoClientCert::default());
                let config = builder.with_client_cert_resolver(asked.clone());
                (config, CertAsked(Some(asked)))
            }
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok((Arc::new(config), asked))
    }
}

/// A regular file's content, at most [`MAX_PEM`] bytes.
fn read_pem(path: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = Vec::new();
    file.take(MAX_PEM + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_PEM {
        return Err("is larger than 1 MiB".into());
    }
    Ok(buf)
}

/// TCP connection plus TLS handshake to `host:port`, verifying the server
/// as `name` (a DNS name or an IP address; usually `host`). Failures: `tls_config` (a file
/// became unreadable since load), `tls_failed` (the handshake, with
/// rustls' reason), or an I/O kind (`connection_refused`, …).
pub(super) async fn connect_tls(
    settings: &TlsSettings,
    host: &str,
    name: &str,
    port: u16,
    alpn: &'static [u8],
    secrets: &Secrets,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, CertAsked), CheckError> {
    let (config, asked) = settings
        .client_config(alpn)
        .map_err(|e| CheckError::new("tls_config", format!("{}: {}", e.key, e.message)))?;
    let name = ServerName::try_from(name.to_string())
        .map_err(|_| CheckError::new("tls_config", "host is not a valid TLS server name"))?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| match berth_tls::tls_failure(&e) {
            Some(reason) if reason.contains("InvalidContentType") => CheckError::new(
                "tls_failed",
                format!(
                    "{} (the server does not speak TLS on this port)",
                    secrets.scrub(&reason)
                ),
            ),
            Some(reason) => CheckError::new("tls_failed", secrets.scrub(&reason)),
            // The server hung up mid-handshake (e.g. it wanted a client
            // certificate we did not send, on TLS 1.2) or never spoke TLS.
            None => match e.kind() {
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                    CheckError::new(
                        "tls_failed",
                        format!("TLS handshake failed: {}", secrets.scrub(&e.to_string())),
                    )
                }
                _ => CheckError::from_io(&e, secrets),
            },
        })
        .map_err(|e| asked.explain(e))?;
    Ok((stream, asked))
}

/// Whether the server asked for a client certificate and none was
/// configured. Some servers (gRPC's BoringSSL) then close the connection
/// after the TLS 1.3 handshake without an alert, and "connection closed"
/// alone would not say why.
#[derive(Debug, Default, Clone)]
pub(super) struct CertAsked(Option<Arc<NoClientCert>>);

impl CertAsked {
    /// Adds the likely cause to a lost connection.
    pub(super) fn explain(&self, e: CheckError) -> CheckError {
        let asked = self
            .0
            .as_ref()
            .map(|a| a.0.load(Ordering::Relaxed))
            .unwrap_or(false);
        if asked
            && matches!(
                e.kind,
                "connection_lost" | "io_error" | "http2_error" | "http_error"
            )
        {
            return CheckError::new(
                "tls_failed",
                format!(
                    "the server asked for a client certificate and none is configured \
                     (clientCert/clientKey); then: {e}"
                ),
            );
        }
        e
    }
}

/// The client-certificate "resolver" when there is none: answers no, and
/// remembers that the server asked.
#[derive(Debug, Default)]
pub(super) struct NoClientCert(AtomicBool);

impl ResolvesClientCert for NoClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.store(true, Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls() {
        let u = parse_https_url("https://u:pw@[::1]:8443/healthz?x=1").expect("v6");
        assert_eq!(u.port, Some(8443));
        assert_eq!(u.target, "/healthz?x=1");
        assert_eq!(u.authority.expect("authority").host(), "[::1]");
        let u = parse_https_url("https://minio").expect("bare host");
        assert_eq!((u.port, u.target.as_str()), (None, "/"));
        for bad in ["http://h/", "https://", "https://h:0/", "ftp://h", "h:443"] {
            let e = parse_https_url(bad).err().unwrap_or_default();
            assert!(!e.is_empty(), "{bad} accepted");
        }
        let e = parse_https_url("http://u:hunter2@h/")
            .err()
            .unwrap_or_default();
        assert!(e.contains("type http") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn pem_reads_are_bounded_and_regular_files_only() {
        assert!(read_pem("/dev/zero").is_err());
        assert!(read_pem("/nonexistent/ca.pem").is_err());
        let big = std::env::temp_dir().join(format!("berth-big-pem-{}", std::process::id()));
        std::fs::write(&big, vec![b'a'; (MAX_PEM + 1) as usize]).expect("write");
        let e = read_pem(&big.display().to_string()).expect_err("too big");
        let _ = std::fs::remove_file(&big);
        assert!(e.contains("larger"), "{e}");
    }
}
