//! charts/berth: the drain-aware grace period, Jobs/CronJobs (berth wait
//! gate, no regular sidecar), hook Jobs. helm 3 and helm 4.

use berth_tests::chart::{berth_config, container, list, pod_spec, Render, HELMS};

const WEB: &str = "charts/berth/ci/web-values.yaml";
const JOBS: &str = "charts/berth/ci/jobs-values.yaml";

#[test]
fn grace_period_defaults_to_drain_delay_plus_timeout_plus_5s() {
    for helm in HELMS {
        // ci/web: delay 3s + timeout 20s + 5 = 28
        let m = Render::berth(helm).values(WEB).ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        assert_eq!(spec["terminationGracePeriodSeconds"], 28, "{helm:?}");
        // Minutes and milliseconds are rounded up to whole seconds.
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.berth.drain.delay=1500ms")
            .set("workloads.web.berth.drain.timeout=1m")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        assert_eq!(
            spec["terminationGracePeriodSeconds"],
            2 + 60 + 5,
            "{helm:?}"
        );
    }
}

#[test]
fn explicit_grace_period_is_kept_when_long_enough() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.terminationGracePeriodSeconds=28")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        assert_eq!(
            spec["terminationGracePeriodSeconds"], 28,
            "{helm:?} boundary accepted"
        );
    }
}

#[test]
fn grace_period_shorter_than_the_drain_fails_naming_the_value() {
    for helm in HELMS {
        let err = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.terminationGracePeriodSeconds=27")
            .err();
        assert!(
            err.contains("workloads.web.terminationGracePeriodSeconds=27")
                && err.contains("workloads.web.berth.drain.delay")
                && err.contains("28s"),
            "{helm:?}: {err}"
        );
        // Also through the release-wide berth block.
        let err = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.terminationGracePeriodSeconds=30")
            .set("berth.drain.timeout=2m")
            .set("workloads.web.berth.drain.timeout=2m")
            .err();
        assert!(
            err.contains("terminationGracePeriodSeconds=30"),
            "{helm:?}: {err}"
        );
    }
}

#[test]
fn jobs_get_a_native_sidecar_on_1_29_and_only_the_wait_gate_below() {
    for helm in HELMS {
        let m = Render::berth(helm).values(JOBS).kube("1.35.0").ok();
        let job = m.get("Job", "rel-setup");
        let spec = pod_spec(job).expect("spec");
        let inits = list(spec, "initContainers");
        let names: Vec<&str> = inits.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(
            names,
            ["berth", "berth-wait"],
            "{helm:?}: sidecar first, then the gate"
        );
        assert_eq!(inits[0]["restartPolicy"], "Always");
        let wait = &inits[1];
        assert_eq!(wait["args"][0], "wait");
        assert!(wait["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|a| a == "--timeout"));
        // No probes or preStop on a run-to-completion container.
        let main = container(spec, "setup").expect("main");
        assert!(main.get("readinessProbe").is_none() && main.get("lifecycle").is_none());

        let m = Render::berth(helm).values(JOBS).kube("1.28.0").ok();
        for (kind, name) in [("Job", "rel-setup"), ("CronJob", "rel-nightly")] {
            let spec = pod_spec(m.get(kind, name)).expect("spec");
            let all: Vec<&str> = list(spec, "initContainers")
                .iter()
                .chain(list(spec, "containers").iter())
                .filter_map(|c| c["name"].as_str())
                .collect();
            assert!(
                !all.contains(&"berth"),
                "{helm:?} {kind}: no sidecar below 1.29 ({all:?})"
            );
            assert!(
                all.contains(&"berth-wait"),
                "{helm:?} {kind}: gated by berth wait"
            );
        }
    }
}

#[test]
fn a_regular_sidecar_on_a_job_fails_naming_the_value() {
    for helm in HELMS {
        let err = Render::berth(helm)
            .values(JOBS)
            .set("workloads.setup.berth.sidecar=regular")
            .err();
        assert!(
            err.contains("workloads.setup.berth.sidecar=regular"),
            "{helm:?}: {err}"
        );
    }
}

#[test]
fn hook_annotations_sit_on_the_job_metadata() {
    for helm in HELMS {
        let m = Render::berth(helm).values(JOBS).ok();
        let job = m.get("Job", "rel-setup");
        let ann = &job["metadata"]["annotations"];
        assert_eq!(ann["helm.sh/hook"], "post-install,pre-upgrade", "{helm:?}");
        assert_eq!(ann["helm.sh/hook-weight"], "5");
        assert_eq!(
            ann["helm.sh/hook-delete-policy"],
            "before-hook-creation,hook-succeeded"
        );
        let tmpl_ann = &job["spec"]["template"]["metadata"]["annotations"];
        assert!(
            tmpl_ann.get("helm.sh/hook").is_none(),
            "not on the pod template"
        );
        // Its berth ConfigMap is a hook too, created before it (pre-upgrade
        // hooks run before the release's ordinary objects are updated).
        let cm = m.get("ConfigMap", "rel-setup-berth");
        assert_eq!(
            cm["metadata"]["annotations"]["helm.sh/hook"],
            "post-install,pre-upgrade"
        );
        assert_eq!(cm["metadata"]["annotations"]["helm.sh/hook-weight"], "-5");
        assert_eq!(
            cm["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
            "before-hook-creation,hook-succeeded",
            "{helm:?}: removed with its Job"
        );
        // The CronJob is not a hook.
        let cron = m.get("CronJob", "rel-nightly");
        assert!(cron["metadata"]["annotations"]
            .get("helm.sh/hook")
            .is_none());
        assert_eq!(cron["spec"]["schedule"], "17 3 * * *");
        assert_eq!(
            berth_config(m.get("ConfigMap", "rel-nightly-berth"))["checks"][0]["name"],
            "dns"
        );
    }
}

#[test]
fn signal_notify_shares_the_pid_namespace() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values("charts/berth/ci/regular-sidecar-values.yaml")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        assert_eq!(spec["shareProcessNamespace"], true, "{helm:?}");
        assert_eq!(spec["terminationGracePeriodSeconds"], 40);
        let cfg = berth_config(m.get("ConfigMap", "rel-web-berth"));
        assert_eq!(cfg["drain"]["notify"]["type"], "signal");
        assert_eq!(cfg["drain"]["notify"]["process"], "nginx");
        assert_eq!(cfg["drain"]["waitUntilDown"], serde_json::json!(["nginx"]));
        // Without signal or process checks the namespaces stay separate.
        let m = Render::berth(helm).values(WEB).ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        assert!(spec.get("shareProcessNamespace").is_none(), "{helm:?}");
    }
}
