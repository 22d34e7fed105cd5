//! Keeping credentials out of health output and logs.
//!
//! Two layers, because one is never enough with third-party error text:
//! 1. [`CheckError`] separates the *kind* of failure (safe for anyone) from
//!    its *detail* (only for loopback or bearer-token callers, and logs);
//! 2. every detail string is scrubbed when it is created: `user:pass@` is
//!    removed from anything that looks like a URL, and every secret known
//!    from the configuration (passwords, the token) is replaced by `***`.

use std::fmt;

/// Credentials known from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    pub fn add(&mut self, secret: &str) {
        // Very short "secrets" would turn every error into asterisks; such a
        // value could not be hidden in any meaningful way anyway.
        if secret.len() >= 3 && !self.values.iter().any(|v| v == secret) {
            self.values.push(secret.to_string());
            // Longest first, so a secret containing another is replaced whole.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Adds the `user:password` part of `scheme://user:password@host`.
    pub fn add_url_userinfo(&mut self, url: &str) {
        if let Some((_, rest)) = url.split_once("://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if let Some((_, password)) = userinfo.split_once(':') {
                    self.add(password);
                    if let Ok(decoded) = percent_decode(password) {
                        self.add(&decoded);
                    }
                }
            }
        }
    }

    /// Removes URL userinfo and every known secret from `text`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = strip_userinfo(text);
        for secret in &self.values {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// `postgres://user:pw@host/db` → `postgres://host/db`, anywhere in `text`.
pub fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Why a check failed: a client-safe `kind` plus a scrubbed `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    /// Stable, credential-free word: `timeout`, `connection_refused`, …
    pub kind: &'static str,
    /// Human detail, already scrubbed of credentials.
    pub detail: String,
}

impl CheckError {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> CheckError {
        CheckError {
            kind,
            detail: detail.into(),
        }
    }

    /// Classifies an I/O error (connect, read) into a kind.
    pub fn from_io(e: &std::io::Error, secrets: &Secrets) -> CheckError {
        use std::io::ErrorKind::*;
        let kind = match e.kind() {
            ConnectionRefused => "connection_refused",
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => "connection_lost",
            TimedOut => "timeout",
            NotFound => "not_found",
            PermissionDenied => "permission_denied",
            _ => "io_error",
        };
        CheckError::new(kind, secrets.scrub(&e.to_string()))
    }

    /// What an unauthenticated remote caller may see.
    pub fn redacted(&self) -> &'static str {
        self.kind
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}

/// `Debug` of a check definition whose identity is a credential-bearing
/// URL: the type's name and the URL's [`fingerprint`], never the URL.
pub fn debug_url(f: &mut fmt::Formatter<'_>, name: &str, url: &str) -> fmt::Result {
    f.debug_struct(name)
        .field("url", &fingerprint(url))
        .finish()
}

/// A short, non-reversible tag of a secret-bearing value: equal values give
/// equal tags (config reloads compare checks by it) without the value ever
/// being printable.
pub fn fingerprint(value: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    format!("#{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_userinfo_everywhere() {
        assert_eq!(
            strip_userinfo("connect postgres://u:pw@h:5432/db failed; redis://:x@r:6379/0"),
            "connect postgres://h:5432/db failed; redis://r:6379/0"
        );
        assert_eq!(strip_userinfo("no url here"), "no url here");
        assert_eq!(strip_userinfo("http://h/p@x"), "http://h/p@x");
    }

    #[test]
    fn scrubs_known_secrets() {
        let mut s = Secrets::default();
        s.add_url_userinfo("postgres://app:s3cr%21t@db/app");
        s.add("tok-123");
        let text = s.scrub("password s3cr!t and s3cr%21t and tok-123 for app");
        assert_eq!(text, "password *** and *** and *** for app");
    }
}
