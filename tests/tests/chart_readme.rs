//! The README's `my-values.yaml` example renders with both helms, and gives
//! what the README says it gives (probes on berth, preStop on berth, a grace
//! period covering the drain, DATABASE_URL for berth from the Secret only).

use berth_tests::chart::{container, pod_spec, Render, HELMS};
use berth_tests::workspace_root;

fn readme_values() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find("```yaml\nworkloads:")
        .expect("README has the my-values.yaml example");
    let body = &readme[start + "```yaml\n".len()..];
    body[..body.find("```").expect("closing fence")].to_string()
}

#[test]
fn readme_values_example_renders_as_documented() {
    let values = readme_values();
    for helm in HELMS {
        let m = Render::berth(helm).values_yaml(&values).ok();
        let deploy = m.get("Deployment", "rel-web");
        let spec = pod_spec(deploy).expect("pod spec");
        let web = container(spec, "web").expect("main container");
        for (probe, path) in [
            ("startupProbe", "/api/v1/health/startup"),
            ("livenessProbe", "/api/v1/health/live"),
            ("readinessProbe", "/api/v1/health/ready"),
        ] {
            assert_eq!(web[probe]["httpGet"]["path"], path, "{helm:?} {probe}");
        }
        assert_eq!(
            web["lifecycle"]["preStop"]["httpGet"]["path"], "/api/v1/lifecycle/prestop",
            "{helm:?}"
        );
        let grace = spec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace");
        assert!(grace >= 5 + 30 + 5, "{helm:?}: grace {grace}");
        let berth = container(spec, "berth").expect("berth sidecar");
        let env = serde_json::to_string(&berth["env"]).expect("env json");
        assert!(
            env.contains("secretKeyRef") && env.contains("DATABASE_URL"),
            "{helm:?}: berth gets DATABASE_URL from the Secret: {env}"
        );
        let cm = m.get("ConfigMap", "rel-web-berth");
        let text = serde_json::to_string(cm).expect("configmap json");
        assert!(text.contains("${DATABASE_URL}"), "{helm:?}: {text}");
        assert_eq!(m.of_kind("PodDisruptionBudget").len(), 1, "{helm:?}");
    }
}
