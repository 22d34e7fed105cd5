//! `berth injector` over real HTTPS (a throwaway CA): AdmissionReview v1
//! in, `allowed: true` and a JSONPatch out; the patched pod equals `berth
//! inject`'s; opted-out, malformed and oversized reviews are admitted
//! without a patch and the server keeps answering.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_tests::{free_port, wait_for_port, TestCa};
use serde_json::{json, Value};

struct Injector {
    child: Child,
    port: u16,
    ca: TestCa,
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(kube: &str, api: Option<u16>) -> Injector {
    let ca = TestCa::new();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args([
        "injector",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--kube-version",
        kube,
    ])
    .arg("--tls-cert")
    .arg(&ca.server_cert)
    .arg("--tls-key")
    .arg(&ca.server_key)
    .env("BERTH_LOG_FORMAT", "text")
    .env_remove("KUBERNETES_SERVICE_HOST")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(p) = api {
        cmd.args(["--kube-api", &format!("http://127.0.0.1:{p}")]);
    }
    let child = cmd.spawn().expect("spawn berth injector");
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "injector listens"
    );
    Injector { child, port, ca }
}

/// POST over HTTPS with curl (verifying the server against the test CA):
/// (status, body).
fn post(inj: &Injector, path: &str, body: &[u8]) -> (u16, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("write body");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-H",
            "Content-Type: application/json",
            "--cacert",
        ])
        .arg(&inj.ca.ca_cert)
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{}{path}", inj.port))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn review(pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": false
        }
    })
}

fn pod(labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-7d9f", "namespace": "shop", "labels": labels, "annotations": annotations},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "example/web:1.0",
                "ports": [{"containerPort": 8080}],
                "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]
            }],
            "restartPolicy": "Always"
        }
    })
}

/// The answer: (allowed, decoded patch if any).
fn answer(body: &str) -> (bool, Option<Value>) {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("answer is JSON ({e}): {body}"));
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    let r = &v["response"];
    let patch = r["patch"].as_str().map(|p| {
        assert_eq!(r["patchType"], "JSONPatch");
        let out = Command::new("base64")
            .arg("-d")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(p.as_bytes())?;
                c.wait_with_output()
            })
            .expect("base64 -d");
        serde_json::from_slice(&out.stdout).expect("patch is JSON")
    });
    (r["allowed"] == true, patch)
}

/// RFC 6902 add/remove, the two operations the injector uses.
fn apply(doc: &Value, patch: &Value) -> Value {
    let mut doc = doc.clone();
    for op in patch.as_array().expect("patch is a list") {
        let path = op["path"].as_str().expect("path");
        let (parent, key) = path.rsplit_once('/').expect("a /path");
        let key = key.replace("~1", "/").replace("~0", "~");
        let target = doc
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("parent object");
        match op["op"].as_str() {
            Some("add") => {
                target.insert(key, op["value"].clone());
            }
            Some("remove") => {
                assert!(target.remove(&key).is_some(), "remove of a missing {path}");
            }
            other => panic!("unexpected op {other:?}"),
        }
    }
    doc
}

/// `berth inject` of the same pod, with the token the injector chose.
fn inject_cli(pod: &Value, kube: &str, token: &str, config: Option<&str>) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args([
        "inject",
        "--kube-version",
        kube,
        "--lifecycle-token",
        token,
        "-",
    ]);
    if let Some(c) = config {
        let f = dir.path().join("berth.yaml");
        std::fs::write(&f, c).expect("write");
        cmd.arg("--config").arg(f);
    }
    let mut child = cmd
        .env_remove("BERTH_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("berth inject");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(pod).expect("json").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("berth inject");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    let docs: Vec<Value> = text
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml_ng::from_str(d).expect("YAML"))
        .collect();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("ConfigMap")
        .clone();
    let mut pod = docs.into_iter().find(|d| d["kind"] == "Pod").expect("Pod");
    // What differs by design: the injector cannot create the ConfigMap, so
    // the same berth.yaml comes from the pod's annotation.
    pod["metadata"]["annotations"]["berth.dev/berth.yaml"] = cm["data"]["berth.yaml"].clone();
    for v in pod["spec"]["volumes"].as_array_mut().expect("volumes") {
        if v["name"] == "berth-config" {
            v["projected"]["sources"] = json!([{"downwardAPI": {"items": [{
                "path": "berth.yaml",
                "fieldRef": {"fieldPath": "metadata.annotations['berth.dev/berth.yaml']"}
            }]}}]);
        }
    }
    pod
}

fn token_of(pod: &Value) -> String {
    let spec = &pod["spec"];
    for f in ["initContainers", "containers"] {
        for c in spec[f].as_array().into_iter().flatten() {
            if c["name"] == "berth" {
                for e in c["env"].as_array().into_iter().flatten() {
                    if e["name"] == "BERTH_LIFECYCLE_TOKEN" {
                        return e["value"].as_str().expect("token").to_string();
                    }
                }
            }
        }
    }
    panic!("no berth container in {pod}");
}

#[test]
fn opted_in_pod_gets_the_patch_berth_inject_would_apply() {
    for kube in ["1.35", "1.28"] {
        let inj = start(kube, None);
        let p = pod(
            json!({"app": "web", "berth.dev/inject": "enabled"}),
            json!({}),
        );
        let (code, body) = post(
            &inj,
            "/mutate",
            serde_json::to_string(&review(&p)).expect("json").as_bytes(),
        );
        assert_eq!(code, 200, "{body}");
        let (allowed, patch) = answer(&body);
        assert!(allowed);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        let patched = apply(&p, &patch.expect("a patch"));
        let want = inject_cli(&p, kube, &token_of(&patched), None);
        assert_eq!(
            serde_json::to_string_pretty(&patched).expect("json"),
            serde_json::to_string_pretty(&want).expect("json"),
            "{kube}: the injector's pod equals berth inject's"
        );
    }
}

#[test]
fn namespace_scope_injects_unless_the_pod_opts_out() {
    let inj = start("1.35", None);
    let plain = pod(json!({"app": "web"}), json!({}));
    let (_, body) = post(
        &inj,
        "/mutate/namespace",
        serde_json::to_string(&review(&plain))
            .expect("json")
            .as_bytes(),
    );
    assert!(answer(&body).1.is_some(), "the namespace opted in: {body}");
    let out = pod(
        json!({"app": "web"}),
        json!({"berth.dev/inject": "disabled"}),
    );
    let (_, body) = post(
        &inj,
        "/mutate/namespace",
        serde_json::to_string(&review(&out))
            .expect("json")
            .as_bytes(),
    );
    assert_eq!(answer(&body), (true, None));
}

#[test]
fn opted_out_and_malformed_reviews_are_allowed_without_a_patch() {
    let inj = start("1.35", None);
    let plain = pod(json!({"app": "web"}), json!({}));
    let (code, body) = post(
        &inj,
        "/mutate",
        serde_json::to_string(&review(&plain))
            .expect("json")
            .as_bytes(),
    );
    assert_eq!((code, answer(&body)), (200, (true, None)), "not opted in");
    let broken = [
        b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"Admission".to_vec(),
        b"not json at all".to_vec(),
        b"[]".to_vec(),
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).expect("json"),
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u1", "kind": {"kind": "Pod"}, "operation": "CREATE",
            "object": {"metadata": {"labels": {"berth.dev/inject": "enabled"}}, "spec": {"containers": "nope"}}}})).expect("json"),
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u2", "kind": {"kind": "Pod"}, "operation": "CREATE",
            "object": {"metadata": {"labels": {"berth.dev/inject": "enabled"}}, "spec": {"containers": []}}}})).expect("json"),
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u3", "kind": {"kind": "Deployment"}, "operation": "CREATE", "object": {}}})).expect("json"),
    ];
    for b in broken {
        let (code, body) = post(&inj, "/mutate", &b);
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            answer(&body),
            (true, None),
            "{}",
            String::from_utf8_lossy(&b)
        );
    }
}

#[test]
fn pods_that_already_run_berth_are_left_alone() {
    let inj = start("1.35", None);
    let p = pod(json!({"berth.dev/inject": "enabled"}), json!({}));
    // A pod from a template `berth inject` edited, and one the chart rendered.
    let injected = inject_cli(&p, "1.35", "already-injected-token-0123", None);
    let mut chart_like = p.clone();
    chart_like["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "berth", "image": "ghcr.io/berth-dev/berth:0.1.0"}));
    for pod in [injected, chart_like] {
        let (_, body) = post(
            &inj,
            "/mutate",
            serde_json::to_string(&review(&pod))
                .expect("json")
                .as_bytes(),
        );
        assert_eq!(answer(&body), (true, None));
    }
}

#[test]
fn a_10_mb_body_does_not_crash_it() {
    let inj = start("1.35", None);
    let big = vec![b'{'; 10 * 1024 * 1024];
    let (code, body) = post(&inj, "/mutate", &big);
    // 413 once the limit is read; curl may instead see the connection
    // closed while it still sends (0, or 100 after "100 Continue"). What
    // matters: never a patch, and the server keeps answering.
    assert!(
        matches!(code, 0 | 100 | 413) || (code == 200 && answer(&body) == (true, None)),
        "{code} {body}"
    );
    let p = pod(json!({"berth.dev/inject": "enabled"}), json!({}));
    let (code, body) = post(
        &inj,
        "/mutate",
        serde_json::to_string(&review(&p)).expect("json").as_bytes(),
    );
    assert_eq!(code, 200);
    assert!(
        answer(&body).1.is_some(),
        "still answering after the big body"
    );
}

/// A fake API server that answers every GET with one ConfigMap.
fn fake_api(berth_yaml: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": {"berth.yaml": berth_yaml}}).to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let reply = if head.starts_with("GET /api/v1/namespaces/shop/configmaps/web-config ") {
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{cm}", cm.len())
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                    .to_string()
            };
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

#[test]
fn the_config_map_named_by_annotation_is_used() {
    let config = "checks:\n  - {name: db, type: postgres, url: \"${DATABASE_URL}\"}\n  - {name: app, type: tcp, address: \"127.0.0.1:8080\"}\ndrain: {delay: 2s, timeout: 10s}\n";
    let inj = start("1.35", Some(fake_api(config)));
    let p = pod(
        json!({"berth.dev/inject": "enabled"}),
        json!({"berth.dev/config": "web-config"}),
    );
    let (_, body) = post(
        &inj,
        "/mutate",
        serde_json::to_string(&review(&p)).expect("json").as_bytes(),
    );
    let patched = apply(&p, &answer(&body).1.expect("a patch"));
    let want = inject_cli(&p, "1.35", &token_of(&patched), Some(config));
    assert_eq!(patched, want);
    assert_eq!(patched["spec"]["terminationGracePeriodSeconds"], 17);
    // A ConfigMap that does not exist: admitted unchanged.
    let missing = pod(
        json!({"berth.dev/inject": "enabled"}),
        json!({"berth.dev/config": "nope"}),
    );
    let (_, body) = post(
        &inj,
        "/mutate",
        serde_json::to_string(&review(&missing))
            .expect("json")
            .as_bytes(),
    );
    assert_eq!(answer(&body), (true, None));
}
