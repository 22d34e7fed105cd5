//! `tcp`: a TCP connect to `address` (host:port) succeeds.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{CheckDef, CheckType, Probe};
use crate::config::{validate_host_port, ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "tcp",
    keys: &["address"],
    parse,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    address: Option<Scalar>,
}

#[derive(Debug)]
struct Tcp {
    address: String,
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = format!("{path}.address");
    let address = cx.required(&field, &f.address, " for a tcp check")?;
    validate_host_port(&address.value).map_err(|m| ConfigError::new(&field, m))?;
    Ok(Arc::new(Tcp {
        address: address.value,
    }))
}

impl CheckDef for Tcp {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(TcpProbe {
            address: self.address.clone(),
        })
    }
}

struct TcpProbe {
    address: String,
}

impl Probe for TcpProbe {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            tokio::net::TcpStream::connect(self.address.as_str())
                .await
                .map(drop)
                .map_err(|e| CheckError::from_io(&e, secrets))
        })
    }
}
