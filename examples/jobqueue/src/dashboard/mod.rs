//! The dashboard: `GET /` (and `/dashboard`) on the API.
//!
//! Why it looks like this:
//!
//! - **One self-contained document.** The HTML, its CSS and its script are
//!   compiled into the binary (`include_str!`) and spliced together once.
//!   Nothing is fetched from anywhere else (no CDN, no fonts, no build
//!   step), so the page works in an air-gapped cluster behind
//!   `kubectl port-forward` and cannot be changed by a third party.
//! - **The page holds no data, so it needs no auth.** It reads the same
//!   JSON API as `curl` does (`/api/v1/queues`, `/api/v1/jobs`, …). When
//!   `API_SECRET_KEY` is set and a call answers 401, the script asks for the
//!   key once, keeps it in the tab's `sessionStorage` and sends it only as
//!   `Authorization: Bearer …`: never in a URL (it would land in proxy and
//!   access logs), never in a cookie (the browser would attach it to any
//!   request, which invites CSRF), never in `localStorage` (it would outlive
//!   the tab).
//! - **Strict Content-Security-Policy.** The inline style and script are
//!   allowed by their SHA-256 hashes and nothing else: no `'unsafe-inline'`,
//!   no other origin, `connect-src 'self'` for the JSON, `form-action
//!   'none'` (the key form is handled by script), no framing.
//! - **Everything shown is untrusted.** Payloads, outputs, error text, queue
//!   and kind names come from whoever submitted the job. The script writes
//!   them with `textContent` (JSON via `JSON.stringify` into `<pre>`), never
//!   as HTML, and the policy would block an injected script anyway.
//!
//! berth's status page (`sidecar/src/ui/`) is built the same way.

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
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(SCRIPT),
            sha256_source(STYLE)
        );
        Page { html, csp }
    })
}

/// `GET /`, `GET /dashboard`: the page with its security headers. Outside
/// the auth layer on purpose: the document carries no data.
pub async fn page() -> Response {
    let p = assembled();
    let headers: [(HeaderName, HeaderValue); 6] = [
        (
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        // A new binary may come with a new page and new hashes: never cache.
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            CONTENT_SECURITY_POLICY,
            // The policy is ASCII built from constants; should that ever
            // fail, deny everything rather than serve the page unprotected.
            HeaderValue::from_str(&p.csp).unwrap_or(HeaderValue::from_static("default-src 'none'")),
        ),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        // For browsers that predate `frame-ancestors`.
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

/// Standard base64 with padding (RFC 4648 §4), all CSP hashes need; not
/// worth a dependency.
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

    /// The text between `<tag>` and `</tag>` in the served document.
    fn inline(html: &str, tag: &str) -> String {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let start = html.find(&open).expect("opening tag") + open.len();
        let end = html[start..].find(&close).expect("closing tag") + start;
        assert_eq!(html.matches(&open).count(), 1, "exactly one <{tag}>");
        html[start..end].to_string()
    }

    #[test]
    fn the_csp_hashes_match_the_inlined_style_and_script() {
        let p = assembled();
        // Hash what the browser will hash: the served inline text, not the
        // source files, so a template change that alters it is caught.
        let script = inline(&p.html, "script");
        let style = inline(&p.html, "style");
        assert_eq!(script, SCRIPT);
        assert_eq!(style, STYLE);
        assert_eq!(
            p.csp,
            format!(
                "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
                 img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                sha256_source(&script),
                sha256_source(&style)
            )
        );
        assert!(!p.csp.contains("unsafe"));
        // A known vector, so the hash itself is the browser's SHA-256.
        assert_eq!(
            sha256_source("abc"),
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        let p = assembled();
        assert!(!p.html.contains("/*STYLE*/") && !p.html.contains("/*SCRIPT*/"));
        for external in ["http://", "https://", "src=", "href=\"/", "//cdn"] {
            assert!(
                !TEMPLATE.contains(external),
                "page.html refers to {external}"
            );
        }
        // Data is never parsed as HTML.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "page.js uses {sink}");
        }
        // The key stays in the tab: no cookie, no localStorage.
        for store in ["localStorage", "document.cookie"] {
            assert!(!SCRIPT.contains(store), "page.js uses {store}");
        }
    }
}
