//! `http`: a GET to `url` answers a status within `expectStatus`
//! (default 200-399): the main container's own endpoint or another service.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::Empty;
use serde::Deserialize;

use super::{http_client, io_source, CheckDef, CheckType, HttpClient, Probe};
use crate::config::{parse_http_url, ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "http",
    keys: &["url", "expectStatus"],
    parse,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    url: Option<Scalar>,
    expect_status: Option<Scalar>,
}

#[derive(Debug)]
struct Http {
    url: http::Uri,
    expect: (u16, u16),
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = format!("{path}.url");
    let url = cx.required(&field, &f.url, " for a http check")?;
    let url = parse_http_url(&url.value, false).map_err(|m| ConfigError::new(&field, m))?;
    let expect = cx.status_range(&format!("{path}.expectStatus"), &f.expect_status)?;
    Ok(Arc::new(Http { url, expect }))
}

impl CheckDef for Http {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn probe(&self, timeout: Duration) -> Box<dyn Probe> {
        Box::new(HttpProbe {
            client: http_client(timeout),
            url: self.url.clone(),
            expect: self.expect,
        })
    }

    fn add_secrets(&self, secrets: &mut Secrets) {
        secrets.add_url_userinfo(&self.url.to_string());
    }
}

struct HttpProbe {
    client: HttpClient,
    url: http::Uri,
    expect: (u16, u16),
}

impl Probe for HttpProbe {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            let req = http::Request::get(self.url.clone())
                .header(
                    http::header::USER_AGENT,
                    concat!("berth/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::new())
                .map_err(|_| CheckError::new("bad_request", ""))?;
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| hyper_error(&e, secrets))?;
            let code = resp.status().as_u16();
            let (lo, hi) = self.expect;
            if (lo..=hi).contains(&code) {
                Ok(())
            } else {
                Err(CheckError::new(
                    "unexpected_status",
                    format!("HTTP {code}, expected {lo}-{hi}"),
                ))
            }
        })
    }
}

fn hyper_error(e: &hyper_util::client::legacy::Error, secrets: &Secrets) -> CheckError {
    if let Some(io) = io_source(e) {
        return CheckError::from_io(io, secrets);
    }
    let kind = if e.is_connect() {
        "connect_failed"
    } else {
        "http_error"
    };
    CheckError::new(kind, secrets.scrub(&e.to_string()))
}
