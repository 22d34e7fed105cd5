//! The configuration file's shape, as serde reads it.
//!
//! Only structure lives here (which keys exist, what is a list or a
//! mapping); every leaf is a [`Scalar`] so that values are expanded and
//! checked in one place, [`super::validate`]. `deny_unknown_fields` makes a
//! typo an error naming the key instead of a silently ignored setting.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::scalar::Scalar;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "a mapping")]
pub struct RawConfig {
    pub listen: Option<Scalar>,
    pub grpc_listen: Option<Scalar>,
    pub mode: Option<Scalar>,
    pub token: Option<Scalar>,
    pub checks: Option<Vec<RawCheck>>,
    pub groups: Option<BTreeMap<String, Option<Vec<Scalar>>>>,
    pub startup: Option<RawStartup>,
    pub drain: Option<RawDrain>,
    pub lifecycle: Option<RawLifecycle>,
}

/// A check: the keys every type shares, and the rest for its type's module.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a mapping")]
pub struct RawCheck {
    pub name: Option<Scalar>,
    #[serde(rename = "type")]
    pub kind: Option<Scalar>,
    pub critical: Option<Scalar>,
    pub interval: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub failure_threshold: Option<Scalar>,
    pub success_threshold: Option<Scalar>,
    #[serde(flatten)]
    pub rest: serde_yaml_ng::Mapping,
}

/// The keys of [`RawCheck`] other than `rest`, for "unknown key" messages.
pub const CHECK_COMMON: &[&str] = &[
    "name",
    "type",
    "critical",
    "interval",
    "timeout",
    "failureThreshold",
    "successThreshold",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "a mapping")]
pub struct RawStartup {
    pub wait_for: Option<Vec<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "a mapping")]
pub struct RawDrain {
    pub delay: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub notify: Option<RawNotify>,
    pub wait_until_down: Option<Vec<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "a mapping")]
pub struct RawNotify {
    #[serde(rename = "type")]
    pub kind: Option<Scalar>,
    pub process: Option<Scalar>,
    pub signal: Option<Scalar>,
    pub wait_for_exit: Option<Scalar>,
    pub url: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "a mapping")]
pub struct RawLifecycle {
    pub listen: Option<Scalar>,
    pub token: Option<Scalar>,
}
