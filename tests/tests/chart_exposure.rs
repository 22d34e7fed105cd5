//! charts/berth: who can reach berth's lifecycle endpoints. In every ci
//! scenario (helm 3 and 4, Kubernetes 1.28 and 1.35) no Service, Ingress,
//! HTTPRoute or NetworkPolicy rule leads to the lifecycle port or path; the
//! preStop hook carries the release's token, the same one the berth
//! container and the Secret hold; berth's health port stays off NodePort
//! and LoadBalancer Services unless asked; NetworkPolicy peers are per port.

use std::collections::BTreeSet;

use berth_tests::chart::{
    all_containers, berth_config, container, list, pod_spec, Manifests, Render, HELMS,
};
use serde_json::Value;

const WEB: &str = "charts/berth/ci/web-values.yaml";
const LIFECYCLE_PATH: &str = "/api/v1/lifecycle";

/// Lifecycle ports of a render: every port a preStop hook calls with the
/// token header, and every `lifecycle.listen` in a berth.yaml.
fn lifecycle_ports(m: &Manifests) -> BTreeSet<i64> {
    let mut ports = BTreeSet::new();
    for cm in m.of_kind("ConfigMap") {
        if cm["data"].get("berth.yaml").is_some() {
            let cfg = berth_config(cm);
            if let Some(listen) = cfg["lifecycle"]["listen"].as_str() {
                let port = listen.rsplit(':').next().and_then(|p| p.parse().ok());
                ports.insert(port.expect("lifecycle.listen has a port"));
            }
        }
    }
    for (_, spec) in m.pod_specs() {
        for c in all_containers(spec) {
            let get = &c["lifecycle"]["preStop"]["httpGet"];
            if get["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(LIFECYCLE_PATH))
            {
                ports.insert(get["port"].as_i64().expect("hook port is a number"));
            }
        }
    }
    ports
}

/// The container ports (number) a Service's targetPort can mean, by name or number.
fn target_numbers(m: &Manifests, target: &Value) -> Vec<i64> {
    if let Some(n) = target.as_i64() {
        return vec![n];
    }
    let name = target.as_str().unwrap_or_default();
    let mut out = Vec::new();
    for (_, spec) in m.pod_specs() {
        for c in all_containers(spec) {
            for p in list(c, "ports") {
                if p["name"] == name {
                    out.push(p["containerPort"].as_i64().unwrap_or_default());
                }
            }
        }
    }
    out
}

#[test]
fn no_service_ingress_route_or_network_policy_reaches_a_lifecycle_endpoint() {
    for helm in HELMS {
        for (label, m) in berth_tests::chart::all_scenario_renders(helm) {
            let lifecycle = lifecycle_ports(&m);
            for svc in m.of_kind("Service") {
                for p in list(&svc["spec"], "ports") {
                    for n in target_numbers(&m, &p["targetPort"]) {
                        assert!(
                            !lifecycle.contains(&n),
                            "{label} {helm:?}: Service {} reaches lifecycle port {n}",
                            svc["metadata"]["name"]
                        );
                    }
                }
            }
            for np in m.of_kind("NetworkPolicy") {
                for rule in list(&np["spec"], "ingress") {
                    for p in list(rule, "ports") {
                        if let Some(n) = p["port"].as_i64() {
                            assert!(
                                !lifecycle.contains(&n),
                                "{label} {helm:?}: NetworkPolicy {} opens lifecycle port {n}",
                                np["metadata"]["name"]
                            );
                        }
                    }
                }
            }
            // Ingress and HTTPRoute reach pods only through Services (checked
            // above); they must not name a lifecycle path either.
            for kind in ["Ingress", "HTTPRoute"] {
                for obj in m.of_kind(kind) {
                    let text = obj.to_string();
                    assert!(
                        !text.contains(LIFECYCLE_PATH),
                        "{label} {helm:?}: {kind} {} routes a lifecycle path",
                        obj["metadata"]["name"]
                    );
                }
            }
            // berth never declares the lifecycle port, so nothing can name it.
            for (_, spec) in m.pod_specs() {
                if let Some(b) = container(spec, "berth") {
                    for p in list(b, "ports") {
                        let n = p["containerPort"].as_i64().unwrap_or_default();
                        assert!(!lifecycle.contains(&n), "{label}: berth declares {n}");
                    }
                }
            }
        }
    }
}

#[test]
fn every_hook_carries_the_release_token_that_berth_and_the_secret_hold() {
    for helm in HELMS {
        for (label, m) in berth_tests::chart::all_scenario_renders(helm) {
            let mut tokens = BTreeSet::new();
            for (obj, spec) in m.pod_specs() {
                let Some(berth) = all_containers(spec)
                    .into_iter()
                    .find(|c| c["name"] == "berth")
                else {
                    continue;
                };
                let env_token = list(berth, "env")
                    .into_iter()
                    .find(|e| e["name"] == "BERTH_LIFECYCLE_TOKEN")
                    .and_then(|e| e["value"].as_str())
                    .unwrap_or_else(|| {
                        panic!("{label}: {} berth has no token", obj["metadata"]["name"])
                    });
                tokens.insert(env_token.to_string());
                for c in all_containers(spec) {
                    let get = &c["lifecycle"]["preStop"]["httpGet"];
                    if get["path"] == "/api/v1/lifecycle/prestop" {
                        let header = list(get, "httpHeaders")
                            .into_iter()
                            .find(|h| h["name"] == "berth-lifecycle-token")
                            .unwrap_or_else(|| panic!("{label}: hook without the token header"));
                        assert_eq!(header["value"], env_token, "{label}");
                    }
                }
            }
            if tokens.is_empty() {
                continue;
            }
            assert_eq!(
                tokens.len(),
                1,
                "{label}: one token per release: {tokens:?}"
            );
            let secret = m.get("Secret", "rel-berth-lifecycle");
            let stored = secret["data"]["token"].as_str().expect("token");
            let decoded = String::from_utf8(base64_decode(stored)).expect("utf8");
            assert!(
                tokens.contains(&decoded),
                "{label} {helm:?}: Secret and pods disagree"
            );
            assert!(decoded.len() >= 16);
            // The ConfigMap names the variable, never the value.
            for cm in m.of_kind("ConfigMap") {
                assert!(
                    !cm.to_string().contains(&decoded),
                    "{label}: token in a ConfigMap"
                );
            }
        }
    }
}

#[test]
fn an_explicit_token_is_used_everywhere_and_a_weak_one_fails_naming_the_value() {
    for helm in HELMS {
        let token = "a-fixed-token-for-gitops-0123";
        let m = Render::berth(helm)
            .values(WEB)
            .set(&format!("berth.lifecycle.token={token}"))
            .ok();
        let spec = pod_spec(m.get("Deployment", "rel-web")).expect("spec");
        let main = container(spec, "web").expect("main");
        assert_eq!(
            main["lifecycle"]["preStop"]["httpGet"]["httpHeaders"][0]["value"],
            token
        );
        let secret = m.get("Secret", "rel-berth-lifecycle");
        let decoded = base64_decode(secret["data"]["token"].as_str().expect("token"));
        assert_eq!(decoded, token.as_bytes());
        // Two renders with the same explicit token are identical: no roll.
        let again = Render::berth(helm)
            .values(WEB)
            .set(&format!("berth.lifecycle.token={token}"))
            .ok();
        assert_eq!(m.text, again.text);

        let err = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.berth.lifecycle.token=short")
            .err();
        assert!(err.contains("lifecycle.token"), "{err}");
        assert!(!err.contains("short\""), "the value is not echoed: {err}");
        let err = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.berth.lifecycle.port=8642")
            .err();
        assert!(err.contains("workloads.web.berth.lifecycle.port"), "{err}");
    }
}

#[test]
fn berth_port_stays_off_nodeport_and_loadbalancer_services_unless_asked() {
    for helm in HELMS {
        let ports = |m: &Manifests| -> Vec<String> {
            list(&m.get("Service", "rel-web")["spec"], "ports")
                .into_iter()
                .map(|p| p["name"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let m = Render::berth(helm).values(WEB).ok();
        assert!(
            ports(&m).contains(&"berth".into()),
            "ClusterIP: berth exposed"
        );
        for ty in ["LoadBalancer", "NodePort"] {
            let m = Render::berth(helm)
                .values(WEB)
                .set(&format!("workloads.web.service.type={ty}"))
                .ok();
            assert_eq!(ports(&m), vec!["http".to_string()], "{ty}: {helm:?}");
            let m = Render::berth(helm)
                .values(WEB)
                .set(&format!("workloads.web.service.type={ty}"))
                .set("workloads.web.service.exposeBerth=true")
                .ok();
            assert!(
                ports(&m).contains(&"berth".into()),
                "{ty} + exposeBerth=true"
            );
        }
        let m = Render::berth(helm)
            .values(WEB)
            .set("workloads.web.service.exposeBerth=false")
            .ok();
        assert_eq!(ports(&m), vec!["http".to_string()]);
    }
}

#[test]
fn network_policy_opens_each_port_to_its_own_peers() {
    for helm in HELMS {
        let m = Render::berth(helm)
            .values(WEB)
            .values_yaml(
                "workloads:\n  web:\n    networkPolicy:\n      ingressFrom:\n        - namespaceSelector: {matchLabels: {team: web}}\n      berthFrom:\n        - namespaceSelector: {matchLabels: {name: monitoring}}\n",
            )
            .ok();
        let np = m.get("NetworkPolicy", "rel-web");
        let rules = list(&np["spec"], "ingress");
        let rule_for = |port: Value| {
            rules
                .iter()
                .find(|r| list(r, "ports").iter().any(|p| p["port"] == port))
                .unwrap_or_else(|| panic!("no rule for {port}: {np}"))
        };
        assert_eq!(
            rule_for(Value::from("http"))["from"][0]["namespaceSelector"]["matchLabels"]["team"],
            "web"
        );
        assert_eq!(
            rule_for(Value::from(8642))["from"][0]["namespaceSelector"]["matchLabels"]["name"],
            "monitoring"
        );
        // The app's port public, berth's for nobody but the node.
        let m = Render::berth(helm)
            .values(WEB)
            .values_yaml("workloads:\n  web:\n    networkPolicy:\n      berthFrom: []\n")
            .ok();
        let np = m.get("NetworkPolicy", "rel-web");
        let rules = list(&np["spec"], "ingress");
        assert_eq!(rules.len(), 1, "{np}");
        assert_eq!(rules[0]["ports"][0]["port"], "http");
        assert!(
            rules[0].get("from").is_none(),
            "http open to everyone: {np}"
        );
        // Per container port.
        let m = Render::berth(helm)
            .values(WEB)
            .values_yaml(
                "workloads:\n  web:\n    ports:\n      http:\n        from:\n          - ipBlock: {cidr: 0.0.0.0/0}\n",
            )
            .ok();
        let np = m.get("NetworkPolicy", "rel-web");
        let rules = list(&np["spec"], "ingress");
        let http = rules
            .iter()
            .find(|r| r["ports"][0]["port"] == "http")
            .expect("http rule");
        assert_eq!(http["from"][0]["ipBlock"]["cidr"], "0.0.0.0/0");
    }
}

/// Standard base64 (the Secret's `data`), without a crate for one call.
fn base64_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for b in s.bytes().filter(|b| *b != b'=') {
        let v = alphabet.iter().position(|a| *a == b).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
