//! `process`: a process whose command name is `command` is alive (via
//! `/proc`, in a shared PID namespace). Also tells the drain which process
//! is the main container's.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar};
use crate::procs;
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "process",
    keys: &["command"],
    parse,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    command: Option<Scalar>,
}

#[derive(Debug)]
struct Process {
    command: String,
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let command = cx.required(
        &format!("{path}.command"),
        &f.command,
        " for a process check",
    )?;
    Ok(Arc::new(Process {
        command: command.value,
    }))
}

impl CheckDef for Process {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(ProcessProbe {
            command: self.command.clone(),
        })
    }

    fn process_name(&self) -> Option<&str> {
        Some(&self.command)
    }
}

struct ProcessProbe {
    command: String,
}

impl Probe for ProcessProbe {
    fn check<'a>(&'a mut self, _secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            if procs::find_by_name(&self.command).is_empty() {
                Err(CheckError::new(
                    "not_running",
                    format!("no process named {}", self.command),
                ))
            } else {
                Ok(())
            }
        })
    }
}
