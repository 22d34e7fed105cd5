//! What the hand-written protocol checks (`mysql`, `amqp`, `nats`) share:
//! reading their `scheme://user:pass@host:port/path?query` URLs, a TLS
//! client (rustls with berth-tls's provider choices and trust anchors), and
//! bounded reads.
//!
//! Why by hand: each check needs a handshake, a login and one round trip.
//! A full client crate per protocol would cost megabytes of a static binary
//! that must stay under 8 MB, for features a health check never uses.
//!
//! Nothing here ever puts a URL (or a part of one) into an error message:
//! URLs carry passwords.

use std::fmt;
use std::sync::Arc;

use berth_tls::verify::{ChainOnly, NoVerification};

use berth_tls::Roots;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::Text;
use crate::redact::{CheckError, Secrets};

/// A byte stream: plain TCP or TLS over it.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(super) type Stream = Box<dyn Io>;

/// A parsed service URL; its fields are percent-decoded. No `Debug`: it
/// holds the password (definitions show a fingerprint of the URL instead).
#[derive(Clone)]
pub(super) struct ServiceUrl {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    /// The path without its leading `/` (`None` when there was no path).
    pub path: Option<String>,
    pub query: Vec<(String, String)>,
}

impl fmt::Debug for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceUrl(…)")
    }
}

impl ServiceUrl {
    /// Parses `url`, whose scheme must be one of `schemes` (a scheme `s` also
    /// accepts `s+driver`, the SQLAlchemy spelling apps already have);
    /// `default_port` gives the port for a scheme when none is written.
    /// Errors describe the problem, never the URL.
    pub fn parse(
        url: &str,
        schemes: &[&str],
        default_port: impl Fn(&str) -> u16,
    ) -> Result<ServiceUrl, String> {
        let expected = schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(" or ");
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("must be a URL starting with {expected}"));
        };
        let lower = scheme.to_ascii_lowercase();
        let base = lower.split_once('+').map(|(b, _)| b).unwrap_or(&lower);
        let Some(scheme) = schemes.iter().find(|s| **s == base) else {
            return Err(format!("must be a URL starting with {expected}"));
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        // The last `@` ends the userinfo: an unencoded `@` in a password
        // is common enough to tolerate.
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pw) = match u.split_once(':') {
                    Some((user, pw)) => (user, Some(pw)),
                    None => (u, None),
                };
                let user =
                    decode(user).ok_or("has a user name that is not valid percent-encoding")?;
                let pw = pw
                    .map(|p| decode(p).ok_or("has a password that is not valid percent-encoding"))
                    .transpose()?;
                ((!user.is_empty()).then_some(user), pw)
            }
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err("has no host".to_string());
        }
        let port = match port {
            Some(p) => p,
            None => default_port(scheme),
        };
        let path = path
            .map(|p| decode(p).ok_or("has a path that is not valid percent-encoding"))
            .transpose()?;
        let mut pairs = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k).ok_or("has a query that is not valid percent-encoding")?;
            let v = decode(v).ok_or("has a query that is not valid percent-encoding")?;
            pairs.push((k, v));
        }
        Ok(ServiceUrl {
            scheme: scheme.to_string(),
            user,
            password,
            host,
            port,
            path,
            query: pairs,
        })
    }

    /// The value of query parameter `key` (the last one wins).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad_port = || "has a port that is not a number from 1 to 65535".to_string();
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad_port()),
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or("has an IPv6 address without its closing ]")?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(parse_port(p)?))),
            None if tail.is_empty() => Ok((host.to_string(), None)),
            None => Err(bad_port()),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(parse_port(p)?))),
        None => Ok((s.to_string(), None)),
    }
}

/// `%XX` decoding; `None` if malformed or not UTF-8.
pub(super) fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verify {
    /// Encrypted, server not authenticated (MySQL's `preferred`/`required`
    /// without a CA, RabbitMQ's `verify=verify_none`).
    Nothing,
    /// The chain must lead to a trusted CA; the host name is not compared.
    Chain,
    /// Chain and host name (the default everywhere else).
    Full,
}

/// A rustls client configuration. Reads the CA file, if any: a missing or
/// unusable file is a configuration error, found at load time.
pub(super) fn tls_config(verify: Verify, roots: &Roots) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let webpki = || -> Result<Arc<WebPkiServerVerifier>, String> {
        let store = roots.load().map_err(|e| e.to_string())?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map_err(|e| format!("TLS setup failed: {e}"))
    };
    let config = match verify {
        Verify::Full => builder
            .with_webpki_verifier(webpki()?)
            .with_no_client_auth(),
        Verify::Chain => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki()?)))
            .with_no_client_auth(),
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A config message about a CA file, safe to print: the message names the
/// file's path, which is a value from the environment when the setting was
/// `${…}`; then the message names the reference instead.
pub(super) fn ca_message(message: String, setting: &Text, option: &str) -> String {
    if setting.from_env() {
        format!(
            "{option}: the CA file named in {} cannot be used (unreadable, empty, or no PEM certificate)",
            setting.describe()
        )
    } else {
        message
    }
}

/// The trust anchors of a CA file setting: the file, or the compiled-in
/// Mozilla roots (`None` or `system`).
pub(super) fn roots(ca_file: Option<&str>) -> Roots {
    match ca_file {
        None | Some("") | Some("system") => Roots::Builtin,
        Some(path) => Roots::File(path.to_string()),
    }
}

/// TLS handshake over an open TCP connection, for `host` (a name or an IP).
pub(super) async fn tls_connect(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
    secrets: &Secrets,
) -> Result<Stream, CheckError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| CheckError::new("tls_failed", "the host is not a valid TLS server name"))?;
    match tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
    {
        Ok(s) => Ok(Box::new(s)),
        Err(e) => Err(tls_error(&e, secrets)),
    }
}

/// A failed TLS handshake: why, in one sentence.
pub(super) fn tls_error(e: &std::io::Error, secrets: &Secrets) -> CheckError {
    match berth_tls::tls_failure(e) {
        Some(reason) => CheckError::new("tls_failed", secrets.scrub(&reason)),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => CheckError::new(
            "tls_failed",
            "the server closed the connection during the TLS handshake",
        ),
        None => CheckError::new("tls_failed", secrets.scrub(&e.to_string())),
    }
}

/// A TCP connection to `host:port`.
pub(super) async fn connect(
    host: &str,
    port: u16,
    secrets: &Secrets,
) -> Result<TcpStream, CheckError> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))?;
    // Small request/answer exchanges: do not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Reads exactly `len` bytes, refusing lengths over `cap` before
/// allocating: a length comes from the peer.
pub(super) async fn read_exact_capped<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    len: usize,
    cap: usize,
    what: &str,
    secrets: &Secrets,
) -> Result<Vec<u8>, CheckError> {
    if len > cap {
        return Err(CheckError::new(
            "protocol_error",
            format!("{what} of {len} bytes is over the {cap}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))?;
    Ok(buf)
}

/// A cursor over a received message; every read is bounds-checked.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A message ended before a field it announced.
pub(super) fn truncated() -> CheckError {
    CheckError::new("protocol_error", "truncated message from the server")
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CheckError> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let s = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, CheckError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16_le(&mut self) -> Result<u16, CheckError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32_le(&mut self) -> Result<u32, CheckError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u16_be(&mut self) -> Result<u16, CheckError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32_be(&mut self) -> Result<u32, CheckError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Up to (not including) the next NUL, which is consumed; the rest if
    /// there is none.
    pub fn nul_str(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                self.pos += i + 1;
                &rest[..i]
            }
            None => {
                self.pos = self.buf.len();
                rest
            }
        }
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        rest
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

// The two certificate verifiers rustls does not ship (berth-tls has the
// same pair for libpq's weaker modes, private to that crate).

#[cfg(test)]
mod tests {
    use super::*;

    fn port(s: &str) -> u16 {
        if s == "amqps" {
            5671
        } else {
            5672
        }
    }

    #[test]
    fn urls_parse_and_decode() {
        let u = ServiceUrl::parse(
            "amqp://us%40r:p%2Fw@rabbit:5673/%2f?heartbeat=5",
            &["amqp", "amqps"],
            port,
        )
        .expect("valid");
        assert_eq!(u.user.as_deref(), Some("us@r"));
        assert_eq!(u.password.as_deref(), Some("p/w"));
        assert_eq!((u.host.as_str(), u.port), ("rabbit", 5673));
        assert_eq!(u.path.as_deref(), Some("/"));
        assert_eq!(u.param("heartbeat"), Some("5"));
        let u = ServiceUrl::parse("AMQPS://[::1]", &["amqp", "amqps"], port).expect("v6");
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.port),
            ("amqps", "::1", 5671)
        );
        assert_eq!(u.path, None);
        let u = ServiceUrl::parse("amqp://u:p@ss@h/v", &["amqp"], port).expect("@ in password");
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        let u = ServiceUrl::parse("mysql+pymysql://h/db", &["mysql"], |_| 3306).expect("driver");
        assert_eq!((u.scheme.as_str(), u.port), ("mysql", 3306));
    }

    #[test]
    fn bad_urls_are_described_without_echoing() {
        for (url, want) in [
            (
                "http://u:hunter22@h/",
                "must be a URL starting with amqp://",
            ),
            ("amqp://u:hunter22@/v", "has no host"),
            ("amqp://u:hunter22@h:0/v", "port"),
            ("amqp://u:hunter22@h:99999/v", "port"),
            ("amqp://u:hunter%zz@h/v", "password"),
            ("hunter22", "must be a URL"),
        ] {
            let e = ServiceUrl::parse(url, &["amqp", "amqps"], port).expect_err(url);
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("hunter"), "{e}");
        }
    }

    #[tokio::test]
    async fn capped_reads_refuse_before_allocating() {
        let mut data: &[u8] = &[1, 2, 3];
        let e = read_exact_capped(&mut data, 2_000_000, 1 << 20, "packet", &Secrets::default())
            .await
            .expect_err("over the cap");
        assert_eq!(e.kind, "protocol_error");
        let mut r = Reader::new(&[1, 0, 5]);
        assert_eq!(r.u16_le().expect("2 bytes"), 1);
        assert!(r.u16_le().is_err());
    }
}
