//! `dns`: `host` resolves, and with `expect`, to every listed address.
//!
//! Resolution goes through the system resolver (`getaddrinfo`, on a
//! blocking thread: `tokio::net::lookup_host`), so the check sees exactly
//! what the app sees: `/etc/hosts`, the pod's `resolv.conf` search list and
//! `ndots`, cluster DNS. A name that stops resolving (a Service deleted, an
//! ExternalName pointing nowhere) is `not_found`; one that resolves
//! elsewhere than expected (a failover that did not happen, a split-horizon
//! mistake) is `unexpected_answer`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "dns",
    keys: &["host", "expect"],
    parse,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    host: Option<Scalar>,
    expect: Option<Vec<Scalar>>,
}

#[derive(Debug, Clone)]
struct Dns {
    host: String,
    expect: Vec<IpAddr>,
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = format!("{path}.host");
    let host = cx.required(&field, &f.host, " for a dns check")?;
    let name = host.value.trim_start_matches('[').trim_end_matches(']');
    let is_ip = name.parse::<IpAddr>().is_ok();
    if !is_ip
        && (name.contains(['/', ':', '@', '?', '#']) || name.chars().any(|c| c.is_whitespace()))
    {
        return Err(ConfigError::new(
            &field,
            "must be a host name or IP address (no scheme, port or path)",
        ));
    }
    let mut expect = Vec::new();
    for (i, s) in f.expect.iter().flatten().enumerate() {
        let field = format!("{path}.expect[{i}]");
        let text = cx.text(&field, s)?;
        let ip = text.value.trim().parse::<IpAddr>().map_err(|_| {
            ConfigError::new(
                &field,
                format!("must be an IP address, not {}", text.describe()),
            )
        })?;
        expect.push(ip);
    }
    Ok(Arc::new(Dns {
        host: name.to_string(),
        expect,
    }))
}

impl CheckDef for Dns {
    fn kind(&self) -> &'static str {
        "dns"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(self.clone())
    }
}

impl Probe for Dns {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            let answers: Vec<IpAddr> = tokio::net::lookup_host((self.host.as_str(), 0))
                .await
                .map_err(|e| resolve_error(&e, secrets))?
                .map(|a| a.ip())
                .collect();
            if answers.is_empty() {
                return Err(CheckError::new("not_found", "no address"));
            }
            let missing: Vec<String> = self
                .expect
                .iter()
                .filter(|ip| !answers.contains(ip))
                .map(|ip| ip.to_string())
                .collect();
            if !missing.is_empty() {
                let mut got: Vec<String> = answers.iter().map(|ip| ip.to_string()).collect();
                got.dedup();
                return Err(CheckError::new(
                    "unexpected_answer",
                    format!(
                        "{} not among the answers ({})",
                        missing.join(", "),
                        got.join(", ")
                    ),
                ));
            }
            Ok(())
        })
    }
}

/// getaddrinfo's "no such name" (EAI_NONAME, EAI_NODATA) is a definite
/// `not_found`; anything else (EAI_AGAIN: no resolver reachable) is a
/// failure to resolve, which is not the same news.
fn resolve_error(e: &std::io::Error, secrets: &Secrets) -> CheckError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let kind = if lower.contains("not known")
        || lower.contains("no address associated")
        || lower.contains("nodename nor servname")
        || e.kind() == std::io::ErrorKind::NotFound
    {
        "not_found"
    } else {
        "resolve_failed"
    };
    CheckError::new(kind, secrets.scrub(&text))
}
