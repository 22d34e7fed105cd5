//! `make demo | tee log`, then Ctrl-C: the demo's cleanup
//! (scripts/demo-lib.sh, which scripts/demo.sh sources) still stops
//! kubelet.py and HAProxy, removes the pods and stops PostgreSQL although its
//! stdout is a pipe whose reader is gone. tests/scripts/demo-cleanup-test.sh
//! replays it with stand-ins for those processes; this runs it.

use std::process::Command;

#[test]
fn demo_cleanup_finishes_when_stdout_is_a_closed_pipe() {
    let root = berth_tests::workspace_root();
    let out = Command::new("timeout")
        .arg("120")
        .arg(root.join("tests/scripts/demo-cleanup-test.sh"))
        .output()
        .expect("run tests/scripts/demo-cleanup-test.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo cleanup test failed:\n{text}");
    assert!(text.contains("demo-cleanup-test: ok"), "{text}");
}
