//! `${VAR}` and `${file:/path}` in configuration values.
//!
//! Expansion happens after YAML parsing, value by value, so a secret that
//! contains YAML syntax cannot change the document's structure. What came
//! from an expansion is remembered ([`Expanded::refs`]): an error about such
//! a value names the variable, never its content, because a secret put in
//! the wrong field must not end up in the pod's log.
//!
//! `${file:}` reads are bounded: only regular files (Kubernetes' projected
//! secrets are symlinks to regular files), at most [`MAX_FILE_BYTES`], so
//! `${file:/dev/zero}`, a FIFO or `/proc/kcore` fail at once instead of
//! hanging `check-config` or filling memory.

use std::io::Read;

/// The largest file `${file:}` reads: far above any password or token.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// An expanded value and the references it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    /// `${NAME}` / `${file:/path}` as written, in order; empty for a literal.
    pub refs: Vec<String>,
    /// What each reference expanded to, in the same order: error text is
    /// scrubbed of these (see [`super::Cx::scrub`]).
    pub pieces: Vec<String>,
}

/// Expands `${VAR}` from `env` and `${file:/path}` from a file (one trailing
/// newline removed, as `kubectl create secret --from-file` users rarely
/// mean it). `$${` is a literal `${`. A missing variable is an error, never
/// an empty string: an empty password would fail much later and far less
/// clearly.
pub fn expand(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Expanded, String> {
    let mut out = String::with_capacity(raw.len());
    let mut refs = Vec::new();
    let mut pieces = Vec::new();
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${ (missing })".to_string())?;
            let reference = &body[..end];
            if let Some(file) = reference.strip_prefix("file:") {
                let content = read_bounded(file)?;
                out.push_str(&content);
                pieces.push(content);
            } else {
                let valid = !reference.is_empty()
                    && !reference.starts_with(|c: char| c.is_ascii_digit())
                    && reference
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(
                        "bad reference: use ${NAME} (letters, digits, _) or ${file:/path}"
                            .to_string(),
                    );
                }
                let value = env(reference)
                    .ok_or_else(|| format!("environment variable {reference} is not set"))?;
                out.push_str(&value);
                pieces.push(value);
            }
            refs.push(format!("${{{reference}}}"));
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Expanded {
        value: out,
        refs,
        pieces,
    })
}

/// Reads a secret file: a regular file of at most [`MAX_FILE_BYTES`].
fn read_bounded(path: &str) -> Result<String, String> {
    let cannot = |why: &str| format!("cannot read ${{file:{path}}}: {why}");
    let meta = std::fs::metadata(path).map_err(|e| cannot(&super::io_reason(&e)))?;
    if !meta.is_file() {
        return Err(cannot("not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(cannot(&format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let file = std::fs::File::open(path).map_err(|e| cannot(&super::io_reason(&e)))?;
    let mut bytes = Vec::new();
    // The size can change between stat and read: cap the read itself too.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&super::io_reason(&e)))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(cannot(&format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| cannot("not UTF-8 text"))?;
    let trimmed = text
        .strip_suffix('\n')
        .map(|c| c.strip_suffix('\r').unwrap_or(c))
        .unwrap_or(&text);
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        let env = |k: &str| (k == "A").then(|| "x$y".to_string());
        let e = expand("p-${A}-q", &env).expect("ok");
        assert_eq!(e.value, "p-x$y-q");
        assert_eq!(e.refs, vec!["${A}".to_string()]);
        assert_eq!(expand("$${A}", &env).expect("ok").value, "${A}");
        assert!(expand("$${A}", &env).expect("ok").refs.is_empty());
        assert_eq!(expand("a$b", &env).expect("ok").value, "a$b");
        assert!(expand("${B}", &env)
            .expect_err("unset")
            .contains("B is not set"));
        assert!(expand("${A", &env).is_err());
    }

    #[test]
    fn file_reads_are_bounded() {
        let no_env = |_: &str| None;
        for hostile in ["/dev/zero", "/dev/urandom", "/proc/self", "/"] {
            let e = expand(&format!("${{file:{hostile}}}"), &no_env).expect_err(hostile);
            assert!(e.contains("not a regular file"), "{hostile}: {e}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).expect("write");
        let e = expand(&format!("${{file:{}}}", big.display()), &no_env).expect_err("big");
        assert!(e.contains("larger than"), "{e}");
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "s3cret\n").expect("write");
        let got = expand(&format!("${{file:{}}}", ok.display()), &no_env).expect("ok");
        assert_eq!(got.value, "s3cret");
    }
}
