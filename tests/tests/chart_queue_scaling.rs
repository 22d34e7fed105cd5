//! charts/berth: workers autoscaled on queue depth (`queueScaling`). A KEDA
//! ScaledObject (prometheus scaler) when the keda.sh/v1alpha1 API exists or
//! `engine: keda`, else an autoscaling/v2 HPA on an External metric; the
//! query and metric match jobqueue's `job_queue_depth{queue,status}`; the
//! ScaledObject passes KEDA's own CRD schema. helm 3 and helm 4.

use berth_tests::chart::{Manifests, Render, HELMS};
use berth_tests::{tools, workspace_root};
use serde_json::Value;
use std::process::Command;

const KEDA: &str = "charts/berth/ci/keda-values.yaml";
const JQ: &str = "examples/jobqueue/values.yaml";
const KEDA_API: &str = "keda.sh/v1alpha1/ScaledObject";

/// Every `.rs` file under `dir`, concatenated (the jobqueue crate's layout
/// may change; its metric names may not).
fn rust_sources(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.push_str(&rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).expect("read source"));
            out.push('\n');
        }
    }
    out
}

fn has_replicas(m: &Manifests, name: &str) -> bool {
    m.get("Deployment", name)["spec"].get("replicas").is_some()
}

#[test]
fn scaled_object_when_the_keda_api_exists() {
    for helm in HELMS {
        let m = Render::berth(helm).values(KEDA).api(KEDA_API).ok();
        let so = m.get("ScaledObject", "rel-worker");
        assert_eq!(so["apiVersion"], "keda.sh/v1alpha1", "{helm:?}");
        let s = &so["spec"];
        assert_eq!(s["scaleTargetRef"]["apiVersion"], "apps/v1");
        assert_eq!(s["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(s["scaleTargetRef"]["name"], "rel-worker");
        assert_eq!(s["minReplicaCount"], 1);
        assert_eq!(s["maxReplicaCount"], 15);
        assert_eq!(s["pollingInterval"], 15);
        assert_eq!(s["cooldownPeriod"], 300);
        assert_eq!(
            s["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
                ["stabilizationWindowSeconds"],
            300
        );
        let t = &s["triggers"][0];
        assert_eq!(t["type"], "prometheus");
        assert_eq!(t["metricType"], "AverageValue");
        // KEDA's trigger metadata is map[string]string: every value a string.
        assert_eq!(t["metadata"]["threshold"], "50");
        assert_eq!(t["metadata"]["activationThreshold"], "5");
        assert_eq!(
            t["metadata"]["serverAddress"],
            "http://prometheus-operated.monitoring:9090"
        );
        assert_eq!(
            t["metadata"]["query"],
            r#"sum(job_queue_depth{namespace="ns",queue="default",status="queued"})"#
        );
        // KEDA owns the count: no HPA of ours for it, no replicas.
        assert!(m.find("HorizontalPodAutoscaler", "rel-worker").is_none());
        assert!(!has_replicas(&m, "rel-worker"), "{helm:?}");
        // engine: hpa wins over the API's presence.
        assert!(m.find("ScaledObject", "rel-mailer").is_none());
        assert!(m.find("HorizontalPodAutoscaler", "rel-mailer").is_some());
    }
}

#[test]
fn hpa_on_an_external_metric_without_keda() {
    for helm in HELMS {
        let m = Render::berth(helm).values(KEDA).ok();
        assert!(m.of_kind("ScaledObject").is_empty(), "{helm:?}");
        let hpa = m.get("HorizontalPodAutoscaler", "rel-worker");
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        let s = &hpa["spec"];
        assert_eq!(s["scaleTargetRef"]["name"], "rel-worker");
        assert_eq!(
            (s["minReplicas"].clone(), s["maxReplicas"].clone()),
            (1.into(), 15.into())
        );
        let metrics = s["metrics"].as_array().expect("metrics");
        assert_eq!(metrics.len(), 1);
        let ext = &metrics[0];
        assert_eq!(ext["type"], "External");
        assert_eq!(ext["external"]["metric"]["name"], "job_queue_depth");
        assert_eq!(
            ext["external"]["metric"]["selector"]["matchLabels"],
            serde_json::json!({"queue": "default", "status": "queued"})
        );
        assert_eq!(ext["external"]["target"]["type"], "AverageValue");
        assert_eq!(ext["external"]["target"]["averageValue"], "50");
        assert_eq!(
            s["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            300
        );
        assert!(!has_replicas(&m, "rel-worker"));
        let mailer = m.get("HorizontalPodAutoscaler", "rel-mailer");
        assert_eq!(
            mailer["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]["queue"],
            "mail"
        );
        assert_eq!(mailer["spec"]["minReplicas"], 2);
    }
}

#[test]
fn engine_value_overrides_the_capability_check() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(KEDA)
            .set("workloads.worker.queueScaling.engine=keda")
            .ok();
        assert!(m.find("ScaledObject", "rel-worker").is_some(), "{helm:?}");
        assert!(m.find("HorizontalPodAutoscaler", "rel-worker").is_none());
        let m = Render::berth(helm)
            .values(KEDA)
            .api(KEDA_API)
            .set("workloads.worker.queueScaling.engine=hpa")
            .ok();
        assert!(m.of_kind("ScaledObject").is_empty(), "{helm:?}");
        assert!(m.find("HorizontalPodAutoscaler", "rel-worker").is_some());
    }
}

#[test]
fn keda_scales_to_zero_and_takes_a_trigger_authentication() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(KEDA)
            .api(KEDA_API)
            .set("workloads.worker.queueScaling.minReplicas=0")
            .set("workloads.worker.queueScaling.authenticationRef=prometheus-auth")
            // (--set would make 2.5 a string)
            .values_yaml("workloads: {worker: {queueScaling: {targetPerReplica: 2.5}}}")
            .ok();
        let s = &m.get("ScaledObject", "rel-worker")["spec"];
        assert_eq!(s["minReplicaCount"], 0, "{helm:?}");
        assert_eq!(
            s["triggers"][0]["authenticationRef"]["name"],
            "prometheus-auth"
        );
        assert_eq!(s["triggers"][0]["metadata"]["threshold"], "2.5");
    }
}

#[test]
fn jobqueue_workers_scale_on_the_metric_the_reaper_exports() {
    // The name and labels come from the jobqueue source, so a rename there
    // breaks this test instead of silently stopping the autoscaler.
    let src = rust_sources(&workspace_root().join("examples/jobqueue/src"));
    let at = src
        .find("\"job_queue_depth\"")
        .expect("jobqueue defines the job_queue_depth family");
    let family: String = src[at..].chars().take(300).collect();
    assert!(
        family.contains("\"queue\"") && family.contains("\"status\""),
        "job_queue_depth's labels are no longer queue and status: {family}"
    );
    assert!(src.contains("'queued'"), "jobqueue's status value 'queued'");
    for helm in HELMS {
        let m = Render::berth(helm).values(JQ).api(KEDA_API).ok();
        let t = &m.get("ScaledObject", "rel-worker")["spec"]["triggers"][0];
        assert_eq!(
            t["metadata"]["query"], r#"sum(job_queue_depth{namespace="ns",status="queued"})"#,
            "{helm:?}"
        );
        assert_eq!(t["metadata"]["threshold"], "100");
        let s = &m.get("ScaledObject", "rel-worker")["spec"];
        assert_eq!(
            (s["minReplicaCount"].clone(), s["maxReplicaCount"].clone()),
            (2.into(), 20.into())
        );
        // The API keeps its CPU/memory HPA.
        assert!(m.find("HorizontalPodAutoscaler", "rel-api").is_some());
        assert!(m.find("HorizontalPodAutoscaler", "rel-worker").is_none());

        let m = Render::berth(helm).values(JQ).ok();
        let hpa = m.get("HorizontalPodAutoscaler", "rel-worker");
        let ext = &hpa["spec"]["metrics"][0]["external"];
        assert_eq!(ext["metric"]["name"], "job_queue_depth");
        assert_eq!(ext["metric"]["selector"]["matchLabels"]["status"], "queued");
        assert_eq!(ext["target"]["averageValue"], "100");
        assert!(!has_replicas(&m, "rel-worker"));
    }
}

#[test]
fn bad_combinations_fail_naming_the_value() {
    for helm in HELMS {
        let cases: [(&[&str], bool, &str); 8] = [
            (
                &["workloads.worker.hpa.enabled=true"],
                true,
                "workloads.worker.queueScaling.enabled=true and workloads.worker.hpa.enabled=true",
            ),
            (
                &["workloads.worker.replicas=3"],
                false,
                "workloads.worker.replicas=3 must not be set when workloads.worker.queueScaling.enabled=true",
            ),
            (
                &["workloads.worker.queueScaling.minReplicas=20"],
                true,
                "workloads.worker.queueScaling.minReplicas=20 is greater than workloads.worker.queueScaling.maxReplicas=15",
            ),
            (
                &["workloads.worker.queueScaling.minReplicas=0"],
                false,
                "workloads.worker.queueScaling.minReplicas=0 needs KEDA: an HPA cannot scale to zero, and the keda.sh/v1alpha1/ScaledObject API is not served",
            ),
            (
                &[
                    "workloads.worker.queueScaling.minReplicas=0",
                    "workloads.worker.queueScaling.engine=hpa",
                ],
                true,
                "workloads.worker.queueScaling.engine=hpa",
            ),
            (
                &["workloads.worker.queueScaling.serverAddress="],
                true,
                "workloads.worker.queueScaling.serverAddress is required with KEDA",
            ),
            (
                &["workloads.worker.queueScaling.externalMetric.name="],
                false,
                "workloads.worker.queueScaling.externalMetric.name is empty",
            ),
            (
                &["workloads.worker.kind=Job"],
                true,
                "workloads.worker.queueScaling.enabled=true: queue scaling is for a Deployment or StatefulSet, not a Job",
            ),
        ];
        for (sets, keda, needle) in cases {
            let mut r = Render::berth(helm).values(KEDA);
            if keda {
                r = r.api(KEDA_API);
            }
            for s in sets {
                r = r.set(s);
            }
            let err = r.err();
            assert!(err.contains(needle), "{helm:?} {sets:?}: {err}");
        }
        // The schema rejects what is not a value at all.
        for (set, needle) in [
            ("workloads.worker.queueScaling.engine=prometheus", "engine"),
            (
                "workloads.worker.queueScaling.targetPerReplica=0",
                "targetPerReplica",
            ),
            ("workloads.worker.queueScaling.trigger=cpu", "trigger"),
        ] {
            let err = Render::berth(helm).values(KEDA).set(set).err();
            assert!(err.contains(needle), "{helm:?} {set}: {err}");
        }
    }
}

/// Runs tests/charts/validate-crds.py (KEDA's ScaledObject schema from its
/// CRD) over a render; `Ok(report)` or `Err(report)`.
fn validate_crds(text: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("render.yaml");
    std::fs::write(&file, text).expect("write render");
    let out = Command::new(tools::tool("python"))
        .arg(workspace_root().join("tests/charts/validate-crds.py"))
        .arg(&file)
        .output()
        .expect("run validate-crds.py");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}

#[test]
fn scaled_objects_pass_kedas_crd_schema_and_a_broken_one_does_not() {
    for values in [KEDA, JQ] {
        let m = Render::berth(helm_any()).values(values).api(KEDA_API).ok();
        let sos: Vec<&Value> = m.of_kind("ScaledObject");
        assert!(!sos.is_empty(), "{values}");
        let report = validate_crds(&m.text).unwrap_or_else(|r| panic!("{values}: {r}"));
        assert!(report.contains("ScaledObject"), "{report}");
    }
    // The schema is strict: a misspelt field, a number where KEDA wants a
    // string, and a missing trigger list all fail.
    let m = Render::berth(helm_any()).values(KEDA).api(KEDA_API).ok();
    for (from, to, needle) in [
        ("minReplicaCount:", "minReplicas:", "minReplicas"),
        (
            "threshold: \"50\"",
            "threshold: 50",
            "is not of type 'string'",
        ),
        ("  triggers:\n", "  triggerz:\n", "triggers"),
    ] {
        assert!(m.text.contains(from), "render holds {from:?}");
        let report = validate_crds(&m.text.replacen(from, to, 1))
            .expect_err("a broken ScaledObject must fail the schema");
        assert!(report.contains(needle), "{from} -> {to}: {report}");
    }
}

fn helm_any() -> berth_tests::chart::Helm {
    HELMS[1]
}
