//! `file`: a file exists and, with `maxAge`, was modified recently: the
//! heartbeat of a worker that has no HTTP server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "file",
    keys: &["path", "maxAge"],
    parse,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    path: Option<Scalar>,
    max_age: Option<Scalar>,
}

#[derive(Debug, Clone)]
struct File {
    path: PathBuf,
    max_age: Option<Duration>,
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let file = cx.required(&format!("{path}.path"), &f.path, " for a file check")?;
    let max_age = cx.duration(&format!("{path}.maxAge"), &f.max_age)?;
    Ok(Arc::new(File {
        path: PathBuf::from(file.value),
        max_age,
    }))
}

impl CheckDef for File {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(self.clone())
    }
}

impl Probe for File {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            let path = &self.path;
            let meta = std::fs::metadata(path).map_err(|e| {
                let mut err = CheckError::from_io(&e, secrets);
                err.detail = format!("{}: {}", path.display(), err.detail);
                err
            })?;
            if let Some(max_age) = self.max_age {
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .unwrap_or(Duration::ZERO);
                if age > max_age {
                    return Err(CheckError::new(
                        "stale",
                        format!(
                            "{} last modified {}s ago (maxAge {}s)",
                            path.display(),
                            age.as_secs(),
                            max_age.as_secs_f64()
                        ),
                    ));
                }
            }
            Ok(())
        })
    }
}
