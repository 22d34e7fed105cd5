//! `jobqueue` binary: subcommand dispatch.
#![forbid(unsafe_code)]

fn main() {
    let _ = jobqueue::migrate::latest_version();
}
