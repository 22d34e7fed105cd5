//! charts/berth `injector.enabled`: the injector Deployment, Service, PDB,
//! RBAC and MutatingWebhookConfiguration (failurePolicy: Ignore, namespace
//! and pod opt-in), TLS from a chart-generated CA or cert-manager. helm 3
//! and helm 4.

use std::process::Command;

use berth_tests::chart::{pod_spec, Manifests, Render, HELMS};
use serde_json::Value;

fn enabled(helm: berth_tests::chart::Helm) -> Render {
    Render::berth(helm).set("injector.enabled=true")
}

fn b64d(s: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$0\" | base64 -d", s])
        .output()
        .expect("base64");
    assert!(out.status.success());
    out.stdout
}

#[test]
fn off_by_default() {
    for helm in HELMS {
        let m = Render::berth(helm).ok();
        assert!(
            m.of_kind("MutatingWebhookConfiguration").is_empty(),
            "{helm:?}"
        );
        assert!(m.find("Deployment", "rel-injector").is_none(), "{helm:?}");
    }
}

#[test]
fn webhooks_never_block_a_pod_and_select_opted_in_pods() {
    for helm in HELMS {
        let m = enabled(helm).ok();
        let mwc = m.get("MutatingWebhookConfiguration", "ns-rel-injector");
        let hooks = mwc["webhooks"].as_array().expect("webhooks");
        assert_eq!(hooks.len(), 2, "{helm:?}");
        for h in hooks {
            assert_eq!(h["failurePolicy"], "Ignore", "{helm:?} {}", h["name"]);
            assert_eq!(h["sideEffects"], "None");
            assert_eq!(h["admissionReviewVersions"], serde_json::json!(["v1"]));
            assert_eq!(h["rules"][0]["resources"], serde_json::json!(["pods"]));
            assert_eq!(h["rules"][0]["operations"], serde_json::json!(["CREATE"]));
            assert_eq!(h["clientConfig"]["service"]["name"], "rel-injector");
            assert_eq!(h["clientConfig"]["service"]["namespace"], "ns");
            let exprs = h["namespaceSelector"]["matchExpressions"]
                .as_array()
                .expect("exprs");
            assert!(
                exprs
                    .iter()
                    .any(|e| e["key"] == "kubernetes.io/metadata.name"
                        && e["operator"] == "NotIn"
                        && e["values"] == serde_json::json!(["ns"])),
                "the injector's own namespace is never injected"
            );
        }
        let ns = &hooks[0];
        assert_eq!(ns["clientConfig"]["service"]["path"], "/mutate/namespace");
        assert_eq!(
            ns["namespaceSelector"]["matchExpressions"][0]["key"],
            "berth.dev/inject"
        );
        assert_eq!(
            ns["namespaceSelector"]["matchExpressions"][0]["operator"],
            "In"
        );
        let pod = &hooks[1];
        assert_eq!(pod["clientConfig"]["service"]["path"], "/mutate");
        assert_eq!(
            pod["objectSelector"]["matchExpressions"][0]["operator"],
            "In"
        );
        assert_eq!(
            pod["namespaceSelector"]["matchExpressions"][0]["operator"],
            "NotIn"
        );
    }
}

#[test]
fn generated_ca_signs_the_serving_certificate() {
    for helm in HELMS {
        let m = enabled(helm).ok();
        let secret = m.get("Secret", "rel-injector-tls");
        let mwc = m.get("MutatingWebhookConfiguration", "ns-rel-injector");
        let ca_bundle = b64d(
            mwc["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .expect("caBundle"),
        );
        assert_eq!(
            ca_bundle,
            b64d(secret["data"]["ca.crt"].as_str().expect("ca.crt"))
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), &ca_bundle).expect("write");
        std::fs::write(
            dir.path().join("tls.pem"),
            b64d(secret["data"]["tls.crt"].as_str().expect("tls.crt")),
        )
        .expect("write");
        let out = Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "ca.pem",
                "-verify_hostname",
                "rel-injector.ns.svc",
                "tls.pem",
            ])
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{helm:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn cert_manager_certificate_and_ca_injection() {
    for helm in HELMS {
        let m = enabled(helm).set("injector.tls.certManager=true").ok();
        assert!(m.find("Secret", "rel-injector-tls").is_none());
        let cert = m.get("Certificate", "rel-injector");
        assert_eq!(cert["spec"]["secretName"], "rel-injector-tls");
        assert_eq!(cert["spec"]["issuerRef"]["name"], "rel-injector");
        assert!(cert["spec"]["dnsNames"]
            .as_array()
            .expect("dns")
            .iter()
            .any(|d| d == "rel-injector.ns.svc"));
        assert!(
            m.find("Issuer", "rel-injector").is_some(),
            "a self-signed Issuer by default"
        );
        let mwc = m.get("MutatingWebhookConfiguration", "ns-rel-injector");
        assert_eq!(
            mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "ns/rel-injector"
        );
        assert!(mwc["webhooks"][0]["clientConfig"]["caBundle"].is_null());
        // A user's issuer: no chart Issuer.
        let m = enabled(helm)
            .set("injector.tls.certManager=true")
            .set("injector.tls.issuerRef.name=corp-ca")
            .set("injector.tls.issuerRef.kind=ClusterIssuer")
            .ok();
        assert!(m.find("Issuer", "rel-injector").is_none());
        assert_eq!(
            m.get("Certificate", "rel-injector")["spec"]["issuerRef"]["kind"],
            "ClusterIssuer"
        );
    }
}

#[test]
fn injector_deployment_has_probes_pdb_and_restricted_security() {
    for helm in HELMS {
        for (kube, want) in [("1.28.0", "1.28"), ("1.35.0", "1.35")] {
            let m = enabled(helm).kube(kube).ok();
            let d = m.get("Deployment", "rel-injector");
            let spec = pod_spec(d).expect("spec");
            let c = &spec["containers"][0];
            let args: Vec<&str> = c["args"]
                .as_array()
                .expect("args")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(args[0], "injector");
            let kv = args
                .iter()
                .position(|a| *a == "--kube-version")
                .expect("--kube-version");
            assert_eq!(args[kv + 1], want, "{helm:?} {kube}");
            for p in ["startupProbe", "livenessProbe", "readinessProbe"] {
                assert_eq!(c[p]["httpGet"]["scheme"], "HTTPS", "{p}");
                assert_eq!(c[p]["httpGet"]["port"], "webhook", "{p}");
            }
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(
                c["securityContext"]["capabilities"]["drop"],
                serde_json::json!(["ALL"])
            );
            assert_eq!(spec["automountServiceAccountToken"], false);
            let pdb = m.get("PodDisruptionBudget", "rel-injector");
            assert_eq!(pdb["spec"]["maxUnavailable"], 1);
            assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
            let svc = m.get("Service", "rel-injector");
            assert_eq!(svc["spec"]["ports"][0]["port"], 443);
            let role = m.get("ClusterRole", "ns-rel-injector");
            assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["get"]));
        }
        let one = enabled(helm).set("injector.replicas=1").ok();
        assert!(
            one.find("PodDisruptionBudget", "rel-injector").is_none(),
            "a PDB on one replica would block drains"
        );
    }
}

#[test]
fn injector_render_is_valid_kubernetes() {
    for kube in ["1.28", "1.35"] {
        let m: Manifests = enabled(berth_tests::chart::Helm::V4)
            .kube(&format!("{kube}.0"))
            .ok();
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("render.yaml");
        std::fs::write(&f, &m.text).expect("write");
        let out = Command::new(berth_tests::tools::tool("kubernetes-validate"))
            .args(["--strict", "-k", &format!("{kube}.0")])
            .arg(&f)
            .output()
            .expect("kubernetes-validate");
        assert!(
            out.status.success(),
            "{kube}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bad = Render::berth(berth_tests::chart::Helm::V4)
        .set("injector.enabled=true")
        .set("injector.replicas=0")
        .err();
    assert!(bad.contains("replicas"), "{bad}");
}
