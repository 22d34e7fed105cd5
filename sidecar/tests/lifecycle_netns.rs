//! Who may drain, over a real network: berth runs in its own network
//! namespace (the pod) exactly as `charts/berth` renders it (berth.yaml from
//! the ConfigMap, env from the berth container), next to a stand-in main
//! container on the app port. Callers in the root namespace reach it over a
//! veth pair, so berth sees a non-loopback peer, as it would see another
//! pod, a client of a LoadBalancer Service, or kubelet on the node.
//!
//! Every lifecycle path, GET and POST, on every berth port, without the
//! hook's credentials: 403/404/405 and readiness stays 200. Then the main
//! container's rendered preStop hook is replayed exactly (port, path,
//! headers) from the same outside address: it drains.
//!
//! Needs root and iproute2 (`ip netns`), as CI has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::chart::{container, pod_spec, Helm, Render};
use berth_tests::pod::http;
use serde_json::Value;

/// A network namespace with a veth pair to the root namespace; removed on drop.
struct Netns {
    name: String,
    host_veth: String,
    /// The pod's address (inside the namespace).
    pod_ip: String,
    /// The root namespace's end: the "other pod" / node address.
    peer_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id() % 10_000;
        // TEST-NET-2, one /30 per test process: addresses that exist only
        // inside namespaces this test makes.
        let net = (std::process::id() % 64) * 4;
        let n = Netns {
            name: format!("berth-lc-{id}"),
            host_veth: format!("blc{id}h"),
            pod_ip: format!("198.51.100.{}", net + 2),
            peer_ip: format!("198.51.100.{}", net + 1),
        };
        let pod_veth = format!("blc{id}p");
        let _ = Command::new("ip").args(["netns", "del", &n.name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &n.host_veth])
            .output();
        ip(&["netns", "add", &n.name]);
        ip(&[
            "link",
            "add",
            &n.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &pod_veth,
        ]);
        ip(&["link", "set", &pod_veth, "netns", &n.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", n.peer_ip),
            "dev",
            &n.host_veth,
        ]);
        ip(&["link", "set", &n.host_veth, "up"]);
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", n.name.as_str(), "ip"];
            a.extend_from_slice(args);
            ip(&a);
        };
        inside(&["link", "set", "lo", "up"]);
        inside(&["addr", "add", &format!("{}/30", n.pod_ip), "dev", &pod_veth]);
        inside(&["link", "set", &pod_veth, "up"]);
        n
    }

    fn spawn(&self, program: &str, args: &[&str], env: &[(String, String)]) -> Child {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn in netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_status(url: &str, want: u16, timeout: Duration) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = http("GET", url, &[], None).unwrap_or((0, String::new()));
        if got.0 == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serial_lifecycle_refuses_the_network_and_obeys_the_rendered_hook() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test makes network namespaces: run it as root (CI does)"
    );
    // ---- the chart's render: the web scenario, native sidecar.
    let m = Render::berth(Helm::V4)
        .values("charts/berth/ci/web-values.yaml")
        .kube("1.35.0")
        .ok();
    let deploy = m.get("Deployment", "rel-web");
    let spec = pod_spec(deploy).expect("pod spec");
    let main = container(spec, "web").expect("main container");
    let berth = container(spec, "berth").expect("berth container");
    let hook = main["lifecycle"]["preStop"]["httpGet"].clone();
    let cm = m.get("ConfigMap", "rel-web-berth");
    let config = cm["data"]["berth.yaml"].as_str().expect("berth.yaml");
    let env: Vec<(String, String)> = berth["env"]
        .as_array()
        .expect("berth env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect();
    let token = env
        .iter()
        .find(|(k, _)| k == "BERTH_LIFECYCLE_TOKEN")
        .map(|(_, v)| v.clone())
        .expect("the berth container gets the lifecycle token");
    // Every port berth listens on: the declared health port, and the
    // lifecycle port that the hook names (never declared, never on a Service).
    let health_port = berth["ports"][0]["containerPort"].as_u64().expect("port");
    let hook_port = hook["port"].as_u64().expect("hook port is a number");
    assert_ne!(health_port, hook_port);

    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("berth.yaml");
    std::fs::File::create(&cfg_path)
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();

    // ---- the pod: a stand-in main container on the app port, and berth.
    let ns = Netns::new();
    let _app = Killed(ns.spawn(
        "python3",
        &["-m", "http.server", "8080", "--bind", "127.0.0.1"],
        &[],
    ));
    let _berth = Killed(ns.spawn(
        env!("CARGO_BIN_EXE_berth"),
        &["serve", "--config", cfg_path.to_str().unwrap()],
        &env,
    ));
    let base = |port: u64| format!("http://{}:{port}", ns.pod_ip);
    let ready_url = format!("{}/api/v1/health/ready", base(health_port));
    let (code, body) = wait_status(&ready_url, 200, Duration::from_secs(30));
    assert_eq!(code, 200, "berth in the pod never became ready: {body}");

    // ---- everyone without the hook's credentials is refused.
    let wrong = "X".repeat(token.len());
    let bearer = format!("Bearer {token}");
    let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no credentials", vec![]),
        (
            "a wrong token",
            vec![("berth-lifecycle-token", wrong.as_str())],
        ),
        (
            "the token as a bearer",
            vec![("authorization", bearer.as_str())],
        ),
        (
            "a spoofed forwarded-for",
            vec![("x-forwarded-for", "127.0.0.1"), ("x-real-ip", "127.0.0.1")],
        ),
    ];
    for port in [health_port, hook_port] {
        for path in ["/api/v1/lifecycle/prestop", "/api/v1/lifecycle/shutdown"] {
            for method in ["GET", "POST"] {
                for (label, headers) in &attempts {
                    let url = format!("{}{path}", base(port));
                    let (code, body) = http(method, &url, headers, None)
                        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
                    assert!(
                        (403..=405).contains(&code),
                        "{method} {url} with {label} answered {code}: {body}"
                    );
                    assert!(!body.contains(&token), "the token was echoed");
                    let (ready, rbody) = http("GET", &ready_url, &[], None).unwrap();
                    assert_eq!(
                        ready, 200,
                        "{method} {url} with {label} changed readiness: {rbody}"
                    );
                }
            }
        }
    }
    // The token does not unlock shutdown either: berth is still serving.
    let (code, _) = http(
        "POST",
        &format!("{}/api/v1/lifecycle/shutdown", base(hook_port)),
        &[("berth-lifecycle-token", token.as_str())],
        None,
    )
    .unwrap();
    assert_eq!(code, 403);
    assert_eq!(http("GET", &ready_url, &[], None).unwrap().0, 200);

    // ---- kubelet's hook, replayed exactly as rendered, from the node.
    let path = hook["path"].as_str().expect("hook path");
    let headers: Vec<(String, String)> = hook["httpHeaders"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h["name"].as_str().unwrap().to_string(),
                        h["value"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(hook["scheme"], Value::from("HTTP"));
    let hook_url = format!("{}{path}", base(hook_port));
    let replay = std::thread::spawn(move || {
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http("GET", &hook_url, &refs, None)
    });
    // Unready at once (the drain's first step), long before prestop returns.
    let (code, body) = wait_status(&ready_url, 503, Duration::from_secs(2));
    assert_eq!(
        code, 503,
        "readiness did not drop when the hook called: {body}"
    );
    let (code, body) = replay.join().unwrap().expect("hook call");
    assert_eq!(code, 200, "{body}");
    let report: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["status"], "drained", "{body}");
    // /live never depends on the drain.
    let (live, _) = http(
        "GET",
        &format!("{}/api/v1/health/live", base(health_port)),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(live, 200);
}
