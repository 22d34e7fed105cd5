//! `berth inject`: adds berth to the workloads of Kubernetes YAML exactly
//! as `charts/berth` would render them, and `--remove` takes it away.
//!
//! Layout: [`settings`] (berth.yaml for one pod and what the pod spec
//! needs from it), [`pod`] (the pod spec edit, mirroring
//! `charts/berth-lib/templates/_pod.tpl`), [`stream`] (documents, `kind:
//! List`, generated ConfigMaps), [`webhook`] (the AdmissionReview answer of
//! `berth injector`) and [`injector`] (its HTTPS server).
//!
//! Inject is remove-then-add: a workload that already carries inject's
//! record (`berth.dev/injected`) is first restored, so injecting twice
//! equals injecting once and `--remove` gives back the input.

pub mod injector;
pub mod pod;
pub mod settings;
pub mod stream;
pub mod webhook;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_yaml_ng::Mapping;

/// Largest input read (all files together): far above any manifest set.
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;
const EX_USAGE: u8 = 64;

/// `berth inject` command line (its `--config` is berth's global one).
#[derive(clap::Args, Debug)]
pub struct InjectArgs {
    /// Manifest files; `-` or none: standard input.
    pub files: Vec<PathBuf>,
    /// Kubernetes version of the cluster: 1.29 and newer get berth as a
    /// native sidecar, older ones a regular container.
    #[arg(long, default_value = "1.35")]
    pub kube_version: String,
    /// The main container (default: the annotation berth.dev/main-container, else the first container).
    #[arg(long)]
    pub container: Option<String>,
    /// Take berth out again (restores what inject replaced).
    #[arg(long)]
    pub remove: bool,
    /// berth's image.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// The lifecycle token for the preStop hook (default: the one already
    /// in the input, else a new random one). For GitOps renders that must
    /// not change on every run.
    #[arg(long, env = "BERTH_INJECT_TOKEN", hide_env_values = true)]
    pub lifecycle_token: Option<String>,
}

/// The image the chart defaults to (`berth-lib.defaults`).
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/berth-dev/berth:", env!("CARGO_PKG_VERSION"));

/// What every workload gets.
#[derive(Debug, Clone)]
pub struct Options {
    /// The user's berth.yaml (parsed, and its text), or the default tcp check.
    pub config: Option<(Mapping, String)>,
    /// Native sidecar (Kubernetes ≥ 1.29).
    pub native: bool,
    pub container: Option<String>,
    pub image: String,
    pub remove: bool,
}

/// Bad input: which document, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub document: String,
    pub message: String,
}

impl InputError {
    pub fn new(document: impl Into<String>, message: impl Into<String>) -> InputError {
        InputError {
            document: document.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.document, self.message)
    }
}

/// `1.28`, `v1.28.3`, `1.30.1-gke.100` → whether native sidecars are on.
pub fn native_sidecars(version: &str) -> Option<bool> {
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split(['.', '-', '+']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some(major > 1 || (major == 1 && minor >= 29))
}

/// A lifecycle token like the chart's `randAlphaNum 40`.
pub fn random_token() -> Result<String, String> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(40);
    while out.len() < 40 {
        let mut buf = [0u8; 64];
        rng.fill(&mut buf)
            .map_err(|_| "no randomness for the lifecycle token".to_string())?;
        // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() < 40 {
                out.push(char::from(ALPHABET[usize::from(*b) % 62]));
            }
        }
    }
    Ok(out)
}

/// Checks a given token the way the chart does (it travels in a header).
pub fn check_token(t: &str) -> Result<(), String> {
    if t.len() < 16 || !t.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err(
            "the lifecycle token must be at least 16 printable characters without spaces".into(),
        );
    }
    Ok(())
}

/// The whole transformation on a YAML stream: documents out, or the first
/// bad document. `token`: given by the user; else found in the input; else new.
pub fn run_text(
    input: &str,
    opts: &Options,
    token: Option<&str>,
    label: &dyn Fn(usize) -> String,
) -> Result<String, InputError> {
    let docs = stream::parse_documents(input, label)?;
    let token = match token {
        Some(t) => t.to_string(),
        None => match stream::find_token(&docs) {
            Some(t) => t,
            None => random_token().map_err(|m| InputError::new("lifecycle token", m))?,
        },
    };
    let out = stream::transform(docs, opts, &token, label)?;
    stream::write_documents(&out).map_err(|m| InputError::new("output", m))
}

/// Reads a config file for `--config`, bounded like berth's own.
pub fn load_config(path: &std::path::Path) -> Result<(Mapping, String), String> {
    let text = crate::config::read(path).map_err(|e| e.message)?;
    let m = settings::parse_user_config(&text).map_err(|m| format!("{}: {m}", path.display()))?;
    Ok((m, text))
}

fn read_bounded(r: &mut dyn Read, budget: &mut u64) -> Result<String, String> {
    let mut bytes = Vec::new();
    r.take(*budget + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > *budget {
        return Err(format!("input larger than {MAX_INPUT_BYTES} bytes"));
    }
    *budget -= bytes.len() as u64;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// The `berth inject` command: 0 done, 64 bad input (one line naming the
/// document), 1 cannot write the output.
pub fn run(args: InjectArgs, config: Option<&std::path::Path>) -> ExitCode {
    let usage = |m: String| {
        eprintln!("berth inject: {m}");
        ExitCode::from(EX_USAGE)
    };
    let Some(native) = native_sidecars(&args.kube_version) else {
        return usage(format!(
            "--kube-version {:?}: expected e.g. 1.35",
            args.kube_version
        ));
    };
    let config = match config {
        Some(p) if !args.remove => match load_config(p) {
            Ok(c) => Some(c),
            Err(m) => return usage(format!("--config {m}")),
        },
        _ => None,
    };
    if let Some(t) = &args.lifecycle_token {
        if let Err(m) = check_token(t) {
            return usage(format!("--lifecycle-token: {m}"));
        }
    }
    let opts = Options {
        config,
        native,
        container: args.container.clone(),
        image: args.image.clone(),
        remove: args.remove,
    };
    let mut budget = MAX_INPUT_BYTES;
    let mut inputs: Vec<(Option<String>, String)> = Vec::new();
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    for f in &files {
        let (name, text) = if f.as_os_str() == "-" {
            (
                None,
                read_bounded(&mut std::io::stdin().lock(), &mut budget),
            )
        } else {
            let shown = f.display().to_string();
            let text = std::fs::File::open(f)
                .map_err(|e| crate::config::io_reason(&e))
                .and_then(|mut file| read_bounded(&mut file, &mut budget));
            (Some(shown), text)
        };
        match text {
            Ok(t) => inputs.push((name, t)),
            Err(m) => return usage(format!("{}: {m}", name.as_deref().unwrap_or("stdin"))),
        }
    }
    let mut out = String::new();
    // One token for the whole run: found in any input, else one new one.
    let mut token = args.lifecycle_token.clone();
    if token.is_none() {
        for (name, text) in &inputs {
            let label = |n: usize| doc_label(name.as_deref(), n);
            if let Ok(docs) = stream::parse_documents(text, &label) {
                if let Some(t) = stream::find_token(&docs) {
                    token = Some(t);
                    break;
                }
            }
        }
    }
    let token = match token {
        Some(t) => t,
        None => match random_token() {
            Ok(t) => t,
            Err(m) => {
                eprintln!("berth inject: {m}");
                return ExitCode::FAILURE;
            }
        },
    };
    for (name, text) in &inputs {
        let label = |n: usize| doc_label(name.as_deref(), n);
        match run_text(text, &opts, Some(&token), &label) {
            Ok(s) => out.push_str(&s),
            Err(e) => return usage(e.to_string()),
        }
    }
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn doc_label(file: Option<&str>, n: usize) -> String {
    match file {
        Some(f) => format!("{f}: document {n}"),
        None => format!("document {n}"),
    }
}

#[cfg(test)]
mod tests;
