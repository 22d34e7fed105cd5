//! Where the external tools live (helm 3, helm 4, kubectl, the Python
//! validators) once `tools/setup.sh` has installed them.

use std::path::PathBuf;

/// `$BERTH_TOOLS_DIR`, default `$HOME/.cache/berth-tools` (what `tools/setup.sh` uses).
pub fn tools_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("BERTH_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/berth-tools")
}

/// Path of a tool installed by `tools/setup.sh` (`helm3`, `helm4`, `kubectl`),
/// or of a Python tool in its venv (`yamllint`, `kubernetes-validate`, …).
pub fn tool(name: &str) -> PathBuf {
    let bin = tools_dir().join("bin").join(name);
    if bin.exists() {
        return bin;
    }
    tools_dir().join("venv/bin").join(name)
}
