//! charts/berth: the restricted Pod Security Standard on every container of
//! every render (main, extra, init, berth sidecar, berth wait, helm test
//! pod), ServiceAccount token off, and no secret value in any ConfigMap.
//! helm 3 and helm 4.

use berth_tests::chart::{all_containers, berth_config, Helm, Manifests, Render, HELMS};
use serde_json::Value;

/// Every ci values file plus the job-queue example, for both Kubernetes versions.
fn all_renders(helm: Helm) -> Vec<(String, Manifests)> {
    berth_tests::chart::all_scenario_renders(helm)
}

fn at_least_10000(v: &Value) -> bool {
    v.as_i64().is_some_and(|n| n >= 10000)
}

#[test]
fn every_container_runs_restricted() {
    for helm in HELMS {
        let mut containers_checked = 0;
        for (case, m) in all_renders(helm) {
            for (obj, spec) in m.pod_specs() {
                let what = format!(
                    "{helm:?} {case} {}/{}",
                    obj["kind"], obj["metadata"]["name"]
                );
                let pod_sc = &spec["securityContext"];
                assert_eq!(spec["automountServiceAccountToken"], false, "{what}: token");
                for c in all_containers(spec) {
                    let who = format!("{what} container {}", c["name"]);
                    let sc = &c["securityContext"];
                    let eff = |k: &str| -> Value {
                        if sc.get(k).is_some() {
                            sc[k].clone()
                        } else {
                            pod_sc[k].clone()
                        }
                    };
                    assert_eq!(eff("runAsNonRoot"), true, "{who}: runAsNonRoot");
                    assert!(at_least_10000(&eff("runAsUser")), "{who}: UID >= 10000");
                    assert!(at_least_10000(&eff("runAsGroup")), "{who}: GID >= 10000");
                    assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}: escalation");
                    assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}: read-only root");
                    assert_eq!(
                        sc["capabilities"]["drop"],
                        serde_json::json!(["ALL"]),
                        "{who}: caps"
                    );
                    assert!(
                        sc["capabilities"].get("add").is_none(),
                        "{who}: no added caps"
                    );
                    assert_eq!(
                        eff("seccompProfile")["type"],
                        "RuntimeDefault",
                        "{who}: seccomp"
                    );
                    assert!(sc["privileged"] != true, "{who}: privileged");
                    assert!(
                        c["resources"]["limits"]["memory"].is_string()
                            && c["resources"]["requests"]["ephemeral-storage"].is_string(),
                        "{who}: resources incl. ephemeral-storage"
                    );
                    containers_checked += 1;
                }
            }
            for sa in m.of_kind("ServiceAccount") {
                assert_eq!(sa["automountServiceAccountToken"], false, "{helm:?} {case}");
            }
        }
        assert!(
            containers_checked > 40,
            "{helm:?}: checked {containers_checked} containers"
        );
    }
}

#[test]
fn the_berth_sidecar_itself_is_restricted_with_uid_65532() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values("charts/berth/ci/web-values.yaml")
            .ok();
        let spec = berth_tests::chart::pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        let berth = berth_tests::chart::container(&spec, "berth")
            .expect("berth")
            .clone();
        assert_eq!(berth["securityContext"]["runAsUser"], 65532, "{helm:?}");
        assert_eq!(berth["securityContext"]["runAsGroup"], 65532);
        assert_eq!(berth["securityContext"]["readOnlyRootFilesystem"], true);
    }
}

#[test]
fn no_configmap_ever_holds_a_secret_value() {
    const SENTINEL: &str = "s3ntinel-P4ssw0rd";
    for helm in HELMS {
        for kube in ["1.28.0", "1.35.0"] {
            let renders = [
                Render::berth(helm)
                    .values("examples/jobqueue/values.yaml")
                    .set(&format!(
                        "secrets.postgresql.stringData.POSTGRES_PASSWORD={SENTINEL}"
                    ))
                    .set(&format!(
                        "secrets.jobqueue.stringData.API_SECRET_KEY={SENTINEL}"
                    ))
                    .set("workloads.redis.enabled=true")
                    .kube(kube)
                    .ok(),
                Render::berth(helm)
                    .values("charts/berth/ci/statefulset-values.yaml")
                    .set(&format!("secrets.store.stringData.password={SENTINEL}"))
                    .set(&format!("secrets.store.stringData.berth-token={SENTINEL}"))
                    .kube(kube)
                    .ok(),
            ];
            for m in renders {
                let secrets = m.of_kind("Secret");
                assert!(
                    secrets.iter().any(|s| s.to_string().contains(SENTINEL)),
                    "{helm:?}: the value is in a Secret"
                );
                let cms = m.of_kind("ConfigMap");
                assert!(!cms.is_empty());
                for cm in cms {
                    assert!(
                        !cm.to_string().contains(SENTINEL),
                        "{helm:?} {kube}: ConfigMap {} leaks a secret",
                        cm["metadata"]["name"]
                    );
                }
                // Nor does any pod spec carry it inline (env uses secretKeyRef).
                for (obj, spec) in m.pod_specs() {
                    assert!(
                        !spec.to_string().contains(SENTINEL),
                        "{}",
                        obj["metadata"]["name"]
                    );
                }
            }
        }
    }
}

#[test]
fn secrets_reach_berth_through_env_refs_and_projected_files() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values("charts/berth/ci/statefulset-values.yaml")
            .ok();
        let cfg = berth_config(m.get("ConfigMap", "rel-store-berth"));
        assert_eq!(
            cfg["checks"][0]["url"],
            "redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0"
        );
        assert_eq!(cfg["token"], "${file:/etc/berth/secret/token}");
        let spec = berth_tests::chart::pod_spec(m.get("StatefulSet", "rel-store"))
            .expect("spec")
            .clone();
        let berth = berth_tests::chart::container(&spec, "berth")
            .expect("berth")
            .clone();
        let env = berth["env"].as_array().expect("env");
        let pw = env
            .iter()
            .find(|e| e["name"] == "REDIS_PASSWORD")
            .expect("env");
        assert_eq!(
            pw["valueFrom"]["secretKeyRef"]["name"], "rel-store",
            "{helm:?}"
        );
        let vol = spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "berth-config")
            .expect("config volume")
            .clone();
        let sources = vol["projected"]["sources"].as_array().expect("sources");
        assert!(sources.iter().any(|s| s["secret"]["name"] == "rel-store"
            && s["secret"]["items"][0]["path"] == "secret/token"));
    }
}

#[test]
fn a_literal_password_in_a_check_fails_naming_the_check() {
    for helm in HELMS {
        let err = Render::berth(helm)
            .values("charts/berth/ci/web-values.yaml")
            .set("workloads.web.berth.checks.db.type=postgres")
            .set("workloads.web.berth.checks.db.url=postgres://app:hunter2@db:5432/app")
            .err();
        assert!(
            err.contains("workloads.web.berth.checks.db.url") && err.contains("password"),
            "{helm:?}: {err}"
        );
        assert!(
            !err.contains("hunter2"),
            "{helm:?}: the error must not echo the password"
        );
    }
}
