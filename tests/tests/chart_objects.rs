//! charts/berth: the release's other objects — Service, StatefulSet claims,
//! NetworkPolicy, monitoring CRDs only when their APIs exist, Ingress,
//! HTTPRoute, topology spread and anti-affinity, the helm test pod, and
//! berth turned off. helm 3 and helm 4.

use berth_tests::chart::{
    all_containers, berth_config, container, pod_metadata, pod_spec, Render, GATEWAY_API, HELMS,
    MONITORING_APIS,
};

const WEB: &str = "charts/berth/ci/web-values.yaml";

#[test]
fn service_exposes_app_ports_and_berth() {
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).ok();
        let svc = m.get("Service", "rel-web");
        let ports = svc["spec"]["ports"].as_array().expect("ports");
        assert!(
            ports
                .iter()
                .any(|p| p["name"] == "http" && p["port"] == 8080),
            "{helm:?}"
        );
        assert!(ports
            .iter()
            .any(|p| p["name"] == "berth" && p["targetPort"] == "berth"));
        assert_eq!(
            svc["spec"]["selector"]["app.kubernetes.io/component"],
            "web"
        );
    }
}

#[test]
fn statefulset_gets_claims_and_a_headless_service() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values("charts/berth/ci/statefulset-values.yaml")
            .ok();
        let sts = m.get("StatefulSet", "rel-store");
        assert_eq!(sts["spec"]["replicas"], 3, "{helm:?}");
        assert_eq!(sts["spec"]["serviceName"], "rel-store-headless");
        let vct = &sts["spec"]["volumeClaimTemplates"][0];
        assert_eq!(vct["metadata"]["name"], "data");
        assert_eq!(vct["spec"]["resources"]["requests"]["storage"], "1Gi");
        let spec = pod_spec(sts).expect("spec");
        let main = container(spec, "store").expect("main");
        assert!(main["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|v| v["name"] == "data" && v["mountPath"] == "/data"));
        let headless = m.get("Service", "rel-store-headless");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        // hard anti-affinity on the hostname
        let aa = &spec["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(aa["topologyKey"], "kubernetes.io/hostname");
    }
}

#[test]
fn pods_spread_across_zones_and_prefer_distinct_hosts() {
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).ok();
        let spec = pod_spec(m.get("Deployment", "rel-web"))
            .expect("spec")
            .clone();
        let tsc = &spec["topologySpreadConstraints"][0];
        assert_eq!(
            tsc["topologyKey"], "topology.kubernetes.io/zone",
            "{helm:?}"
        );
        assert_eq!(
            tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "web"
        );
        let pref = &spec["affinity"]["podAntiAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(
            pref["podAffinityTerm"]["topologyKey"],
            "kubernetes.io/hostname"
        );
    }
}

#[test]
fn network_policy_allows_dns_egress_and_the_workload_ports() {
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).ok();
        let np = m.get("NetworkPolicy", "rel-web");
        assert_eq!(
            np["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        let egress = np["spec"]["egress"].as_array().expect("egress");
        let dns = egress
            .iter()
            .find(|r| {
                r["ports"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["port"] == 53))
            })
            .expect("DNS egress rule");
        let protos: Vec<&str> = dns["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p["protocol"].as_str())
            .collect();
        assert!(
            protos.contains(&"UDP") && protos.contains(&"TCP"),
            "{helm:?}"
        );
        // One rule per port (each port has its own peers).
        let ingress_ports: Vec<&serde_json::Value> = np["spec"]["ingress"]
            .as_array()
            .expect("ingress")
            .iter()
            .flat_map(|rule| rule["ports"].as_array().expect("rule ports").iter())
            .collect();
        assert!(ingress_ports.iter().any(|p| p["port"] == "http"));
        assert!(ingress_ports.iter().any(|p| p["port"] == 8642));
        assert!(
            !ingress_ports.iter().any(|p| p["port"] == 8643),
            "the lifecycle port is never opened to the network"
        );
        let m = Render::berth(helm)
            .values(WEB)
            .set("networkPolicy.enabled=false")
            .ok();
        assert!(m.find("NetworkPolicy", "rel-web").is_none());
    }
}

#[test]
fn monitoring_objects_only_when_the_crds_exist() {
    for helm in HELMS {
        let without = Render::berth(helm).values(WEB).ok();
        assert!(without.of_kind("ServiceMonitor").is_empty(), "{helm:?}");
        let mut r = Render::berth(helm)
            .values(WEB)
            .set("monitoring.prometheusRule.enabled=true");
        for api in MONITORING_APIS {
            r = r.api(api);
        }
        let with = r.ok();
        let sm = with.get("ServiceMonitor", "rel-web");
        let eps = sm["spec"]["endpoints"].as_array().expect("endpoints");
        assert!(eps
            .iter()
            .any(|e| e["port"] == "http" && e["path"] == "/metrics"));
        assert!(
            eps.iter().any(|e| e["port"] == "berth"),
            "{helm:?}: berth scraped too"
        );
        assert_eq!(with.of_kind("PrometheusRule").len(), 1);
        // A workload without a Service gets a PodMonitor.
        let mut r = Render::berth(helm).values("examples/jobqueue/values.yaml");
        for api in MONITORING_APIS {
            r = r.api(api);
        }
        let jq = r.ok();
        assert!(jq.find("PodMonitor", "rel-worker").is_some(), "{helm:?}");
        assert!(jq.find("ServiceMonitor", "rel-api").is_some());
        let rule = &jq.of_kind("PrometheusRule")[0];
        assert!(rule.to_string().contains("JobQueueBacklog"));
        assert!(
            rule.to_string().contains("namespace=\\\"ns\\\""),
            "tpl applied: {rule}"
        );
    }
}

#[test]
fn ingress_and_httproute_route_to_the_service() {
    for helm in HELMS {
        let m = Render::berth(helm).values(WEB).ok();
        let ing = m.get("Ingress", "rel-web");
        assert_eq!(ing["spec"]["ingressClassName"], "nginx");
        let backend = &ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
        assert_eq!(backend["name"], "rel-web");
        assert_eq!(backend["port"]["name"], "http");
        assert!(
            m.of_kind("HTTPRoute").is_empty(),
            "{helm:?}: no Gateway API, no HTTPRoute"
        );
        let m = Render::berth(helm).values(WEB).api(GATEWAY_API).ok();
        let route = m.get("HTTPRoute", "rel-web");
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
        assert_eq!(
            route["spec"]["rules"][0]["backendRefs"][0]["name"],
            "rel-web"
        );
        assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["port"], 8080);
    }
}

#[test]
fn helm_test_pod_waits_for_every_service_ready_with_the_berth_image() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values("examples/jobqueue/values.yaml")
            .ok();
        let pod = m.get("Pod", "rel-test-ready");
        assert_eq!(
            pod["metadata"]["annotations"]["helm.sh/hook"], "test",
            "{helm:?}"
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], "ghcr.io/berth-dev/berth:0.1.0");
        assert_eq!(
            c["args"],
            serde_json::json!([
                "wait",
                "--config",
                "/etc/berth/berth.yaml",
                "--timeout",
                "60s"
            ])
        );
        let cfg = berth_config(m.get("ConfigMap", "rel-test-ready"));
        let mut urls: Vec<String> = cfg["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| {
                assert_eq!(c["type"], "http");
                c["url"].as_str().expect("url").to_string()
            })
            .collect();
        urls.sort();
        // One per Service: api and postgresql (worker/reaper have none).
        let services: Vec<String> = m
            .of_kind("Service")
            .iter()
            .filter(|s| s["spec"]["clusterIP"] != "None")
            .map(|s| {
                format!(
                    "http://{}.ns.svc:8642/api/v1/health/ready",
                    s["metadata"]["name"].as_str().expect("name")
                )
            })
            .collect();
        let mut services = services;
        services.sort();
        assert_eq!(urls, services, "{helm:?}");
        assert_eq!(urls.len(), 2);
    }
}

#[test]
fn berth_disabled_leaves_a_plain_valid_chart() {
    for helm in HELMS {
        for kube in ["1.28.0", "1.35.0"] {
            let m = Render::berth(helm)
                .values("charts/berth/ci/berth-off-values.yaml")
                .kube(kube)
                .ok();
            let deploy = m.get("Deployment", "rel-web");
            let spec = pod_spec(deploy).expect("spec");
            for c in all_containers(spec) {
                assert_ne!(c["name"], "berth", "{helm:?} {kube}");
                assert_ne!(c["name"], "berth-wait");
            }
            let main = container(spec, "web").expect("main");
            assert!(main.get("lifecycle").is_none(), "no berth preStop");
            assert!(main.get("startupProbe").is_none(), "disabled in ci values");
            assert_eq!(
                main["livenessProbe"]["httpGet"]["path"], "/",
                "custom probe kept"
            );
            assert!(
                !spec.to_string().contains("berth-run"),
                "{helm:?} {kube}: no berth volumes"
            );
            assert!(spec.get("terminationGracePeriodSeconds").is_none());
            assert!(m.find("ConfigMap", "rel-web-berth").is_none());
            assert!(pod_metadata(deploy)["annotations"]
                .get("checksum/config")
                .is_none());
            // No berth port on the Service or in the test.
            let svc = m.get("Service", "rel-web");
            assert!(!svc.to_string().contains("8642"));
            assert!(m.find("Pod", "rel-test-ready").is_none());
            // Still restricted.
            assert_eq!(main["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        }
    }
}

#[test]
fn daemonset_gets_berth_and_extra_pod_spec_fields_but_no_replicas_hpa_or_pdb() {
    const DS: &str = "charts/berth/ci/daemonset-values.yaml";
    for helm in HELMS {
        let m = Render::berth(helm).values(DS).ok();
        let ds = m.get("DaemonSet", "rel-agent");
        assert!(ds["spec"].get("replicas").is_none(), "{helm:?}");
        assert_eq!(
            ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
        let spec = pod_spec(ds).expect("spec");
        assert_eq!(spec["hostAliases"][0]["ip"], "127.0.0.1", "podSpec merged");
        assert_eq!(spec["dnsConfig"]["options"][0]["name"], "ndots");
        assert!(
            spec.get("topologySpreadConstraints").is_none(),
            "one pod per node anyway"
        );
        let main = container(spec, "agent").expect("main");
        assert_eq!(
            main["readinessProbe"]["httpGet"]["path"],
            "/api/v1/health/ready"
        );
        assert_eq!(
            main["lifecycle"]["preStop"]["httpGet"]["path"],
            "/api/v1/lifecycle/prestop"
        );
        assert_eq!(spec["terminationGracePeriodSeconds"], 2 + 10 + 5);
        assert!(m.of_kind("PodDisruptionBudget").is_empty());
        assert!(m.of_kind("HorizontalPodAutoscaler").is_empty());
        let err = Render::berth(helm)
            .values(DS)
            .set("workloads.agent.hpa.enabled=true")
            .err();
        assert!(
            err.contains("workloads.agent.hpa.enabled=true"),
            "{helm:?}: {err}"
        );
        let err = Render::berth(helm)
            .values(DS)
            .set("workloads.agent.replicas=2")
            .err();
        assert!(
            err.contains("workloads.agent.replicas is only for"),
            "{helm:?}: {err}"
        );
    }
}
