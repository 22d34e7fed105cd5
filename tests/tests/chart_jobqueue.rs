//! examples/jobqueue/values.yaml rendered with charts/berth: the job-queue
//! runtime's shape (seed 000), and the overrides the pod tests rely on.
//! helm 3 and helm 4.

use berth_tests::chart::{berth_config, container, list, pod_spec, Helm, Manifests, Render, HELMS};
use serde_json::Value;

const JQ: &str = "examples/jobqueue/values.yaml";

fn jq(helm: Helm) -> Manifests {
    Render::berth(helm).values(JQ).ok()
}

fn env<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"].as_array()?.iter().find(|e| e["name"] == name)
}

#[test]
fn api_has_hpa_from_3_pdb_service_and_seed_resources() {
    for helm in HELMS {
        let m = jq(helm);
        let api = m.get("Deployment", "rel-api");
        assert!(
            api["spec"].get("replicas").is_none(),
            "{helm:?}: HPA-managed"
        );
        let hpa = m.get("HorizontalPodAutoscaler", "rel-api");
        assert!(hpa["spec"]["minReplicas"].as_i64().expect("min") >= 3);
        assert!(m.find("PodDisruptionBudget", "rel-api").is_some());
        let svc = m.get("Service", "rel-api");
        assert!(svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["port"] == 8000));
        let main = container(pod_spec(api).expect("spec"), "api")
            .expect("main")
            .clone();
        assert_eq!(main["args"], serde_json::json!(["api"]));
        assert_eq!(main["image"], "ghcr.io/berth-dev/jobqueue:0.1.0");
        assert_eq!(main["resources"]["requests"]["cpu"], "100m");
        assert_eq!(main["resources"]["requests"]["memory"], "256Mi");
        assert_eq!(main["resources"]["limits"]["cpu"], "500m");
        assert_eq!(main["resources"]["limits"]["memory"], "512Mi");
        let db = env(&main, "DATABASE_URL").expect("DATABASE_URL");
        assert_eq!(db["valueFrom"]["secretKeyRef"]["name"], "rel-jobqueue");
        let key = env(&main, "API_SECRET_KEY").expect("API_SECRET_KEY");
        assert_eq!(key["valueFrom"]["secretKeyRef"]["key"], "API_SECRET_KEY");
        let cfg = berth_config(m.get("ConfigMap", "rel-api-berth"));
        assert_eq!(cfg["startup"]["waitFor"], serde_json::json!(["db"]));
        assert!(cfg["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["type"] == "postgres" && c["url"] == "${DATABASE_URL}"));
    }
}

#[test]
fn worker_scales_2_to_20_with_seed_behaviour_grace_60_and_heartbeat() {
    for helm in HELMS {
        let m = jq(helm);
        let hpa = m.get("HorizontalPodAutoscaler", "rel-worker");
        assert_eq!(hpa["spec"]["minReplicas"], 2, "{helm:?}");
        assert_eq!(hpa["spec"]["maxReplicas"], 20);
        let b = &hpa["spec"]["behavior"];
        let up = b["scaleUp"]["policies"].as_array().expect("up");
        assert!(up
            .iter()
            .any(|p| p["type"] == "Percent" && p["value"] == 100 && p["periodSeconds"] == 15));
        assert!(up
            .iter()
            .any(|p| p["type"] == "Pods" && p["value"] == 4 && p["periodSeconds"] == 15));
        assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 300);
        let down = &b["scaleDown"]["policies"][0];
        assert_eq!(
            (
                down["type"].clone(),
                down["value"].clone(),
                down["periodSeconds"].clone()
            ),
            (Value::from("Percent"), Value::from(10), Value::from(60))
        );
        let worker = m.get("Deployment", "rel-worker");
        let spec = pod_spec(worker).expect("spec");
        assert_eq!(spec["terminationGracePeriodSeconds"], 60);
        let main = container(spec, "worker").expect("main");
        assert_eq!(
            env(main, "WORKER_HEARTBEAT_FILE").expect("env")["value"],
            "/var/run/berth/heartbeat"
        );
        for var in [
            "WORKER_BATCH_SIZE",
            "WORKER_POLL_INTERVAL_SECONDS",
            "WORKER_LEASE_DURATION_SECONDS",
            "LOG_LEVEL",
            "LOG_FORMAT",
        ] {
            assert!(env(main, var).is_some(), "{var}");
        }
        let cfg = berth_config(m.get("ConfigMap", "rel-worker-berth"));
        let hb = cfg["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["type"] == "file")
            .expect("heartbeat check")
            .clone();
        assert_eq!(hb["path"], "/var/run/berth/heartbeat");
        assert_eq!(hb["maxAge"], "30s");
        assert!(m.find("Service", "rel-worker").is_none());
    }
}

#[test]
fn reaper_runs_once_and_postgres_is_a_statefulset() {
    for helm in HELMS {
        let m = jq(helm);
        let reaper = m.get("Deployment", "rel-reaper");
        assert_eq!(reaper["spec"]["replicas"], 1, "{helm:?}");
        let main = container(pod_spec(reaper).expect("spec"), "reaper")
            .expect("main")
            .clone();
        assert_eq!(main["resources"]["requests"]["cpu"], "50m");
        assert_eq!(main["resources"]["limits"]["memory"], "256Mi");
        assert!(env(&main, "REAPER_INTERVAL_SECONDS").is_some());
        let pg = m.get("StatefulSet", "rel-postgresql");
        assert_eq!(
            pg["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
            "data"
        );
        let pgc = container(pod_spec(pg).expect("spec"), "postgresql")
            .expect("pg")
            .clone();
        assert!(
            env(&pgc, "DATABASE_URL").is_none(),
            "null removes an inherited env var"
        );
        assert!(env(&pgc, "POSTGRES_PASSWORD").is_some());
        // The URL in the Secret points at the StatefulSet's Service.
        let secret = m.get("Secret", "rel-jobqueue");
        let url = secret["stringData"]["DATABASE_URL"].as_str().expect("url");
        assert!(
            url.starts_with("postgresql://jobqueue:")
                && url.contains("@rel-postgresql:5432/jobqueue"),
            "{url}"
        );
        assert!(
            m.find("Deployment", "rel-redis").is_none(),
            "redis optional, off"
        );
    }
}

#[test]
fn migration_is_a_post_install_hook_gated_by_berth_wait() {
    for helm in HELMS {
        for kube in ["1.28.0", "1.35.0"] {
            let m = Render::berth(helm).values(JQ).kube(kube).ok();
            let job = m.get("Job", "rel-migrate");
            let hook = job["metadata"]["annotations"]["helm.sh/hook"]
                .as_str()
                .expect("hook");
            assert!(
                hook.contains("post-install") && !hook.contains("pre-install"),
                "{helm:?} {hook}"
            );
            let spec = pod_spec(job).expect("spec");
            let wait = list(spec, "initContainers")
                .into_iter()
                .find(|c| c["name"] == "berth-wait")
                .expect("berth wait init container");
            assert_eq!(wait["args"][0], "wait");
            assert!(
                env(wait, "DATABASE_URL").is_some(),
                "the gate reads the URL from the Secret"
            );
            let main = container(spec, "migrate").expect("main");
            assert_eq!(main["args"], serde_json::json!(["migrate"]));
            assert_eq!(spec["restartPolicy"], "Never");
        }
    }
}

#[test]
fn overrides_for_local_runs_work() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(JQ)
            .set("defaults.image.registry=localhost")
            .set("berth.image.registry=localhost")
            .set("workloads.postgresql.enabled=false")
            .set("secrets.postgresql.enabled=false")
            .set("secrets.jobqueue.stringData.DATABASE_URL=postgresql://u:p@127.0.0.1:5432/jq")
            .set("workloads.api.hpa.enabled=false")
            .set("workloads.api.replicas=1")
            .set("workloads.worker.queueScaling.enabled=false")
            .set("workloads.worker.replicas=2")
            .ok();
        assert!(
            m.find("StatefulSet", "rel-postgresql").is_none(),
            "{helm:?}"
        );
        assert!(m.find("Secret", "rel-postgresql").is_none());
        assert_eq!(
            m.get("Secret", "rel-jobqueue")["stringData"]["DATABASE_URL"],
            "postgresql://u:p@127.0.0.1:5432/jq"
        );
        assert_eq!(m.get("Deployment", "rel-api")["spec"]["replicas"], 1);
        assert_eq!(m.get("Deployment", "rel-worker")["spec"]["replicas"], 2);
        let spec = pod_spec(m.get("Deployment", "rel-api"))
            .expect("spec")
            .clone();
        assert_eq!(
            container(&spec, "api").expect("api")["image"],
            "localhost/berth-dev/jobqueue:0.1.0"
        );
        assert_eq!(
            container(&spec, "berth").expect("berth")["image"],
            "localhost/berth-dev/berth:0.1.0"
        );
        assert!(m.of_kind("HorizontalPodAutoscaler").is_empty());
        // The test pod no longer expects a postgresql Service.
        let test_cfg = berth_config(m.get("ConfigMap", "rel-test-ready"));
        assert_eq!(test_cfg["checks"].as_array().expect("checks").len(), 1);
    }
}

#[test]
fn redis_can_be_switched_on() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(JQ)
            .set("workloads.redis.enabled=true")
            .set("workloads.api.env.REDIS_URL=redis://rel-redis:6379/0")
            .ok();
        let redis = m.get("Deployment", "rel-redis");
        let c = container(pod_spec(redis).expect("spec"), "redis")
            .expect("redis")
            .clone();
        assert_eq!(c["image"], "docker.io/library/redis:7");
        let api = container(
            pod_spec(m.get("Deployment", "rel-api")).expect("spec"),
            "api",
        )
        .expect("api")
        .clone();
        assert_eq!(
            env(&api, "REDIS_URL").expect("REDIS_URL")["value"],
            "redis://rel-redis:6379/0",
            "{helm:?}"
        );
    }
}
