//! charts/berth: PodDisruptionBudget and HorizontalPodAutoscaler rules.
//! helm 3 and helm 4.

use berth_tests::chart::{Render, HELMS};

const WEB: &str = "charts/berth/ci/web-values.yaml";
const REGULAR: &str = "charts/berth/ci/regular-sidecar-values.yaml";

#[test]
fn pdb_uses_max_unavailable_and_always_allows_unhealthy_eviction() {
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).ok();
        let pdb = m.get("PodDisruptionBudget", "rel-web");
        assert_eq!(pdb["apiVersion"], "policy/v1");
        assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{helm:?}");
        assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
        assert!(pdb["spec"].get("minAvailable").is_none());
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
            "web"
        );
        // minAvailable below the replica count is accepted.
        let m = Render::berth(helm).values(REGULAR).ok();
        assert_eq!(
            m.get("PodDisruptionBudget", "rel-web")["spec"]["minAvailable"],
            1
        );
    }
}

#[test]
fn pdb_that_would_block_every_eviction_fails_naming_the_value() {
    for helm in HELMS {
        for (set, needle) in [
            (
                "workloads.web.pdb.maxUnavailable=0",
                "workloads.web.pdb.maxUnavailable=0",
            ),
            (
                "workloads.web.pdb.maxUnavailable=0%",
                "workloads.web.pdb.maxUnavailable=0%",
            ),
            (
                "workloads.web.pdb.minAvailable=100%",
                "workloads.web.pdb.minAvailable=100%",
            ),
        ] {
            let err = Render::berth(helm).values(WEB).set(set).err();
            assert!(err.contains(needle), "{helm:?} {set}: {err}");
        }
        // minAvailable equal to the HPA's minimum blocks eviction at the minimum.
        let err = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.pdb.minAvailable=2")
            .err();
        assert!(
            err.contains("workloads.web.pdb.minAvailable=2")
                && err.contains("workloads.web.hpa.minReplicas"),
            "{helm:?}: {err}"
        );
        // ... and equal to the replica count without an HPA.
        let err = Render::berth(helm)
            .values(REGULAR)
            .set("workloads.web.pdb.minAvailable=2")
            .err();
        assert!(
            err.contains("workloads.web.pdb.minAvailable=2")
                && err.contains("workloads.web.replicas"),
            "{helm:?}: {err}"
        );
    }
}

#[test]
fn hpa_is_autoscaling_v2_with_behavior_and_custom_metrics() {
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).ok();
        let hpa = m.get("HorizontalPodAutoscaler", "rel-web");
        assert_eq!(hpa["apiVersion"], "autoscaling/v2", "{helm:?}");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "rel-web");
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(hpa["spec"]["maxReplicas"], 6);
        let metrics = hpa["spec"]["metrics"].as_array().expect("metrics");
        assert!(metrics
            .iter()
            .any(|x| x["type"] == "Resource" && x["resource"]["name"] == "cpu"));
        assert!(metrics
            .iter()
            .any(|x| x["type"] == "Pods"
                && x["pods"]["metric"]["name"] == "http_requests_per_second"));
        assert_eq!(
            hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            300
        );
    }
}

#[test]
fn hpa_managed_workload_has_no_replicas() {
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).ok();
        let deploy = m.get("Deployment", "rel-web");
        assert!(
            deploy["spec"].get("replicas").is_none(),
            "{helm:?}: HPA owns the count"
        );
        // Without an HPA the count is rendered.
        let m = Render::berth(helm).values(REGULAR).ok();
        assert_eq!(m.get("Deployment", "rel-web")["spec"]["replicas"], 2);
        assert!(m.of_kind("HorizontalPodAutoscaler").is_empty());
    }
}

#[test]
fn invalid_hpa_settings_fail_naming_the_value() {
    for helm in HELMS {
        let err = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.replicas=3")
            .err();
        assert!(
            err.contains("workloads.web.replicas=3")
                && err.contains("workloads.web.hpa.enabled=true"),
            "{helm:?}: {err}"
        );
        let err = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.hpa.minReplicas=7")
            .err();
        assert!(
            err.contains("workloads.web.hpa.minReplicas=7"),
            "{helm:?}: {err}"
        );
        let err = Render::berth(helm)
            .values(WEB)
            .set("defaults.resources.requests.cpu=null")
            .err();
        assert!(
            err.contains("workloads.web.resources.requests.cpu"),
            "{helm:?}: {err}"
        );
        let err = Render::berth(helm)
            .values("charts/berth/ci/jobs-values.yaml")
            .set("workloads.setup.hpa.enabled=true")
            .err();
        assert!(
            err.contains("workloads.setup.hpa.enabled=true"),
            "{helm:?}: {err}"
        );
    }
}
