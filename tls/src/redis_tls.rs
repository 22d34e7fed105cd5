//! Redis clients for `redis://`, `rediss://` (TLS) and Unix-socket URLs.
//!
//! Why not `redis::Client::open` alone: managed Redis often uses a private CA
//! (a scratch image has no CA store to add it to). A `rediss://` URL may name
//! one, as PostgreSQL URLs do: `rediss://:pw@host:6380/0?sslrootcert=/ca.pem`.
//! Without it the Mozilla roots compiled into the binary are used;
//! `rediss://…/#insecure` turns verification off (the redis crate's spelling).
//! The host name is always verified when verification is on.

/// Why a Redis URL cannot be used. Never contains the URL.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    #[error("not a valid Redis URL (redis://[:password@]host:6379/0 or rediss://… for TLS)")]
    Invalid,
    #[error("sslrootcert is only meaningful with rediss:// (TLS)")]
    RootCertWithoutTls,
    #[error("sslrootcert is not a valid percent-encoded path")]
    BadRootCertPath,
    #[error("sslrootcert: {0}")]
    RootCert(#[from] crate::RootCertError),
}

/// Builds a client (no connection is made). Reads the `sslrootcert` file, so
/// a missing or empty CA file is reported here, at configuration time.
pub fn client(url: &str) -> Result<redis::Client, RedisUrlError> {
    let url = url.trim();
    let lower = url.get(..9).unwrap_or(url).to_ascii_lowercase();
    let tls = lower.starts_with("rediss://");
    if !(tls
        || lower.starts_with("redis://")
        || lower.starts_with("redis+uni")
        || lower.starts_with("unix://"))
    {
        return Err(RedisUrlError::Invalid);
    }
    // The fragment (`#insecure`) comes after the query.
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let (base, mut pairs) = crate::split_query(rest);
    let mut root = None;
    pairs.retain(|(k, v)| {
        if *k == "sslrootcert" {
            root = Some(*v);
            false
        } else {
            true
        }
    });
    let mut cleaned = crate::join_query(base, &pairs);
    if let Some(f) = fragment {
        cleaned.push('#');
        cleaned.push_str(f);
    }
    match root {
        None => redis::Client::open(cleaned.as_str()).map_err(|_| RedisUrlError::Invalid),
        Some(_) if !tls => Err(RedisUrlError::RootCertWithoutTls),
        Some(r) => {
            let path = crate::percent_decode(r).ok_or(RedisUrlError::BadRootCertPath)?;
            // Loaded here to report a bad file clearly; the redis crate
            // parses the PEM again itself.
            crate::Roots::File(path.clone()).load()?;
            let pem = std::fs::read(&path).map_err(|e| crate::RootCertError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            redis::Client::build_with_tls(
                cleaned.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(|_| RedisUrlError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert!(client("redis://:pw@h:6379/0").is_ok());
        assert!(client("rediss://:pw@h:6380/0").is_ok());
        assert!(client("rediss://h:6380/0#insecure").is_ok());
        assert!(client("unix:///tmp/redis.sock").is_ok());
        assert!(matches!(client("http://h"), Err(RedisUrlError::Invalid)));
        let e = client("rediss://:hunter2@h/0?sslrootcert=/nonexistent.pem").expect_err("ca");
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
        assert!(matches!(
            client("redis://h/0?sslrootcert=/x.pem"),
            Err(RedisUrlError::RootCertWithoutTls)
        ));
    }
}
