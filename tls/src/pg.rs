//! PostgreSQL over TLS: libpq's `sslmode`/`sslrootcert` on top of tokio-postgres.
//!
//! tokio-postgres parses only `sslmode=disable|prefer|require` and no
//! `sslrootcert`, and leaves verification to the connector. [`parse`] takes
//! both options out of a `postgres://` URL, hands the rest to tokio-postgres
//! and builds a rustls connector ([`MakeTls`]) that verifies as libpq does:
//!
//! | `sslmode` | TLS | verification |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (default) | if the server offers it | none; the chain if `sslrootcert` is given |
//! | `require` | always | none; the chain if `sslrootcert` is given (libpq: "as verify-ca") |
//! | `verify-ca` | always | chain against `sslrootcert`, else the built-in roots; no host name |
//! | `verify-full` | always | chain and host name |
//!
//! `sslrootcert=/path/ca.pem` is a PEM file of one or more CAs;
//! `sslrootcert=system` means the Mozilla roots compiled into the binary
//! (there is no system store in a scratch image). The default `prefer` falls
//! back cleanly to plain TCP against a server without TLS (tokio-postgres
//! reads the server's "no" to the SSL request and carries on), so URLs that
//! worked before keep working. `allow` is treated as `prefer` (tokio-postgres
//! cannot retry the other way round). As with libpq, `sslmode` does not
//! apply to Unix-domain sockets. Key/value connection strings
//! (`host=… sslmode=…`) get `disable|prefer|require` only.
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`) is not offered: SCRAM without it
//! works with every server unless it sets `channel_binding=require`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use crate::verify::{ChainOnly, NoVerification};
use crate::{RootCertError, Roots};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Why a PostgreSQL URL cannot be used. Never contains the URL.
#[derive(Debug, thiserror::Error)]
pub enum PgUrlError {
    #[error("not a valid PostgreSQL URL (postgresql://user:password@host:5432/db)")]
    Invalid,
    #[error(
        "unknown sslmode {0:?} (expected disable, allow, prefer, require, verify-ca or verify-full)"
    )]
    UnknownSslMode(String),
    #[error("sslrootcert is not a valid percent-encoded path")]
    BadRootCertPath,
    #[error("sslrootcert: {0}")]
    RootCert(#[from] RootCertError),
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// A parsed URL: what to connect to and how to secure it.
#[derive(Clone)]
pub struct PgTarget {
    /// tokio-postgres settings, `ssl_mode` already set to match [`PgTarget::mode`].
    pub config: tokio_postgres::Config,
    /// The connector to pass to `connect` (or a pool).
    pub tls: MakeTls,
    pub mode: SslMode,
    /// Where the trust anchors come from, if the mode verifies anything.
    pub roots: Option<Roots>,
}

impl std::fmt::Debug for PgTarget {
    // tokio_postgres::Config's Debug hides the password; keep it that way.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .field("roots", &self.roots)
            .finish()
    }
}

fn is_url(s: &str) -> bool {
    let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// Parses a connection URL (or key/value string) with libpq's TLS options and
/// reads the `sslrootcert` file, so a bad file is a configuration error.
pub fn parse(url: &str) -> Result<PgTarget, PgUrlError> {
    let (mut config, mode, roots) = if is_url(url) {
        let (base, mut pairs) = crate::split_query(url);
        let mut mode = None;
        let mut root = None;
        pairs.retain(|(k, v)| match *k {
            "sslmode" => {
                mode = Some(*v);
                false
            }
            "sslrootcert" => {
                root = Some(*v);
                false
            }
            _ => true,
        });
        let config = tokio_postgres::Config::from_str(&crate::join_query(base, &pairs))
            .map_err(|_| PgUrlError::Invalid)?;
        let mode = match mode {
            None => SslMode::Prefer,
            Some(m) => {
                let decoded = crate::percent_decode(m).unwrap_or_else(|| m.to_string());
                SslMode::parse(&decoded)
                    .ok_or_else(|| PgUrlError::UnknownSslMode(decoded.chars().take(32).collect()))?
            }
        };
        let roots = match root {
            None => None,
            Some(r) => {
                let path = crate::percent_decode(r).ok_or(PgUrlError::BadRootCertPath)?;
                Some(if path == "system" {
                    Roots::Builtin
                } else {
                    Roots::File(path)
                })
            }
        };
        (config, mode, roots)
    } else {
        let config = tokio_postgres::Config::from_str(url).map_err(|_| PgUrlError::Invalid)?;
        let mode = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        (config, mode, None)
    };
    if config.get_hosts().is_empty() {
        return Err(PgUrlError::Invalid);
    }
    let roots = match mode {
        SslMode::Disable => None,
        SslMode::Prefer | SslMode::Require => roots,
        SslMode::VerifyCa | SslMode::VerifyFull => Some(roots.unwrap_or(Roots::Builtin)),
    };
    // libpq ignores sslmode on Unix-domain sockets (the server refuses TLS
    // there); do the same when every host is one.
    let unix_only = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    config.ssl_mode(match mode {
        _ if unix_only => tokio_postgres::config::SslMode::Disable,
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let tls = MakeTls::new(mode, roots.as_ref())?;
    Ok(PgTarget {
        config,
        tls,
        mode,
        roots,
    })
}

/// tokio-postgres' TLS connector (rustls). Cheap to clone.
#[derive(Clone)]
pub struct MakeTls {
    client: Option<Arc<ClientConfig>>,
}

impl MakeTls {
    /// A connector verifying as `mode` does (see the module table).
    pub fn new(mode: SslMode, roots: Option<&Roots>) -> Result<MakeTls, PgUrlError> {
        if mode == SslMode::Disable {
            return Ok(MakeTls { client: None });
        }
        let provider = crate::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PgUrlError::Tls(e.to_string()))?;
        let webpki = |roots: &Roots| -> Result<Arc<WebPkiServerVerifier>, PgUrlError> {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots.load()?), provider.clone())
                .build()
                .map_err(|e| PgUrlError::Tls(e.to_string()))
        };
        let mut config = match (mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => builder
                .with_webpki_verifier(webpki(roots)?)
                .with_no_client_auth(),
            (_, Some(roots)) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki(roots)?)))
                .with_no_client_auth(),
            (_, None) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
                .with_no_client_auth(),
        };
        // PostgreSQL 17 checks the ALPN name when a client sends one; older
        // servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeTls {
            client: Some(Arc::new(config)),
        })
    }
}

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<PgTlsConnect> {
        // A Unix socket has no domain; the server refuses TLS there anyway,
        // so only fail if a handshake is actually attempted.
        Ok(PgTlsConnect {
            client: self.client.clone(),
            name: ServerName::try_from(domain.to_string()).ok(),
        })
    }
}

/// One connection attempt's connector.
pub struct PgTlsConnect {
    client: Option<Arc<ClientConfig>>,
    name: Option<ServerName<'static>>,
}

impl TlsConnect<Socket> for PgTlsConnect {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let client = self.client.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS is disabled (sslmode=disable)",
                )
            })?;
            let name = self.name.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS needs a host name or IP address to connect to",
                )
            })?;
            let stream = tokio_rustls::TlsConnector::from(client)
                .connect(name, stream)
                .await?;
            Ok(PgTlsStream(Box::new(stream)))
        })
    }
}

/// An established TLS connection.
pub struct PgTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl tokio_postgres::tls::TlsStream for PgTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_defaults() {
        let t = parse("postgres://u:secret@db:5432/x").expect("plain");
        assert_eq!(t.mode, SslMode::Prefer);
        assert_eq!(t.roots, None);
        let t = parse("postgresql://u@db/x?sslmode=disable&application_name=a").expect("disable");
        assert_eq!(t.mode, SslMode::Disable);
        assert_eq!(t.config.get_application_name(), Some("a"));
        let t = parse("postgres://u@db/x?sslmode=require").expect("require");
        assert_eq!(t.mode, SslMode::Require);
        let t = parse("postgres://u@db/x?sslmode=verify-full").expect("verify-full");
        assert_eq!(t.roots, Some(Roots::Builtin));
        let t = parse("postgres://u@db/x?sslmode=verify-ca&sslrootcert=system").expect("system");
        assert_eq!(t.roots, Some(Roots::Builtin));
        let t = parse("host=db user=u sslmode=require").expect("key/value");
        assert_eq!(t.mode, SslMode::Require);
        let t = parse("postgres://u@db/x?sslmode=allow").expect("allow");
        assert_eq!(t.mode, SslMode::Prefer);
        let t = parse("postgresql://u@%2Fvar%2Frun%2Fpostgresql/x?sslmode=require").expect("unix");
        assert_eq!(
            t.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable,
            "no TLS on Unix sockets"
        );
        assert_eq!(
            t.config.get_hosts(),
            &[tokio_postgres::config::Host::Unix(
                "/var/run/postgresql".into()
            )]
        );
    }

    #[test]
    fn errors_never_echo_the_url() {
        let e = parse("postgres://u:hunter2@db/x?sslmode=bogus").expect_err("bogus");
        assert!(
            matches!(e, PgUrlError::UnknownSslMode(ref m) if m == "bogus"),
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"));
        let e = parse("postgres://u:hunter2@db:notaport/x").expect_err("port");
        assert!(!e.to_string().contains("hunter2"));
        let e = parse("postgres://u:hunter2@db/x?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .expect_err("missing CA");
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
    }
}
