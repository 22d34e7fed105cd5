//! charts/berth-lib and examples/existing-pod: an existing chart gets berth
//! from the library with one include; a Deployment without Helm gets it from
//! a plain strategic-merge patch or a kustomize overlay (real kubectl,
//! offline). Also: the library's documented defaults match its template.

use berth_tests::chart::{
    berth_config, container, list, pod_spec, Chart, Manifests, Render, HELMS,
};
use berth_tests::{tools, workspace_root};
use serde_json::Value;
use std::process::Command;

#[test]
fn existing_chart_gets_berth_from_the_library_include() {
    for helm in HELMS {
        for (kube, native) in [("1.28.0", false), ("1.35.0", true)] {
            let m = Render::berth(helm)
                .chart(Chart::ExistingPod)
                .kube(kube)
                .ok();
            let deploy = m.get("Deployment", "rel-myapp");
            let spec = pod_spec(deploy).expect("spec");
            let app = container(spec, "app").expect("the app's own container");
            assert_eq!(
                app["readinessProbe"]["httpGet"]["path"],
                "/api/v1/health/ready"
            );
            assert_eq!(
                app["lifecycle"]["preStop"]["httpGet"]["path"],
                "/api/v1/lifecycle/prestop"
            );
            // The app's own mounts and volumes survive.
            assert!(app["volumeMounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .any(|v| v["name"] == "cache"));
            let in_inits = list(spec, "initContainers")
                .iter()
                .any(|c| c["name"] == "berth");
            let in_containers = list(spec, "containers")
                .iter()
                .any(|c| c["name"] == "berth");
            assert_eq!(
                (in_inits, in_containers),
                (native, !native),
                "{helm:?} {kube}"
            );
            let cm = m.get("ConfigMap", "rel-myapp-berth");
            let cfg = berth_config(cm);
            assert_eq!(cfg["mode"], if native { "native" } else { "regular" });
            assert_eq!(spec["terminationGracePeriodSeconds"], 5 + 20 + 5);
            assert_eq!(
                deploy["spec"]["template"]["metadata"]["annotations"]["checksum/berth"]
                    .as_str()
                    .map(str::len),
                Some(64)
            );
        }
        // The library's rules apply to the existing chart too.
        let err = Render::berth(helm)
            .chart(Chart::ExistingPod)
            .set("berth.drain.delay=soon")
            .err();
        assert!(
            err.contains("berth.drain.delay=\"soon\""),
            "{helm:?}: {err}"
        );
        // And berth off gives back the app's pod spec untouched.
        let m = Render::berth(helm)
            .chart(Chart::ExistingPod)
            .set("berth.enabled=false")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-myapp"))
            .expect("spec")
            .clone();
        assert!(!spec.to_string().contains("berth"), "{helm:?}");
        assert!(m.find("ConfigMap", "rel-myapp-berth").is_none());
    }
}

fn kubectl(args: &[&str]) -> String {
    let out = Command::new(tools::tool("kubectl"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_berth_native(deploy: &Value, config_map: &str) {
    let spec = pod_spec(deploy).expect("spec");
    let inits = list(spec, "initContainers");
    assert_eq!(inits[0]["name"], "berth");
    assert_eq!(inits[0]["restartPolicy"], "Always");
    let app = container(spec, "app").expect("app");
    assert_eq!(
        app["startupProbe"]["httpGet"]["path"],
        "/api/v1/health/startup"
    );
    assert_eq!(
        app["livenessProbe"]["httpGet"]["path"],
        "/api/v1/health/live"
    );
    assert_eq!(
        app["readinessProbe"]["httpGet"]["path"],
        "/api/v1/health/ready"
    );
    assert_eq!(
        app["lifecycle"]["preStop"]["httpGet"]["path"],
        "/api/v1/lifecycle/prestop"
    );
    let mounts = app["volumeMounts"].as_array().expect("mounts");
    assert!(mounts.iter().any(|m| m["name"] == "berth-run"));
    assert!(
        mounts.iter().any(|m| m["name"] == "cache"),
        "the app's mounts are kept"
    );
    let vols = spec["volumes"].as_array().expect("volumes");
    let cfg = vols
        .iter()
        .find(|v| v["name"] == "berth-config")
        .expect("config volume");
    assert_eq!(cfg["configMap"]["name"], config_map);
    assert!(
        spec["terminationGracePeriodSeconds"]
            .as_i64()
            .expect("grace")
            >= 5 + 20 + 5
    );
}

#[test]
fn plain_yaml_patch_adds_berth_to_a_deployment_without_helm() {
    let out = kubectl(&[
        "patch",
        "--local",
        "-f",
        "examples/existing-pod/plain/deployment.yaml",
        "--type",
        "strategic",
        "--patch-file",
        "examples/existing-pod/plain/berth-patch.yaml",
        "-o",
        "yaml",
    ]);
    let m = Manifests::parse(&out);
    assert_berth_native(m.get("Deployment", "myapp"), "myapp-berth");
}

#[test]
fn kustomize_overlay_adds_berth_with_a_hashed_config_map() {
    let out = kubectl(&["kustomize", "examples/existing-pod/kustomize"]);
    let m = Manifests::parse(&out);
    let cm = m
        .of_kind("ConfigMap")
        .into_iter()
        .find(|c| {
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("myapp-berth-"))
        })
        .expect("generated ConfigMap with a hash suffix")
        .clone();
    let name = cm["metadata"]["name"].as_str().expect("name");
    assert_berth_native(m.get("Deployment", "myapp"), name);
    assert_eq!(berth_config(&cm)["mode"], "native");
}

fn yaml_file(rel: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(rel)).expect("read");
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse");
    serde_json::to_value(v).expect("json")
}

#[test]
fn documented_defaults_match_the_library_template() {
    // The "berth-lib.defaults" template body, parsed.
    let tpl =
        std::fs::read_to_string(workspace_root().join("charts/berth-lib/templates/_settings.tpl"))
            .expect("read _settings.tpl");
    let start = tpl
        .find("define \"berth-lib.defaults\" -}}")
        .expect("define")
        + "define \"berth-lib.defaults\" -}}".len();
    let end = start + tpl[start..].find("{{- end -}}").expect("end");
    let v: serde_yaml::Value = serde_yaml::from_str(&tpl[start..end]).expect("defaults parse");
    let defaults = serde_json::to_value(v).expect("json");
    let lib_doc = yaml_file("charts/berth-lib/values.yaml");
    let app_doc = yaml_file("charts/berth/values.yaml");
    let lib_berth = lib_doc["berth"].clone();
    let app_berth = app_doc["berth"].clone();
    let d = defaults;
    assert_eq!(
        lib_berth, d,
        "charts/berth-lib/values.yaml documents the template's defaults"
    );
    assert_eq!(
        app_berth, d,
        "charts/berth/values.yaml berth: block equals the library defaults"
    );
}
