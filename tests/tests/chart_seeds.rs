//! charts/berth: the five seed apps (`charts/berth/ci/seed-<n>-values.yaml`,
//! written from each app's own deployment guide) render with helm 3 and 4
//! for Kubernetes 1.28 and 1.35 into the objects the guide names: the names
//! its `kubectl` commands use, the ports, the RBAC, and the labels its
//! `kubectl -l` selectors select on. Seed 003 also with its dev and staging
//! overlays (`-f ci/seed-003-values.yaml -f ci/seed-003/<env>.yaml`).

use berth_tests::chart::{
    berth_config, container, list, pod_metadata, pod_spec, Manifests, Render, HELMS,
    MONITORING_APIS,
};
use serde_json::{json, Value};

const SEED0: &str = "charts/berth/ci/seed-000-values.yaml";
const SEED1: &str = "charts/berth/ci/seed-001-values.yaml";
const SEED2: &str = "charts/berth/ci/seed-002-values.yaml";
const SEED3: &str = "charts/berth/ci/seed-003-values.yaml";
const SEED3_DEV: &str = "charts/berth/ci/seed-003/dev.yaml";
const SEED3_STAGING: &str = "charts/berth/ci/seed-003/staging.yaml";
const SEED4: &str = "charts/berth/ci/seed-004-values.yaml";
const KUBES: [&str; 2] = ["1.28.0", "1.35.0"];

/// Every render of a seed (helm 3 and 4, both Kubernetes versions).
fn renders(files: &[&str]) -> Vec<(String, Manifests)> {
    let mut out = Vec::new();
    for helm in HELMS {
        for kube in KUBES {
            let mut r = Render::berth(helm).kube(kube);
            for f in files {
                r = r.values(f);
            }
            out.push((format!("{helm:?} {kube} {files:?}"), r.ok()));
        }
    }
    out
}

/// Does `labels` hold every pair of `selector` (`kubectl -l a=b,c=d`)?
fn matches(labels: &Value, selector: &str) -> bool {
    selector.split(',').all(|pair| {
        let (k, v) = pair.split_once('=').expect("k=v");
        labels[k] == v
    })
}

/// `kind/name` of every object of `kind` whose labels `kubectl get <kind> -l
/// <selector>` would list; "Pod" means the pod templates (and their owners),
/// "PersistentVolumeClaim" the StatefulSets' claim templates, "Job" the Jobs
/// a CronJob creates (its jobTemplate) and plain Jobs.
fn selected(m: &Manifests, kind: &str, selector: &str) -> Vec<String> {
    let mut out = Vec::new();
    for d in &m.docs {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let labels: Vec<&Value> = match (kind, d["kind"].as_str().unwrap_or_default()) {
            ("Pod", k) if pod_spec(d).is_some() && k != "Pod" => vec![&pod_metadata(d)["labels"]],
            ("PersistentVolumeClaim", "StatefulSet") => list(&d["spec"], "volumeClaimTemplates")
                .into_iter()
                .map(|c| &c["metadata"]["labels"])
                .collect(),
            ("Job", "CronJob") => vec![&d["spec"]["jobTemplate"]["metadata"]["labels"]],
            (want, k) if want == k => vec![&d["metadata"]["labels"]],
            _ => vec![],
        };
        if labels.iter().any(|l| matches(l, selector)) {
            out.push(format!("{}/{name}", d["kind"].as_str().unwrap_or_default()));
        }
    }
    out
}

fn port<'a>(svc: &'a Value, name: &str) -> &'a Value {
    list(&svc["spec"], "ports")
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| {
            panic!(
                "Service {} has no port {name}: {svc}",
                svc["metadata"]["name"]
            )
        })
}

fn container_port(spec: &Value, container_name: &str, port_name: &str) -> i64 {
    let c = container(spec, container_name).expect("container");
    list(c, "ports")
        .into_iter()
        .find(|p| p["name"] == port_name)
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no containerPort {port_name} on {container_name}"))
}

#[test]
fn seed_000_job_scheduler_has_the_guides_names_ports_and_labels() {
    for (what, m) in renders(&[SEED0]) {
        // kubectl logs -f deployment/jobqueue-api, deployment/jobqueue-worker, deployment/jobqueue-reaper
        for d in ["jobqueue-api", "jobqueue-worker", "jobqueue-reaper"] {
            m.get("Deployment", d);
        }
        // kubectl port-forward svc/jobqueue-api 8000:80
        let svc = m.get("Service", "jobqueue-api");
        assert_eq!(port(svc, "http")["port"], 80, "{what}");
        assert_eq!(port(svc, "http")["targetPort"], "http", "{what}");
        let api = pod_spec(m.get("Deployment", "jobqueue-api")).expect("spec");
        assert_eq!(container_port(api, "api", "http"), 8000, "{what}");
        // kubectl logs -f job/jobqueue-migration; kubectl exec postgres-0; DATABASE_URL host postgres
        m.get("Job", "jobqueue-migration");
        assert_eq!(m.get("StatefulSet", "postgres")["spec"]["replicas"], 1);
        m.get("Service", "postgres");
        // kubectl logs -l app.kubernetes.io/name=jobqueue-worker; kubectl wait -l app.kubernetes.io/name=postgres
        assert_eq!(
            selected(&m, "Pod", "app.kubernetes.io/name=jobqueue-worker"),
            ["Deployment/jobqueue-worker"],
            "{what}"
        );
        assert_eq!(
            selected(&m, "Pod", "app.kubernetes.io/name=postgres"),
            ["StatefulSet/postgres"],
            "{what}"
        );
        // The guide's ServiceMonitor selects app.kubernetes.io/name: jobqueue-api.
        assert_eq!(
            selected(&m, "Service", "app.kubernetes.io/name=jobqueue-api"),
            ["Service/jobqueue-api"],
            "{what}"
        );
        // kubectl edit configmap jobqueue-config
        m.get("ConfigMap", "jobqueue-config");
        // The guide's probe timings, on berth's endpoints.
        let main = container(api, "api").expect("api");
        assert_eq!(main["livenessProbe"]["initialDelaySeconds"], 10, "{what}");
        assert_eq!(main["livenessProbe"]["periodSeconds"], 30);
        assert_eq!(main["livenessProbe"]["timeoutSeconds"], 5);
        assert_eq!(main["readinessProbe"]["initialDelaySeconds"], 5);
        assert_eq!(
            main["readinessProbe"]["httpGet"]["path"],
            "/api/v1/health/ready"
        );
        // Workers: 60 s grace, HPA 2-20.
        let worker = m.get("Deployment", "jobqueue-worker");
        assert_eq!(
            pod_spec(worker).expect("spec")["terminationGracePeriodSeconds"],
            60
        );
        let hpa = m.get("HorizontalPodAutoscaler", "jobqueue-worker");
        assert_eq!(
            (
                hpa["spec"]["minReplicas"].clone(),
                hpa["spec"]["maxReplicas"].clone()
            ),
            (json!(2), json!(20))
        );
        // The app's postgresql+asyncpg:// URL form goes to berth as is.
        let cfg = berth_config(m.get("ConfigMap", "jobqueue-api-berth"));
        let db = list(&cfg, "checks")
            .into_iter()
            .find(|c| c["name"] == "db")
            .expect("db check");
        assert!(
            db["url"]
                .as_str()
                .expect("url")
                .starts_with("postgresql+asyncpg://"),
            "{what}: {db}"
        );
    }
}

#[test]
fn seed_001_projections_has_its_metrics_service_labels_and_probe_timings() {
    for (what, m) in renders(&[SEED1]) {
        // kubectl -n projections get deployment projections
        let d = m.get("Deployment", "projections");
        assert_eq!(d["spec"]["replicas"], 3, "{what}");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
        let spec = pod_spec(d).expect("spec");
        assert_eq!(spec["terminationGracePeriodSeconds"], 60);
        // The metrics Service: projections-metrics, 9090, labelled app: projections.
        let svc = m.get("Service", "projections-metrics");
        assert_eq!(port(svc, "metrics")["port"], 9090, "{what}");
        assert_eq!(svc["metadata"]["labels"]["app"], "projections");
        assert!(
            m.find("Service", "projections").is_none(),
            "{what}: no main Service"
        );
        // The ServiceMonitor and kubectl select on app: projections.
        assert_eq!(
            selected(&m, "Service", "app=projections"),
            ["Service/projections-metrics"]
        );
        assert_eq!(
            selected(&m, "Pod", "app=projections"),
            ["Deployment/projections"]
        );
        // kubectl exec/port-forward deployment/projections 9090:9090
        assert_eq!(container_port(spec, "projections", "metrics"), 9090);
        let main = container(spec, "projections").expect("main");
        assert_eq!(main["livenessProbe"]["initialDelaySeconds"], 30, "{what}");
        assert_eq!(main["livenessProbe"]["timeoutSeconds"], 5);
        assert_eq!(main["readinessProbe"]["initialDelaySeconds"], 10);
        assert_eq!(main["readinessProbe"]["timeoutSeconds"], 3);
        m.get("ConfigMap", "projections-config");
    }
}

#[test]
fn seed_001_servicemonitor_scrapes_the_metrics_service_only() {
    // The guide's ServiceMonitor: the metrics Service's port `metrics`, nothing else.
    for helm in HELMS {
        let mut r = Render::berth(helm).values(SEED1);
        for api in MONITORING_APIS {
            r = r.api(api);
        }
        let m = r.ok();
        let sm = m.get("ServiceMonitor", "projections");
        assert_eq!(
            sm["spec"]["selector"]["matchLabels"]["berth.dev/service"], "metrics",
            "{helm:?}"
        );
        assert_eq!(
            sm["spec"]["endpoints"],
            json!([{"interval": "30s", "path": "/metrics", "port": "metrics"}])
        );
        let svc = m.get("Service", "projections-metrics");
        assert_eq!(svc["metadata"]["labels"]["berth.dev/service"], "metrics");
        assert!(m.find("PodMonitor", "projections").is_none(), "{helm:?}");
    }
    // With a main Service, the ServiceMonitor leaves the headless and extra Services out.
    for helm in HELMS {
        let mut r = Render::berth(helm).values(SEED0);
        for api in MONITORING_APIS {
            r = r.api(api);
        }
        let m = r.ok();
        let sm = m.get("ServiceMonitor", "jobqueue-api");
        assert_eq!(
            sm["spec"]["selector"]["matchExpressions"],
            json!([{"key": "berth.dev/service", "operator": "DoesNotExist"}]),
            "{helm:?}"
        );
        assert_eq!(
            m.get("Service", "postgres-headless")["metadata"]["labels"]["berth.dev/service"],
            "headless"
        );
    }
}

#[test]
fn seed_002_keeps_its_own_prestop_and_30s_grace_behind_port_80() {
    for (what, m) in renders(&[SEED2]) {
        let d = m.get("Deployment", "example-service");
        let spec = pod_spec(d).expect("spec");
        // The app's own preStop replaces berth's hook; the guide's 30 s grace stands.
        let main = container(spec, "app").expect("main");
        assert_eq!(
            main["lifecycle"]["preStop"]["exec"]["command"],
            json!(["/bin/sh", "-c", "sleep 15"]),
            "{what}"
        );
        assert_eq!(spec["terminationGracePeriodSeconds"], 30, "{what}");
        // kubectl get endpoints example-service: port 80 in front of 8000.
        let svc = m.get("Service", "example-service");
        assert_eq!(port(svc, "http")["port"], 80);
        assert_eq!(port(svc, "http")["targetPort"], "http");
        assert_eq!(container_port(spec, "app", "http"), 8000);
        // kubectl get pods -l app=example-service
        assert_eq!(
            selected(&m, "Pod", "app=example-service"),
            ["Deployment/example-service"]
        );
        // The guide's probe timings.
        assert_eq!(main["startupProbe"]["failureThreshold"], 30);
        assert_eq!(main["startupProbe"]["periodSeconds"], 5);
        assert_eq!(main["livenessProbe"]["periodSeconds"], 10);
        // HPA on CPU and memory, 3-10.
        let hpa = m.get("HorizontalPodAutoscaler", "example-service");
        assert_eq!(hpa["spec"]["minReplicas"], 3);
        assert_eq!(list(&hpa["spec"], "metrics").len(), 2);
        m.get("PodDisruptionBudget", "example-service");
    }
}

#[test]
fn seed_002_with_the_guides_uid_1000_runs_the_app_as_1000_and_berth_as_65532() {
    // The guide's securityContext (runAsUser: 1000) at pod level alone: the
    // app containers inherit it instead of being overridden; berth keeps its own.
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(SEED2)
            .set("workloads.app.podSecurityContext.runAsUser=1000")
            .set("workloads.app.podSecurityContext.runAsGroup=1000")
            .set("workloads.app.podSecurityContext.fsGroup=1000")
            .ok();
        let spec = pod_spec(m.get("Deployment", "example-service")).expect("spec");
        assert_eq!(spec["securityContext"]["runAsUser"], 1000, "{helm:?}");
        let main = container(spec, "app").expect("main");
        assert!(
            main["securityContext"].get("runAsUser").is_none(),
            "{helm:?}: inherits: {main}"
        );
        assert!(main["securityContext"].get("runAsGroup").is_none());
        assert_eq!(main["securityContext"]["allowPrivilegeEscalation"], false);
        let berth = container(spec, "berth").expect("berth");
        assert_eq!(berth["securityContext"]["runAsUser"], 65532, "{helm:?}");
    }
}

/// Seed 003 in one environment.
struct Env {
    files: Vec<&'static str>,
    prefix: &'static str,
    /// HPA (min, max), or none: 1 fixed replica
    hpa: Option<(i64, i64)>,
    /// the `environment` label of the overlay
    label: Option<&'static str>,
}

fn seed3_envs() -> Vec<Env> {
    vec![
        Env {
            files: vec![SEED3],
            prefix: "",
            hpa: Some((3, 7)),
            label: None,
        },
        Env {
            files: vec![SEED3, SEED3_DEV],
            prefix: "dev-",
            hpa: None,
            label: Some("dev"),
        },
        Env {
            files: vec![SEED3, SEED3_STAGING],
            prefix: "staging-",
            hpa: Some((2, 4)),
            label: Some("staging"),
        },
    ]
}

#[test]
fn seed_003_raft_cluster_has_its_headless_service_rbac_and_api_egress_in_every_environment() {
    for Env {
        files,
        prefix,
        hpa,
        label: env,
    } in seed3_envs()
    {
        let name = format!("{prefix}scheduled-db");
        for (what, m) in renders(&files) {
            let sts = m.get("StatefulSet", &name);
            // The headless Service named like the StatefulSet governs it.
            assert_eq!(sts["spec"]["serviceName"], name, "{what}");
            assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady", "{what}");
            let headless = m.get("Service", &name);
            assert_eq!(headless["spec"]["clusterIP"], "None", "{what}");
            assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
            assert_eq!(port(headless, "raft")["port"], 7000);
            assert_eq!(port(headless, "http")["port"], 8080);
            assert!(
                !list(&headless["spec"], "ports")
                    .iter()
                    .any(|p| p["name"] == "berth"),
                "{what}: berth only where asked"
            );
            assert!(
                m.find("Service", &format!("{name}-headless")).is_none(),
                "{what}"
            );
            // kubectl port-forward svc/scheduled-db-api 8080:8080
            let api = m.get("Service", &format!("{name}-api"));
            assert_eq!(port(api, "http")["port"], 8080);
            assert!(api["spec"].get("clusterIP").is_none());
            // kubectl get pods|svc|pvc -l app=scheduled-db
            assert_eq!(
                selected(&m, "Pod", "app=scheduled-db"),
                [format!("StatefulSet/{name}")]
            );
            let mut svcs = selected(&m, "Service", "app=scheduled-db");
            svcs.sort();
            assert_eq!(
                svcs,
                [format!("Service/{name}"), format!("Service/{name}-api")],
                "{what}"
            );
            assert_eq!(
                selected(&m, "PersistentVolumeClaim", "app=scheduled-db"),
                [format!("StatefulSet/{name}")]
            );
            // The ServiceAccount and its discovery Role, bound to it.
            let spec = pod_spec(sts).expect("spec");
            assert_eq!(spec["serviceAccountName"], name, "{what}");
            assert_eq!(
                m.get("ServiceAccount", &name)["automountServiceAccountToken"],
                false
            );
            let role = m.get("Role", &format!("{name}-discovery"));
            let rules = list(role, "rules");
            assert!(
                rules.iter().any(
                    |r| r["resources"] == json!(["pods", "services", "endpoints"])
                        && r["verbs"] == json!(["get", "list", "watch"])
                ),
                "{what}: {role}"
            );
            let binding = m.get("RoleBinding", &format!("{name}-discovery"));
            assert_eq!(binding["roleRef"]["kind"], "Role");
            assert_eq!(binding["roleRef"]["name"], format!("{name}-discovery"));
            assert_eq!(binding["subjects"][0]["name"], name);
            assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
            // kubectl auth can-i ... --as=system:serviceaccount:<ns>:scheduled-db: the token reaches the app only.
            assert_eq!(spec["automountServiceAccountToken"], false);
            let main = container(spec, "scheduled-db").expect("main");
            assert!(
                list(main, "volumeMounts")
                    .iter()
                    .any(|v| v["name"] == "kube-api-access"
                        && v["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"),
                "{what}"
            );
            let berth = container(spec, "berth").expect("berth");
            assert!(
                !list(berth, "volumeMounts")
                    .iter()
                    .any(|v| v["name"] == "kube-api-access"),
                "{what}"
            );
            let np = m.get("NetworkPolicy", &name);
            let egress = list(&np["spec"], "egress");
            assert!(
                egress
                    .iter()
                    .any(|r| list(r, "ports").iter().any(|p| p["port"] == 443)),
                "{what}: API egress"
            );
            // Raft only from the peers (the guide's NetworkPolicy).
            let raft_rule = list(&np["spec"], "ingress")
                .into_iter()
                .find(|r| r["ports"][0]["port"] == "raft")
                .expect("raft rule");
            assert_eq!(
                raft_rule["from"][0]["podSelector"]["matchLabels"]["app"],
                "scheduled-db"
            );
            // Per environment: replicas or HPA, environment label, PDB that never blocks a drain.
            match hpa {
                Some((min, max)) => {
                    let h = m.get("HorizontalPodAutoscaler", &name);
                    assert_eq!(
                        (
                            h["spec"]["minReplicas"].as_i64(),
                            h["spec"]["maxReplicas"].as_i64()
                        ),
                        (Some(min), Some(max)),
                        "{what}"
                    );
                    assert!(sts["spec"].get("replicas").is_none());
                }
                None => {
                    assert!(m.of_kind("HorizontalPodAutoscaler").is_empty(), "{what}");
                    assert_eq!(sts["spec"]["replicas"], 1, "{what}");
                }
            }
            if let Some(env) = env {
                assert_eq!(sts["metadata"]["labels"]["environment"], env, "{what}");
                m.get("ConfigMap", &format!("{name}-config"));
            }
            let pdb = m.get("PodDisruptionBudget", &name);
            if prefix.is_empty() {
                assert_eq!(pdb["spec"]["minAvailable"], 2, "{what}");
            } else {
                assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{what}");
            }
        }
    }
}

#[test]
fn seed_004_chat4all_cronjob_jobs_carry_the_guides_label_and_the_worker_its_account() {
    for (what, m) in renders(&[SEED4]) {
        // kubectl set image deployment/api api=chat4all/api:v2.1.0
        let api = m.get("Deployment", "api");
        let spec = pod_spec(api).expect("spec");
        assert_eq!(container_port(spec, "api", "http"), 8000, "{what}");
        // The LoadBalancer Service: 80 -> 8000, berth's port not on it.
        let svc = m.get("Service", "api");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        assert_eq!(port(svc, "http")["port"], 80);
        assert_eq!(
            list(&svc["spec"], "ports").len(),
            1,
            "{what}: no berth port on a LoadBalancer"
        );
        let ing = m.get("Ingress", "api");
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "api"
        );
        // kubectl get cronjob upload-garbage-collector; kubectl create job --from=cronjob/upload-garbage-collector
        let cj = m.get("CronJob", "upload-garbage-collector");
        assert_eq!(cj["spec"]["schedule"], "0 2 * * *", "{what}");
        assert_eq!(cj["spec"]["timeZone"], "Etc/UTC");
        // kubectl get jobs -l component=upload-gc; kubectl logs -l component=upload-gc
        assert_eq!(
            selected(&m, "Job", "component=upload-gc"),
            ["CronJob/upload-garbage-collector"],
            "{what}"
        );
        assert_eq!(
            selected(&m, "Pod", "component=upload-gc"),
            ["CronJob/upload-garbage-collector"],
            "{what}"
        );
        // The worker's own ServiceAccount chat4all-worker: its ConfigMap and Secret, Events.
        let worker = pod_spec(m.get("Deployment", "worker")).expect("spec");
        assert_eq!(worker["serviceAccountName"], "chat4all-worker", "{what}");
        assert_eq!(
            spec["serviceAccountName"], "chat4all",
            "{what}: the api keeps the release's account"
        );
        let role = m.get("Role", "chat4all-worker");
        let rules = list(role, "rules");
        assert!(rules
            .iter()
            .any(|r| r["resources"] == json!(["events"]) && r["verbs"] == json!(["create"])));
        assert!(rules.iter().any(|r| r["resources"] == json!(["secrets"])
            && r["resourceNames"] == json!(["chat4all-secrets"])));
        let binding = m.get("RoleBinding", "chat4all-worker");
        assert_eq!(binding["subjects"][0]["name"], "chat4all-worker");
        assert_eq!(binding["subjects"][0]["namespace"], "ns");
        let hpa = m.get("HorizontalPodAutoscaler", "worker");
        assert_eq!(hpa["spec"]["minReplicas"], 5);
    }
}

#[test]
fn every_seed_renders_for_both_kubernetes_versions_with_both_helms() {
    // Guards the scenario list: each seed file exists and renders (the tests
    // above look inside; tests/charts/verify.sh validates and scans them).
    let mut n = 0;
    for f in [SEED0, SEED1, SEED2, SEED3, SEED4] {
        n += renders(&[f]).len();
    }
    for o in [SEED3_DEV, SEED3_STAGING] {
        n += renders(&[SEED3, o]).len();
    }
    assert_eq!(n, 7 * HELMS.len() * KUBES.len());
}
