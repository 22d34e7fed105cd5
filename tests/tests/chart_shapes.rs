//! charts/berth: the shapes other people's apps need (written from the seed
//! apps' guides): a Service port in front of a different container port,
//! several Services per workload (a headless one governing a StatefulSet),
//! names the user chooses, podManagementPolicy, a ServiceAccount per
//! workload with Roles / ClusterRoles and their bindings, the Kubernetes API
//! for the app only, labels on a CronJob's Jobs and on claims, the pod's
//! securityContext inherited by the app's containers, the app's probe
//! timings, and the app's own preStop. helm 3 and helm 4; keyed maps merge
//! across `-f` files.

use berth_tests::chart::{container, list, pod_metadata, pod_spec, Render, HELMS};
use serde_json::{json, Value};

const WEB: &str = "charts/berth/ci/web-values.yaml";
const JOBS: &str = "charts/berth/ci/jobs-values.yaml";
const STS: &str = "charts/berth/ci/statefulset-values.yaml";

fn port<'a>(svc: &'a Value, name: &str) -> &'a Value {
    list(&svc["spec"], "ports")
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {svc}"))
}

#[test]
fn service_port_80_fronts_container_port_8000() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.ports.http.port=8000")
            .set("workloads.web.ports.http.servicePort=80")
            .ok();
        let svc = m.get("Service", "rel-web");
        assert_eq!(port(svc, "http")["port"], 80, "{helm:?}");
        assert_eq!(port(svc, "http")["targetPort"], "http");
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        let web = container(spec, "web").expect("web");
        assert_eq!(web["ports"][0]["containerPort"], 8000);
        // The Ingress and HTTPRoute follow the Service port.
        let route = m.find("HTTPRoute", "rel-web");
        assert!(route.is_none(), "no gateway API asked");
    }
}

#[test]
fn extra_services_have_their_own_names_types_ports_and_labels() {
    let values = r#"
workloads:
  web:
    ports:
      admin: {port: 9000, service: false}
    services:
      admin:
        type: NodePort
        labels: {tier: admin}
        annotations: {example.com/team: ops}
        ports:
          admin: {port: 80, nodePort: 30080}
      direct:
        nameOverride: web-direct
        headless: true
        ports:
          raw: {targetPort: 8080}
"#;
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).values_yaml(values).ok();
        // the main Service keeps its shape (admin is marked service: false)
        let main = m.get("Service", "rel-web");
        assert!(
            list(&main["spec"], "ports")
                .iter()
                .all(|p| p["name"] != "admin"),
            "{helm:?}"
        );
        let admin = m.get("Service", "rel-web-admin");
        assert_eq!(admin["spec"]["type"], "NodePort");
        assert_eq!(admin["metadata"]["labels"]["tier"], "admin");
        assert_eq!(admin["metadata"]["annotations"]["example.com/team"], "ops");
        let p = port(admin, "admin");
        assert_eq!(
            (
                p["port"].clone(),
                p["targetPort"].clone(),
                p["nodePort"].clone()
            ),
            (json!(80), json!("admin"), json!(30080))
        );
        // extra Services get berth's port only when asked
        assert!(list(&admin["spec"], "ports")
            .iter()
            .all(|p| p["name"] != "berth"));
        assert_eq!(
            admin["spec"]["selector"]["app.kubernetes.io/component"],
            "web"
        );
        let direct = m.get("Service", "web-direct");
        assert_eq!(direct["spec"]["clusterIP"], "None");
        assert_eq!(port(direct, "raw")["targetPort"], 8080);
        assert_eq!(port(direct, "raw")["port"], 8080);
    }
}

#[test]
fn a_headless_entry_governs_the_statefulset_and_replaces_the_built_in_one() {
    let values = r#"
workloads:
  store:
    podManagementPolicy: OrderedReady
    serviceName: peers
    services:
      peers:
        headless: true
        publishNotReadyAddresses: true
        ports:
          redis: {}
"#;
    for helm in HELMS {
        let m = Render::berth(helm).values(STS).values_yaml(values).ok();
        let sts = m.get("StatefulSet", "rel-store");
        assert_eq!(sts["spec"]["serviceName"], "rel-store-peers", "{helm:?}");
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        let peers = m.get("Service", "rel-store-peers");
        assert_eq!(peers["spec"]["clusterIP"], "None");
        assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
        assert_eq!(port(peers, "redis")["port"], 6379);
        assert!(
            m.find("Service", "rel-store-headless").is_none(),
            "{helm:?}"
        );
        m.get("Service", "rel-store");
        // default: Parallel and the built-in headless Service, as before
        let m = Render::berth(helm).values(STS).ok();
        let sts = m.get("StatefulSet", "rel-store");
        assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
        assert_eq!(sts["spec"]["serviceName"], "rel-store-headless");
    }
}

#[test]
fn keyed_services_and_rbac_merge_across_values_files() {
    // An overlay adds a Service and a Role and changes one port: nothing of the base is lost.
    let base = r#"
workloads:
  web:
    serviceAccount: {create: true}
    services:
      a: {ports: {http: {port: 81}}}
    rbac:
      read: {rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]}
"#;
    let overlay = r#"
workloads:
  web:
    services:
      a: {ports: {http: {port: 82}}}
      b: {ports: {http: {}}}
    rbac:
      events: {rules: [{apiGroups: [""], resources: [events], verbs: [create]}]}
"#;
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .values_yaml(base)
            .values_yaml(overlay)
            .ok();
        assert_eq!(
            port(m.get("Service", "rel-web-a"), "http")["port"],
            82,
            "{helm:?}"
        );
        assert_eq!(port(m.get("Service", "rel-web-b"), "http")["port"], 8080);
        m.get("Role", "rel-web-read");
        m.get("Role", "rel-web-events");
        m.get("RoleBinding", "rel-web-read");
        m.get("RoleBinding", "rel-web-events");
    }
}

#[test]
fn name_override_renames_every_object_of_the_workload_and_its_name_label() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.nameOverride=storefront")
            .ok();
        for kind in [
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "Ingress",
        ] {
            m.get(kind, "storefront");
            assert!(m.find(kind, "rel-web").is_none(), "{helm:?} {kind}");
        }
        m.get("ConfigMap", "storefront-berth");
        let d = m.get("Deployment", "storefront");
        assert_eq!(
            d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
            "storefront"
        );
        assert_eq!(
            pod_metadata(d)["labels"]["app.kubernetes.io/name"],
            "storefront"
        );
        let hpa = m.get("HorizontalPodAutoscaler", "storefront");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "storefront");
        let ing = m.get("Ingress", "storefront");
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "storefront"
        );
        let spec = pod_spec(d).expect("spec");
        let cm_volume = list(spec, "volumes")
            .into_iter()
            .find(|v| v["name"] == "berth-config")
            .expect("berth-config volume");
        assert_eq!(
            cm_volume["projected"]["sources"][0]["configMap"]["name"],
            "storefront-berth"
        );
        // the container keeps the workload's key: `kubectl set image deployment/storefront web=...`
        assert!(container(spec, "web").is_some());
        // the helm test reaches the renamed Service
        let test_cm = m.get("ConfigMap", "rel-test-ready");
        assert!(
            test_cm["data"]["berth.yaml"]
                .as_str()
                .expect("cfg")
                .contains("http://storefront.ns.svc:8642/"),
            "{helm:?}"
        );
        // a Service nameOverride renames only the Service
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.service.nameOverride=web-public")
            .ok();
        m.get("Service", "web-public");
        m.get("Deployment", "rel-web");
        let ing = m.get("Ingress", "rel-web");
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "web-public"
        );
    }
}

#[test]
fn a_workload_service_account_gets_roles_cluster_roles_and_bindings() {
    let values = r#"
workloads:
  web:
    serviceAccount:
      create: true
      annotations: {iam.example.com/role: web}
    rbac:
      read:
        rules:
          - {apiGroups: [""], resources: [configmaps], verbs: [get, list]}
      nodes:
        kind: ClusterRole
        rules:
          - {apiGroups: [""], resources: [nodes], verbs: [get]}
      view:
        roleRef: {kind: ClusterRole, name: view}
"#;
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).values_yaml(values).ok();
        let sa = m.get("ServiceAccount", "rel-web");
        assert_eq!(sa["automountServiceAccountToken"], false, "{helm:?}");
        assert_eq!(sa["metadata"]["annotations"]["iam.example.com/role"], "web");
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert_eq!(spec["serviceAccountName"], "rel-web");
        assert_eq!(spec["automountServiceAccountToken"], false);
        let role = m.get("Role", "rel-web-read");
        assert_eq!(role["rules"][0]["verbs"], json!(["get", "list"]));
        let rb = m.get("RoleBinding", "rel-web-read");
        assert_eq!(
            rb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rel-web-read"})
        );
        assert_eq!(
            rb["subjects"],
            json!([{"kind": "ServiceAccount", "name": "rel-web", "namespace": "ns"}])
        );
        // cluster-scoped: no namespace, the namespace in the name
        let cr = m.get("ClusterRole", "ns-rel-web-nodes");
        assert!(cr["metadata"].get("namespace").is_none(), "{helm:?}: {cr}");
        let crb = m.get("ClusterRoleBinding", "ns-rel-web-nodes");
        assert!(crb["metadata"].get("namespace").is_none());
        assert_eq!(crb["roleRef"]["kind"], "ClusterRole");
        assert_eq!(crb["subjects"][0]["namespace"], "ns");
        // an existing role, bound only
        assert!(
            m.find("ClusterRole", "view").is_none() && m.find("Role", "rel-web-view").is_none()
        );
        let v = m.get("RoleBinding", "rel-web-view");
        assert_eq!(v["roleRef"]["name"], "view");
        assert_eq!(v["roleRef"]["kind"], "ClusterRole");
        // the release-wide account stays for the other workloads
        m.get("ServiceAccount", "rel");
        // an existing account by name, without creating one
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.serviceAccount.name=existing")
            .ok();
        assert_eq!(
            pod_spec(m.get("Deployment", "rel-web")).expect("spec")["serviceAccountName"],
            "existing"
        );
        assert!(m.find("ServiceAccount", "existing").is_none());
    }
}

#[test]
fn the_kubernetes_api_reaches_the_app_container_only_and_the_network_policy_lets_it_out() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.kubernetesApi.enabled=true")
            .set("networkPolicy.kubernetesApi.cidrs[0]=10.96.0.1/32")
            .set("networkPolicy.kubernetesApi.ports[0]=443")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert_eq!(spec["automountServiceAccountToken"], false, "{helm:?}");
        let vol = list(spec, "volumes")
            .into_iter()
            .find(|v| v["name"] == "kube-api-access")
            .expect("token volume");
        let sources = list(&vol["projected"], "sources");
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
        let web = container(spec, "web").expect("web");
        let mount = list(web, "volumeMounts")
            .into_iter()
            .find(|v| v["name"] == "kube-api-access")
            .expect("mount");
        assert_eq!(
            mount["mountPath"],
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert_eq!(mount["readOnly"], true);
        let berth = container(spec, "berth").expect("berth");
        assert!(
            list(berth, "volumeMounts")
                .iter()
                .all(|v| v["name"] != "kube-api-access"),
            "{helm:?}"
        );
        let np = m.get("NetworkPolicy", "rel-web");
        let api = list(&np["spec"], "egress")
            .into_iter()
            .find(|r| r["to"][0]["ipBlock"]["cidr"] == "10.96.0.1/32")
            .expect("API egress rule");
        assert_eq!(api["ports"], json!([{"port": 443, "protocol": "TCP"}]));
        // not asked: no token, no rule
        let m = Render::berth(helm).values(WEB).ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert!(list(spec, "volumes")
            .iter()
            .all(|v| v["name"] != "kube-api-access"));
        let np = m.get("NetworkPolicy", "rel-web");
        assert!(list(&np["spec"], "egress")
            .iter()
            .all(|r| !list(r, "ports").iter().any(|p| p["port"] == 6443)));
    }
}

#[test]
fn cronjob_jobs_and_claims_carry_the_users_labels_and_annotations() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(JOBS)
            .set("workloads.nightly.labels.component=nightly")
            .set("workloads.nightly.annotations.example\\.com/owner=ops")
            .set("workloads.nightly.podLabels.component=nightly")
            .set("workloads.nightly.cronJob.timeZone=Europe/Berlin")
            .set("commonLabels.team=data")
            .ok();
        let cj = m.get("CronJob", "rel-nightly");
        let jt = &cj["spec"]["jobTemplate"]["metadata"];
        assert_eq!(jt["labels"]["component"], "nightly", "{helm:?}");
        assert_eq!(jt["labels"]["team"], "data");
        assert_eq!(jt["labels"]["app.kubernetes.io/component"], "nightly");
        assert_eq!(jt["annotations"]["example.com/owner"], "ops");
        assert_eq!(pod_metadata(cj)["labels"]["component"], "nightly");
        assert_eq!(cj["spec"]["timeZone"], "Europe/Berlin");
        let m = Render::berth(helm)
            .values(STS)
            .set("workloads.store.volumeClaimTemplates.data.labels.app=store")
            .set("workloads.store.volumeClaimTemplates.data.annotations.backup\\.example\\.com/keep=yes")
            .ok();
        let claim =
            &m.get("StatefulSet", "rel-store")["spec"]["volumeClaimTemplates"][0]["metadata"];
        assert_eq!(claim["labels"]["app"], "store", "{helm:?}");
        assert_eq!(claim["labels"]["app.kubernetes.io/component"], "store");
        assert_eq!(claim["annotations"]["backup.example.com/keep"], "yes");
    }
}

#[test]
fn cron_schedules_and_time_zones_that_kubernetes_accepts_render() {
    for helm in HELMS {
        for (schedule, tz) in [
            ("@hourly", "UTC"),
            ("@daily", "Etc/GMT-2"),
            ("*/15 0-6 * * MON-FRI", "America/Argentina/Buenos_Aires"),
            ("@every 90m", "Europe/Berlin"),
        ] {
            let m = Render::berth(helm)
                .values(JOBS)
                .set(&format!("workloads.nightly.cronJob.schedule={schedule}"))
                .set(&format!("workloads.nightly.cronJob.timeZone={tz}"))
                .ok();
            assert_eq!(
                m.get("CronJob", "rel-nightly")["spec"]["schedule"],
                schedule,
                "{helm:?}"
            );
        }
    }
}

#[test]
fn the_app_containers_inherit_the_pods_user_and_berth_keeps_its_own() {
    for helm in HELMS {
        // defaults: the user is set once, on the pod
        let m = Render::berth(helm).values(WEB).ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert_eq!(spec["securityContext"]["runAsUser"], 65532, "{helm:?}");
        let web = container(spec, "web").expect("web");
        assert!(
            web["securityContext"].get("runAsUser").is_none(),
            "{helm:?}: {web}"
        );
        // the guide's `runAsUser: 1000` on the pod alone
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.podSecurityContext.runAsUser=1000")
            .set("workloads.web.sidecars.exporter.image=example/exporter:1")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert_eq!(spec["securityContext"]["runAsUser"], 1000);
        for name in ["web", "exporter"] {
            let c = container(spec, name).expect("container");
            assert!(
                c["securityContext"].get("runAsUser").is_none(),
                "{helm:?} {name} inherits"
            );
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        }
        assert_eq!(
            container(spec, "berth").expect("berth")["securityContext"]["runAsUser"],
            65532
        );
        // a container-level user still wins
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.securityContext.runAsUser=20000")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert_eq!(
            container(spec, "web").expect("web")["securityContext"]["runAsUser"],
            20000
        );
    }
}

#[test]
fn the_apps_probe_timings_apply_to_berths_probes() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.probes.liveness.initialDelaySeconds=30")
            .set("workloads.web.probes.liveness.timeoutSeconds=5")
            .set("workloads.web.probes.readiness.successThreshold=2")
            .set("workloads.web.berth.mainProbes.startup.initialDelaySeconds=3")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        let web = container(spec, "web").expect("web");
        assert_eq!(web["livenessProbe"]["initialDelaySeconds"], 30, "{helm:?}");
        assert_eq!(web["livenessProbe"]["timeoutSeconds"], 5);
        assert_eq!(
            web["livenessProbe"]["periodSeconds"], 10,
            "the rest keeps berth's defaults"
        );
        assert_eq!(
            web["livenessProbe"]["httpGet"]["path"],
            "/api/v1/health/live"
        );
        assert_eq!(web["readinessProbe"]["successThreshold"], 2);
        assert_eq!(web["startupProbe"]["initialDelaySeconds"], 3);
        assert!(web["readinessProbe"].get("initialDelaySeconds").is_none());
    }
}

#[test]
fn the_apps_own_prestop_replaces_berths_hook_and_the_grace_rule() {
    for helm in HELMS {
        // seed 002: sleep 15 with a 30 s grace, although the drain would need 28 s with berth's hook
        let values = r#"
workloads:
  web:
    terminationGracePeriodSeconds: 20
    lifecycle:
      preStop:
        exec: {command: [/bin/sh, -c, sleep 15]}
"#;
        let m = Render::berth(helm).values(WEB).values_yaml(values).ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert_eq!(spec["terminationGracePeriodSeconds"], 20, "{helm:?}");
        let web = container(spec, "web").expect("web");
        assert!(web["lifecycle"]["preStop"].get("httpGet").is_none());
        // without a grace period of its own: Kubernetes' default, not berth's
        let values = "workloads:\n  web:\n    lifecycle:\n      preStop:\n        exec: {command: [/bin/sh, -c, sleep 5]}\n";
        let m = Render::berth(helm).values(WEB).values_yaml(values).ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert!(
            spec.get("terminationGracePeriodSeconds").is_none(),
            "{helm:?}"
        );
        // berth.preStop: false, as the grace rule's message suggests
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.terminationGracePeriodSeconds=10")
            .set("workloads.web.berth.preStop=false")
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        assert_eq!(spec["terminationGracePeriodSeconds"], 10);
        assert!(container(spec, "web")
            .expect("web")
            .get("lifecycle")
            .is_none());
    }
}

#[test]
fn postgres_urls_with_a_driver_suffix_render() {
    // The form seed 000 and 002 apps use (SQLAlchemy + asyncpg/psycopg).
    for helm in HELMS {
        for url in [
            "postgresql+asyncpg://app:${DB_PASSWORD}@db:5432/app",
            "postgresql+psycopg://app:${DB_PASSWORD}@db/app",
            "postgres://app:${DB_PASSWORD}@db/app",
        ] {
            Render::berth(helm)
                .values(WEB)
                .set("workloads.web.berth.checks.db.type=postgres")
                .set(&format!("workloads.web.berth.checks.db.url={url}"))
                .set("workloads.web.berth.env.DB_PASSWORD.valueFrom.secretKeyRef.name=db")
                .set("workloads.web.berth.env.DB_PASSWORD.valueFrom.secretKeyRef.key=password")
                .ok();
        }
    }
}

#[test]
fn an_https_check_renders_with_its_tls_settings() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.berth.checks.api.type=https")
            .set("workloads.web.berth.checks.api.url=https://api.example.com/healthz")
            .set("workloads.web.berth.checks.api.caFile=/etc/berth/secret/ca")
            .set("workloads.web.berth.checks.api.critical=false")
            .ok();
        let cfg = berth_tests::chart::berth_config(m.get("ConfigMap", "rel-web-berth"));
        let api = list(&cfg, "checks")
            .into_iter()
            .find(|c| c["name"] == "api")
            .expect("api check");
        assert_eq!(api["type"], "https", "{helm:?}");
        assert_eq!(api["caFile"], "/etc/berth/secret/ca");
        // a key of another check type is refused, naming it
        let err = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.berth.checks.api.type=https")
            .set("workloads.web.berth.checks.api.url=https://api.example.com/")
            .set("workloads.web.berth.checks.api.maxAge=5s")
            .err();
        assert!(
            err.contains("workloads.web.berth.checks.api.maxAge is not a setting of a https check"),
            "{helm:?}: {err}"
        );
    }
}
