//! Leaf values of the configuration and the validation context.
//!
//! Every leaf is read as a [`Scalar`] (its text, whatever YAML type it had),
//! then expanded and converted by [`Cx`] in the validation pass. That keeps
//! serde's part to the document's *shape*, and puts every rule about a
//! *value* in one place that knows the field's path and whether the value
//! came from `${…}` (then messages name the reference, never the content).

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::expand::{expand, Expanded};
use super::{parse_duration, ConfigError, Result};

/// A YAML scalar as written: string, number or boolean, kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    pub text: String,
    /// Written as a YAML number (`interval: 5` is a duration without a unit).
    pub number: bool,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Scalar, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar {
                    text: v.to_string(),
                    number: false,
                })
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar {
                    text: v.to_string(),
                    number: false,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar {
                    text: v.to_string(),
                    number: true,
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(Scalar {
                    text: v.to_string(),
                    number: true,
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(Scalar {
                    text: v.to_string(),
                    number: true,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// An expanded value that remembers where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub value: String,
    refs: Vec<String>,
}

impl Text {
    /// How an error message may refer to this value: quoted when it was
    /// written literally, by its references when it came from `${…}`.
    pub fn describe(&self) -> String {
        if self.refs.is_empty() {
            format!("{:?}", self.value)
        } else {
            format!("the value of {}", self.refs.join(" + "))
        }
    }

    pub fn from_env(&self) -> bool {
        !self.refs.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// The validation pass: environment lookups and typed conversions, each
/// error naming the field.
pub struct Cx<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Every `(expanded value, reference)` seen so far: a validator of
    /// another crate may quote a value (an sslmode, a host) that came from
    /// a secret; [`Cx::scrub`] takes it out of the final error.
    expanded: std::cell::RefCell<Vec<(String, String)>>,
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Cx<'a> {
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Cx<'a> {
        Cx {
            env,
            expanded: std::cell::RefCell::new(Vec::new()),
        }
    }

    pub fn text(&self, field: &str, s: &Scalar) -> Result<Text> {
        let Expanded {
            value,
            refs,
            pieces,
        } = expand(&s.text, self.env).map_err(|msg| ConfigError::new(field, msg))?;
        let mut seen = self.expanded.borrow_mut();
        for (piece, reference) in pieces.into_iter().zip(refs.iter()) {
            // Too short to hide without garbling every message (and too
            // short to be a credential worth hiding).
            if piece.chars().count() >= 3 {
                seen.push((piece, reference.clone()));
            }
        }
        Ok(Text { value, refs })
    }

    /// Replaces every expanded value in `e`'s message by its reference.
    /// Another crate's validator may also quote a *fragment* of a value (a
    /// truncated sslmode, a host): if any run of [`FRAGMENT`] characters of
    /// an expanded value is still there, quoted text is dropped, and if that
    /// is not enough the message is replaced whole.
    pub fn scrub(&self, mut e: ConfigError) -> ConfigError {
        let mut seen = self.expanded.borrow().clone();
        // Longest first, so a value containing another is replaced whole.
        seen.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        for (value, reference) in &seen {
            if e.message.contains(value.as_str()) {
                e.message = e.message.replace(value.as_str(), reference);
            }
        }
        let leaks = |msg: &str| {
            seen.iter().any(|(value, _)| {
                let chars: Vec<char> = value.chars().collect();
                chars.len() >= FRAGMENT
                    && chars
                        .windows(FRAGMENT)
                        .any(|w| msg.contains(&w.iter().collect::<String>()))
            })
        };
        if leaks(&e.message) {
            e.message = strip_quoted(&e.message);
        }
        if leaks(&e.message) {
            let refs: Vec<&str> = seen.iter().map(|(_, r)| r.as_str()).collect();
            e.message = format!(
                "is not valid (its value comes from {}, which is not shown)",
                refs.join(", ")
            );
        }
        e
    }

    pub fn opt_text(&self, field: &str, s: &Option<Scalar>) -> Result<Option<Text>> {
        s.as_ref().map(|s| self.text(field, s)).transpose()
    }

    /// A required, non-empty value.
    pub fn required(&self, field: &str, s: &Option<Scalar>, what: &str) -> Result<Text> {
        match self.opt_text(field, s)? {
            Some(t) if !t.value.is_empty() => Ok(t),
            _ => Err(ConfigError::new(field, format!("is required{what}"))),
        }
    }

    pub fn duration(&self, field: &str, s: &Option<Scalar>) -> Result<Option<Duration>> {
        let Some(s) = s else { return Ok(None) };
        if s.number {
            return Err(ConfigError::new(
                field,
                format!("bad duration {0}: give a unit, e.g. \"{0}s\"", s.text),
            ));
        }
        let t = self.text(field, s)?;
        parse_duration(&t.value).map(Some).ok_or_else(|| {
            ConfigError::new(
                field,
                format!(
                    "bad duration {} (expected e.g. 500ms, 5s, 1m)",
                    t.describe()
                ),
            )
        })
    }

    pub fn boolean(&self, field: &str, s: &Option<Scalar>) -> Result<Option<bool>> {
        match self.opt_text(field, s)? {
            None => Ok(None),
            Some(t) if t.value == "true" => Ok(Some(true)),
            Some(t) if t.value == "false" => Ok(Some(false)),
            Some(_) => Err(ConfigError::new(field, "must be true or false")),
        }
    }

    pub fn threshold(&self, field: &str, s: &Option<Scalar>) -> Result<Option<u32>> {
        match self.opt_text(field, s)? {
            None => Ok(None),
            Some(t) => match t.value.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(ConfigError::new(
                    field,
                    format!("must be a whole number >= 1, not {}", t.describe()),
                )),
            },
        }
    }

    /// `expectStatus` of the http and https checks: a status or an inclusive
    /// range, default 200-399.
    pub fn status_range(&self, field: &str, s: &Option<Scalar>) -> Result<(u16, u16)> {
        match self.opt_text(field, s)? {
            None => Ok((200, 399)),
            Some(t) => super::parse_status_range(&t.value).ok_or_else(|| {
                ConfigError::new(
                    field,
                    format!(
                        "must be a status or a range like 200-399, not {}",
                        t.describe()
                    ),
                )
            }),
        }
    }

    /// Deserializes a mapping (a check's type-specific keys) into `T`,
    /// with `path` prefixed to any error's field.
    pub fn fields<T: DeserializeOwned>(
        &self,
        map: &serde_yaml_ng::Mapping,
        path: &str,
    ) -> Result<T> {
        let value = serde_yaml_ng::Value::Mapping(map.clone());
        serde_path_to_error::deserialize(value).map_err(|e| shape_error(path, &e))
    }
}

/// The shortest run of a secret's characters that counts as quoting it.
const FRAGMENT: usize = 6;

/// `unknown sslmode "x"` → `unknown sslmode "…"`.
fn strip_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// Turns a serde error into a [`ConfigError`] without quoting any value:
/// serde's "invalid type: string \"…\"" would echo whatever was there.
pub fn shape_error(
    prefix: &str,
    e: &serde_path_to_error::Error<serde_yaml_ng::Error>,
) -> ConfigError {
    let inner = e.inner().to_string();
    let mut field = e.path().to_string();
    if field == "." {
        field.clear();
    }
    let mut field = match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field,
        (false, true) => prefix.to_string(),
        (false, false) if field.starts_with('[') => format!("{prefix}{field}"),
        (false, false) => format!("{prefix}.{field}"),
    };
    let message = if let Some(rest) = inner.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or("");
        if !field.ends_with(key) {
            field = join(&field, key);
        }
        match rest.split_once("expected ") {
            Some((_, expected)) => format!(
                "unknown key (expected {})",
                expected
                    .replace('`', "")
                    .trim_end_matches(|c: char| !c.is_alphanumeric())
            ),
            None => "unknown key".to_string(),
        }
    } else if let Some(rest) = inner.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or("");
        if !field.ends_with(key) {
            field = join(&field, key);
        }
        "is required".to_string()
    } else if inner.starts_with("invalid type") || inner.starts_with("invalid value") {
        let expected = inner
            .rsplit_once("expected ")
            .map(|(_, e)| e.split(" at line").next().unwrap_or(e).trim().to_string())
            .unwrap_or_else(|| "another type".into());
        format!("must be {expected}")
    } else if inner.contains("recursion limit") {
        "is nested too deeply".to_string()
    } else {
        "is not valid here".to_string()
    };
    if field.is_empty() {
        field = "config".into();
    }
    ConfigError::new(field, message)
}
