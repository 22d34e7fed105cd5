//! charts/berth: what berth adds to a pod — distinct probes on berth's
//! endpoints, the preStop hook, native vs regular sidecar by Kubernetes
//! version, shared volumes, the berth config. Every test runs with helm 3
//! and helm 4.

use berth_tests::chart::{
    all_containers, berth_config, container, list, pod_metadata, pod_spec, Render, HELMS,
};
use serde_json::Value;

const WEB: &str = "charts/berth/ci/web-values.yaml";

fn web(helm: berth_tests::chart::Helm, kube: &str) -> (Value, Value) {
    let m = Render::berth(helm).values(WEB).kube(kube).ok();
    let deploy = m.get("Deployment", "rel-web").clone();
    let cm = m.get("ConfigMap", "rel-web-berth").clone();
    (deploy, cm)
}

#[test]
fn main_probes_are_distinct_berth_endpoints_on_the_berth_port() {
    for helm in HELMS {
        let (deploy, _) = web(helm, "1.35.0");
        let spec = pod_spec(&deploy).expect("pod spec");
        let main = container(spec, "web").expect("main container");
        let mut paths = Vec::new();
        for (probe, path) in [
            ("startupProbe", "/api/v1/health/startup"),
            ("livenessProbe", "/api/v1/health/live"),
            ("readinessProbe", "/api/v1/health/ready"),
        ] {
            let get = &main[probe]["httpGet"];
            assert_eq!(get["path"], path, "{helm:?} {probe}");
            // By number: a named port resolves only against the probed
            // container's own ports, and `berth` lives on the sidecar.
            assert_eq!(get["port"], 8642, "{helm:?} {probe} port");
            paths.push(get["path"].as_str().expect("path").to_string());
        }
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 3, "three distinct endpoints");
        assert_eq!(
            main["startupProbe"]["failureThreshold"], 30,
            "seed 002 timing"
        );
        assert_eq!(main["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(main["livenessProbe"]["periodSeconds"], 10);
        // The port the probes use is declared, by name, on the berth container.
        let berth = container(spec, "berth").expect("berth container");
        assert_eq!(berth["ports"][0]["name"], "berth");
        assert_eq!(berth["ports"][0]["containerPort"], 8642);
    }
}

#[test]
fn main_prestop_defaults_to_berth_prestop_endpoint() {
    for helm in HELMS {
        let (deploy, _) = web(helm, "1.35.0");
        let main = container(pod_spec(&deploy).expect("spec"), "web").expect("main");
        let get = &main["lifecycle"]["preStop"]["httpGet"];
        assert_eq!(get["path"], "/api/v1/lifecycle/prestop");
        // The lifecycle port, with the release's token: the only caller
        // besides loopback that berth lets drain.
        assert_eq!(get["port"], 8643);
        assert_eq!(get["httpHeaders"][0]["name"], "berth-lifecycle-token");
        let token = get["httpHeaders"][0]["value"].as_str().expect("token");
        assert!(token.len() >= 16, "{token}");
        assert!(
            main["lifecycle"]["preStop"].get("exec").is_none(),
            "no shell needed"
        );
    }
}

#[test]
fn custom_and_disabled_probes_replace_the_berth_defaults() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .values_yaml(
                "workloads:\n  web:\n    probes:\n      liveness:\n        custom:\n          tcpSocket: {port: http}\n      startup:\n        enabled: false\n",
            )
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        let main = container(&spec, "web").expect("main");
        assert_eq!(
            main["livenessProbe"]["tcpSocket"]["port"], "http",
            "{helm:?}"
        );
        assert!(
            main.get("startupProbe").is_none(),
            "{helm:?} startup disabled"
        );
        assert_eq!(
            main["readinessProbe"]["httpGet"]["path"],
            "/api/v1/health/ready"
        );
    }
}

#[test]
fn native_sidecar_from_kubernetes_1_29() {
    for helm in HELMS {
        for kube in ["1.29.0", "1.35.0"] {
            let (deploy, cm) = web(helm, kube);
            let spec = pod_spec(&deploy).expect("spec");
            let inits = list(spec, "initContainers");
            assert_eq!(
                inits[0]["name"], "berth",
                "{helm:?} {kube}: berth is the first init container"
            );
            assert_eq!(inits[0]["restartPolicy"], "Always", "{helm:?} {kube}");
            assert!(
                !list(spec, "containers")
                    .iter()
                    .any(|c| c["name"] == "berth"),
                "{helm:?} {kube}: not also a regular container"
            );
            // ci/web checks only the pod itself: nothing to gate on, so the
            // sidecar's startupProbe is berth's own liveness.
            assert_eq!(
                inits[0]["startupProbe"]["httpGet"]["path"],
                "/api/v1/health/live"
            );
            assert_eq!(berth_config(&cm)["mode"], "native", "{helm:?} {kube}");
        }
    }
}

#[test]
fn regular_sidecar_below_kubernetes_1_29() {
    for helm in HELMS {
        let (deploy, cm) = web(helm, "1.28.0");
        let spec = pod_spec(&deploy).expect("spec");
        assert!(list(spec, "initContainers")
            .iter()
            .all(|c| c["name"] != "berth"));
        let berth = list(spec, "containers")
            .into_iter()
            .find(|c| c["name"] == "berth")
            .expect("berth among containers");
        assert!(berth.get("restartPolicy").is_none());
        assert_eq!(
            berth["args"],
            serde_json::json!(["serve", "--config", "/etc/berth/berth.yaml"])
        );
        assert_eq!(berth_config(&cm)["mode"], "regular", "{helm:?}");
    }
}

#[test]
fn sidecar_placement_is_overridable() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .set("berth.sidecar=regular")
            .kube("1.35.0")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        assert!(
            list(&spec, "containers")
                .iter()
                .any(|c| c["name"] == "berth"),
            "{helm:?} regular on 1.35"
        );
        assert_eq!(
            berth_config(m.get("ConfigMap", "rel-web-berth"))["mode"],
            "regular"
        );

        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.berth.sidecar=native")
            .kube("1.28.0")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        assert_eq!(
            list(&spec, "initContainers")[0]["restartPolicy"],
            "Always",
            "{helm:?} native on 1.28"
        );
        assert_eq!(
            berth_config(m.get("ConfigMap", "rel-web-berth"))["mode"],
            "native"
        );
    }
}

#[test]
fn berth_run_and_tmp_volumes_are_shared_as_specified() {
    for helm in HELMS {
        for kube in ["1.28.0", "1.35.0"] {
            let (deploy, cm) = web(helm, kube);
            let spec = pod_spec(&deploy).expect("spec");
            let vols = list(spec, "volumes");
            let run = vols
                .iter()
                .find(|v| v["name"] == "berth-run")
                .expect("berth-run volume");
            assert!(run.get("emptyDir").is_some());
            let cfg = vols
                .iter()
                .find(|v| v["name"] == "berth-config")
                .expect("config volume");
            assert_eq!(
                cfg["projected"]["sources"][0]["configMap"]["name"], cm["metadata"]["name"],
                "{helm:?} {kube}: config from the ConfigMap"
            );
            for name in ["web", "berth"] {
                let c = container(spec, name).expect("container");
                let mounts = c["volumeMounts"].as_array().expect("mounts");
                assert!(
                    mounts
                        .iter()
                        .any(|m| m["name"] == "berth-run" && m["mountPath"] == "/var/run/berth"),
                    "{helm:?} {kube}: {name} mounts berth-run"
                );
            }
            let berth = container(spec, "berth").expect("berth");
            assert!(berth["volumeMounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .any(|m| m["mountPath"] == "/etc/berth" && m["readOnly"] == true));
            // /tmp is an emptyDir in every container (read-only root filesystem).
            for c in all_containers(spec) {
                let tmp = c["volumeMounts"]
                    .as_array()
                    .and_then(|ms| ms.iter().find(|m| m["mountPath"] == "/tmp"))
                    .unwrap_or_else(|| panic!("{helm:?} {kube}: {} has no /tmp", c["name"]));
                let vol = vols
                    .iter()
                    .find(|v| v["name"] == tmp["name"])
                    .expect("the /tmp volume exists");
                assert!(
                    vol.get("emptyDir").is_some(),
                    "{} /tmp is an emptyDir",
                    c["name"]
                );
            }
        }
    }
}

#[test]
fn berth_config_is_rendered_from_values_with_checksum_annotation() {
    for helm in HELMS {
        let (deploy, cm) = web(helm, "1.35.0");
        let cfg = berth_config(&cm);
        assert_eq!(cfg["listen"], "0.0.0.0:8642");
        let checks = cfg["checks"].as_array().expect("checks");
        let app = checks
            .iter()
            .find(|c| c["name"] == "app")
            .expect("app check");
        assert_eq!(app["type"], "http");
        assert_eq!(app["url"], "http://127.0.0.1:8080/");
        assert_eq!(cfg["drain"]["delay"], "3s");
        assert_eq!(cfg["drain"]["timeout"], "20s");
        let sum1 = pod_metadata(&deploy)["annotations"]["checksum/config"].clone();
        assert!(
            sum1.as_str().is_some_and(|s| s.len() == 64),
            "sha256 annotation"
        );
        // A config change changes the checksum, so pods roll.
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.berth.drain.delay=4s")
            .ok();
        let sum2 = &pod_metadata(m.get("Deployment", "rel-web"))["annotations"]["checksum/config"];
        assert_ne!(&sum1, sum2, "{helm:?}");
    }
}

#[test]
fn berth_image_args_and_port_follow_the_interface() {
    for helm in HELMS {
        let (deploy, _) = web(helm, "1.35.0");
        let berth = container(pod_spec(&deploy).expect("spec"), "berth")
            .expect("berth")
            .clone();
        assert_eq!(berth["image"], "ghcr.io/berth-dev/berth:0.1.0");
        assert_eq!(
            berth["args"],
            serde_json::json!(["serve", "--config", "/etc/berth/berth.yaml"])
        );
        let m = Render::berth(helm)
            .values(WEB)
            .set("berth.image.registry=localhost")
            .set("berth.image.tag=dev")
            .ok();
        let b = container(
            pod_spec(m.get("Deployment", "rel-web")).expect("spec"),
            "berth",
        )
        .expect("berth")
        .clone();
        assert_eq!(b["image"], "localhost/berth-dev/berth:dev", "{helm:?}");
    }
}

#[test]
fn startup_gate_waits_only_for_dependencies() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values("examples/jobqueue/values.yaml")
            .kube("1.35.0")
            .ok();
        // api: gated on the database (explicit waitFor), its sidecar's
        // startupProbe holds the main container until PostgreSQL answers.
        let api = pod_spec(m.get("Deployment", "rel-api"))
            .expect("spec")
            .clone();
        let berth = container(&api, "berth").expect("berth");
        assert_eq!(
            berth["startupProbe"]["httpGet"]["path"], "/api/v1/health/startup",
            "{helm:?}"
        );
        let cfg = berth_config(m.get("ConfigMap", "rel-api-berth"));
        assert_eq!(cfg["startup"]["waitFor"], serde_json::json!(["db"]));
        // postgresql: its only check is its own port; gating on it would
        // never let the main container start.
        let pg = pod_spec(m.get("StatefulSet", "rel-postgresql"))
            .expect("spec")
            .clone();
        let berth = container(&pg, "berth").expect("berth");
        assert_eq!(
            berth["startupProbe"]["httpGet"]["path"], "/api/v1/health/live",
            "{helm:?}"
        );
        assert!(berth_config(m.get("ConfigMap", "rel-postgresql-berth"))
            .get("startup")
            .is_none());
        // Without waitFor the gate is derived: critical dependency checks only.
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.berth.checks.db.type=postgres")
            .set("workloads.web.berth.checks.db.url=${DATABASE_URL}")
            .set("workloads.web.berth.env.DATABASE_URL.valueFrom.secretKeyRef.name=db")
            .set("workloads.web.berth.env.DATABASE_URL.valueFrom.secretKeyRef.key=url")
            .kube("1.35.0")
            .ok();
        let cfg = berth_config(m.get("ConfigMap", "rel-web-berth"));
        assert_eq!(
            cfg["startup"]["waitFor"],
            serde_json::json!(["db"]),
            "{helm:?}: not app, not app-port"
        );
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        assert_eq!(
            container(&spec, "berth").expect("berth")["startupProbe"]["httpGet"]["path"],
            "/api/v1/health/startup"
        );
    }
}

/// `berth.groups` and `berth.grpcPort` (ci/grpc-groups-values.yaml): the
/// groups and `grpcListen` land in berth.yaml, the gRPC port is declared
/// as `berth-grpc` on the berth container (the lifecycle port never is),
/// and without them neither appears.
#[test]
fn grpc_port_and_groups_render_into_berth_config_and_ports() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values("charts/berth/ci/grpc-groups-values.yaml")
            .kube("1.35.0")
            .ok();
        let cfg = berth_config(m.get("ConfigMap", "rel-api-berth"));
        assert_eq!(cfg["grpcListen"], "0.0.0.0:8644", "{helm:?}");
        assert_eq!(cfg["groups"]["deps"], serde_json::json!(["cache", "dns"]));
        let spec = pod_spec(m.get("Deployment", "rel-api")).expect("spec");
        let berth = container(spec, "berth").expect("berth");
        let ports: Vec<(String, i64)> = list(berth, "ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["containerPort"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            ports,
            vec![("berth".into(), 8642), ("berth-grpc".into(), 8644)],
            "{helm:?}"
        );
        let (deploy, cm) = web(helm, "1.35.0");
        let cfg = berth_config(&cm);
        assert!(
            cfg.get("grpcListen").is_none() && cfg.get("groups").is_none(),
            "{cfg}"
        );
        let berth = container(pod_spec(&deploy).expect("spec"), "berth").expect("berth");
        assert_eq!(list(berth, "ports").len(), 1);
    }
}
