//! The PrometheusRule alerts, unit-tested with `promtool test rules`
//! (tests/charts/alerts-test.yaml: every alert firing and not firing):
//! charts/berth's own (BerthDependencyDown, BerthPodNotReady) and the
//! job-queue rules of examples/jobqueue/values.yaml, as rendered by helm 3
//! and helm 4. promtool comes from Debian's `prometheus` package.

use berth_tests::chart::{Render, HELMS, MONITORING_APIS};
use berth_tests::workspace_root;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const JQ: &str = "examples/jobqueue/values.yaml";

fn promtool(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("promtool")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run promtool (apt-get install prometheus; tools/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The rendered PrometheusRule's `spec` (a Prometheus rule file: `groups`).
fn rendered_rules(helm: berth_tests::chart::Helm) -> Value {
    let mut r = Render::berth(helm).values(JQ);
    for api in MONITORING_APIS {
        r = r.api(api);
    }
    let m = r.ok();
    m.get("PrometheusRule", "rel")["spec"].clone()
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect()
}

/// Writes `rules` as rules.yaml next to a copy of alerts-test.yaml and runs
/// `promtool check rules` and `promtool test rules`.
fn run_tests(rules: &Value) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string_pretty(rules).expect("json"),
    )
    .expect("write rules.yaml");
    std::fs::copy(
        workspace_root().join("tests/charts/alerts-test.yaml"),
        dir.path().join("alerts-test.yaml"),
    )
    .expect("copy alerts-test.yaml");
    let checked = promtool(dir.path(), &["check", "rules", "rules.yaml"])?;
    let tested = promtool(dir.path(), &["test", "rules", "alerts-test.yaml"])?;
    Ok(format!("{checked}{tested}"))
}

#[test]
fn every_alert_has_a_firing_and_a_not_firing_case() {
    let rules = rendered_rules(HELMS[1]);
    let names = alert_names(&rules);
    assert_eq!(
        names,
        [
            "BerthDependencyDown",
            "BerthPodNotReady",
            "JobQueueBacklog",
            "JobQueueFailures"
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        "a new alert needs cases in tests/charts/alerts-test.yaml"
    );
    let tests: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace_root().join("tests/charts/alerts-test.yaml"))
            .expect("read"),
    )
    .expect("alerts-test.yaml parses");
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for t in tests["tests"].as_sequence().expect("tests") {
        for case in t["alert_rule_test"].as_sequence().expect("cases") {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            let empty = case["exp_alerts"]
                .as_sequence()
                .is_none_or(|a| a.is_empty());
            if empty {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    assert_eq!(firing, names, "alerts with a firing case");
    assert_eq!(quiet, names, "alerts with a not-firing case");
}

#[test]
fn promtool_test_rules_passes_for_the_rendered_alerts() {
    for helm in HELMS {
        let rules = rendered_rules(helm);
        match run_tests(&rules) {
            Ok(report) => assert!(report.contains("SUCCESS"), "{helm:?}: {report}"),
            Err(report) => panic!("{helm:?}: promtool rejects the rendered rules:\n{report}"),
        }
    }
}

#[test]
fn the_unit_tests_catch_a_broken_rule() {
    // Each mutation changes what an alert means; the tests must notice.
    let rules = rendered_rules(HELMS[1]);
    let text = serde_json::to_string(&rules).expect("json");
    for (from, to) in [
        (r#"critical=\"true\""#, r#"critical=\"false\""#),
        ("== 0", "== 1"),
        ("> 1000", "> 2000"),
        (r#"status=\"queued\""#, r#"status=~\"queued|running\""#),
        ("[5m])) > 1", "[5m])) > 3"),
        (r#""for":"5m""#, r#""for":"1m""#),
    ] {
        assert!(text.contains(from), "rules hold {from}: {text}");
        let broken: Value = serde_json::from_str(&text.replacen(from, to, 1)).expect("json");
        let result = run_tests(&broken);
        assert!(
            result.is_err(),
            "{from} -> {to} still passes alerts-test.yaml: {result:?}"
        );
    }
}
