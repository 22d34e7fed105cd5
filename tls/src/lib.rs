//! TLS for the PostgreSQL and Redis clients of berth and jobqueue.
//!
//! Why a crate of its own: both binaries talk to the same managed databases
//! (RDS with `rds.force_ssl`, Cloud SQL, Azure, managed Redis), which insist
//! on TLS, and both must read the same URL options the same way. One
//! implementation means one set of semantics and one set of tests.
//!
//! Choices that hold for everything here:
//! - rustls with the `ring` provider only: the images are static glibc builds
//!   (`scripts/build-images.sh`) and `FROM scratch`; ring needs nothing but a
//!   C compiler, aws-lc-rs would need cmake and more.
//! - Trust anchors are either a PEM file named in the URL (`sslrootcert=`) or
//!   the Mozilla roots compiled in (`webpki-roots`): a scratch image has no
//!   system CA store to read.
//! - Nothing in an error here repeats a URL: URLs carry passwords.
//!
//! [`pg`] is the PostgreSQL side (libpq `sslmode` semantics on top of
//! tokio-postgres), [`redis_tls`] the Redis side (`rediss://` plus an optional
//! `sslrootcert`), [`tls_failure`] turns a handshake failure from either into
//! one clear sentence.
#![forbid(unsafe_code)]

pub mod pg;
pub mod redis_tls;
pub mod verify;

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// A CA file that could not be used. The path is configuration, not a secret.
#[derive(Debug, thiserror::Error)]
pub enum RootCertError {
    #[error("cannot read CA file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("CA file {path} holds no PEM certificate")]
    Empty { path: String },
    #[error("CA file {path}: a certificate is not usable as a trust anchor: {reason}")]
    Invalid { path: String, reason: String },
}

/// Where trust anchors come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The Mozilla roots compiled into the binary (`sslrootcert=system` too).
    Builtin,
    /// The certificates of a PEM file.
    File(String),
}

impl Roots {
    /// Loads the trust anchors (reads the file, if any).
    pub fn load(&self) -> Result<RootCertStore, RootCertError> {
        match self {
            Roots::Builtin => Ok(builtin_roots()),
            Roots::File(path) => load_pem_roots(Path::new(path)),
        }
    }
}

fn builtin_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    store
}

fn load_pem_roots(path: &Path) -> Result<RootCertStore, RootCertError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| RootCertError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| RootCertError::Invalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        store.add(cert).map_err(|e| RootCertError::Invalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    }
    if store.is_empty() {
        return Err(RootCertError::Empty { path: shown });
    }
    Ok(store)
}

/// The one crypto provider of both binaries.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// If `e` (or anything it wraps) is a TLS failure, what went wrong in one
/// sentence, e.g. "server certificate is not signed by a trusted CA
/// (UnknownIssuer)". Works for tokio-postgres and redis errors alike.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut handshake = false;
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // io::Error::source() skips the wrapped error itself.
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(describe(tls));
            }
        }
        let text = err.to_string();
        if let Some(at) = text.find("invalid peer certificate: ") {
            // Some clients (redis, when it clones an error) keep only the
            // text of the rustls error.
            return Some(describe_text(&text[at..]));
        }
        if handshake && !text.is_empty() {
            // tokio-postgres: "error performing TLS handshake" wrapping e.g.
            // "server does not support TLS".
            return Some(format!("TLS handshake failed: {text}"));
        }
        handshake = text.contains("TLS handshake");
        cur = err.source();
    }
    handshake.then(|| "TLS handshake failed".to_string())
}

fn describe(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let what = match c {
                C::UnknownIssuer => "server certificate is not signed by a trusted CA",
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "server certificate is not valid for the host name"
                }
                C::Expired | C::ExpiredContext { .. } => "server certificate has expired",
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "server certificate is not valid yet"
                }
                C::Revoked => "server certificate is revoked",
                _ => "server certificate rejected",
            };
            format!("TLS: {what} ({e})")
        }
        _ => format!("TLS: {e}"),
    }
}

fn describe_text(rustls_text: &str) -> String {
    let detail = rustls_text.trim_start_matches("invalid peer certificate: ");
    let what = if detail.starts_with("UnknownIssuer") {
        "server certificate is not signed by a trusted CA"
    } else if detail.starts_with("NotValidForName") {
        "server certificate is not valid for the host name"
    } else if detail.starts_with("Expired") {
        "server certificate has expired"
    } else {
        "server certificate rejected"
    };
    format!("TLS: {what} ({rustls_text})")
}

/// `%XX` decoding of a URL query value; `None` if malformed or not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `base?query` into the base and the query's `key=value` pairs.
pub(crate) fn split_query(url: &str) -> (&str, Vec<(&str, &str)>) {
    match url.split_once('?') {
        Some((base, query)) => (
            base,
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect(),
        ),
        None => (url, Vec::new()),
    }
}

/// Joins what [`split_query`] split (minus what the caller removed).
pub(crate) fn join_query(base: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return base.to_string();
    }
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let (base, pairs) = split_query("postgres://h/db?a=1&sslmode=x&b");
        assert_eq!(base, "postgres://h/db");
        assert_eq!(pairs, vec![("a", "1"), ("sslmode", "x"), ("b", "")]);
        assert_eq!(join_query(base, &pairs[..1]), "postgres://h/db?a=1");
        assert_eq!(join_query(base, &[]), "postgres://h/db");
    }

    #[test]
    fn failures_are_described() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let text = tls_failure(&e).expect("a TLS failure");
        assert!(text.contains("not signed by a trusted CA"), "{text}");
        let flat = std::io::Error::other(e.to_string());
        assert_eq!(tls_failure(&flat), Some(text));
        assert_eq!(tls_failure(&std::io::Error::other("refused")), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(
            percent_decode("%2Fetc%2Fca.pem").as_deref(),
            Some("/etc/ca.pem")
        );
        assert_eq!(percent_decode("%2"), None);
    }

    #[test]
    fn missing_and_empty_ca_files() {
        let err = Roots::File("/nonexistent/ca.pem".into())
            .load()
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempdir();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = Roots::File(empty.display().to_string())
            .load()
            .expect_err("empty");
        assert!(matches!(err, RootCertError::Empty { .. }), "{err}");
        assert!(!Roots::Builtin.load().expect("builtin").is_empty());
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
