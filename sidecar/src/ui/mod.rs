//! The status page: `GET /` (and `/ui`) on the health port.
//!
//! One HTML document with its CSS and script inline, compiled into the
//! binary (`include_str!`): nothing to fetch from anywhere else, no build
//! step. The page reads `/api/v1/health/?history=1` every two seconds, so it
//! shows exactly what that endpoint shows a given caller: error detail for
//! loopback and bearer-token callers, the kind of failure for everyone else
//! (the rule lives in the server, the page only displays).
//!
//! The Content-Security-Policy allows the inline style and script by their
//! SHA-256 hashes and nothing else: no `'unsafe-inline'`, no other origin,
//! `connect-src 'self'` for the JSON, and no framing. The script writes data
//! into the page with `textContent` only, because check names, group names
//! and error text are not trusted.

use std::sync::OnceLock;

use axum::http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The assembled document and the policy that admits its inline parts.
pub struct Page {
    pub html: String,
    pub csp: String,
}

/// Built once: the template with the style and script spliced in.
pub fn assembled() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let html = TEMPLATE
            .replacen("/*STYLE*/", STYLE, 1)
            .replacen("/*SCRIPT*/", SCRIPT, 1);
        let csp = format!(
            "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(STYLE),
            sha256_source(SCRIPT)
        );
        Page { html, csp }
    })
}

/// `GET /`: the page with its security headers.
pub async fn page() -> Response {
    let p = assembled();
    let headers: [(HeaderName, HeaderValue); 6] = [
        (
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&p.csp).unwrap_or(HeaderValue::from_static("default-src 'none'")),
        ),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    (headers, p.html.clone()).into_response()
}

/// A CSP hash source: `sha256-` and the base64 of the digest.
fn sha256_source(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!("sha256-{}", base64(digest.as_ref()))
}

/// Standard base64 with padding (RFC 4648 §4), all CSP hashes need.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn the_page_carries_its_style_and_script_verbatim() {
        let p = assembled();
        assert!(p.html.contains(&format!("<style>{STYLE}</style>")));
        assert!(p.html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(!p.html.contains("/*STYLE*/") && !p.html.contains("/*SCRIPT*/"));
        assert!(!p.csp.contains("unsafe"));
        // Nothing is loaded from anywhere but the page itself.
        for external in ["http://", "https://", "src=", "href=\"/"] {
            assert!(
                !TEMPLATE.contains(external),
                "page.html refers to {external}"
            );
        }
    }
}
