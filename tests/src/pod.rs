//! Helpers for pod tests: the chart rendered with helm, its pods run by
//! podman under the mini-kubelet (`tests/pods/kubelet.py`), a PostgreSQL the
//! pods can reach, and what the host can see of a container (its `/proc`).
//!
//! Why a mini-kubelet: podman 4.3 has no probes, no preStop, no native
//! sidecars and no grace periods (tests/pods/README.md). The pod tests still
//! want to run exactly what `helm template` renders, so a small Python
//! program reads the render and drives podman the way kubelet drives a
//! container runtime; the tests talk to it over a local JSON control API.
//!
//! Everything a test creates in podman's (machine-wide) storage carries a
//! `berth-t-<random>` prefix and is removed on `Drop`.

use crate::{tools, Postgres};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image tag the chart's defaults point at (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `ghcr.io/berth-dev/berth:<version>`, built by `scripts/build-images.sh`.
pub fn berth_image() -> String {
    format!("ghcr.io/berth-dev/berth:{VERSION}")
}

/// `ghcr.io/berth-dev/jobqueue:<version>`, built by `scripts/build-images.sh`.
pub fn jobqueue_image() -> String {
    format!("ghcr.io/berth-dev/jobqueue:{VERSION}")
}

/// A `podman` command with the machine's working runtime configuration
/// (`CONTAINERS_CONF` from `tools/setup.sh`: runc + ulimits).
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        cmd.env(
            "CONTAINERS_CONF",
            tools::tools_dir().join("etc/containers.conf"),
        );
    }
    cmd
}

/// Runs podman and returns stdout; panics with stderr when it fails.
pub fn podman_out(args: &[&str]) -> String {
    let out = podman().args(args).output().expect("run podman");
    assert!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the pod tests can run here: podman, catatonit (pod infra) and
/// both images. When something is missing: under `CI=true` this panics with
/// what to run; otherwise it prints a note and returns `false` (skip).
pub fn pod_environment_ready() -> bool {
    let mut missing = Vec::new();
    match podman().arg("--version").output() {
        Ok(o) if o.status.success() => {
            for image in [berth_image(), jobqueue_image()] {
                let ok = podman()
                    .args(["image", "exists", &image])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if !ok {
                    missing.push(format!("image {image} (run scripts/build-images.sh)"));
                }
            }
            if Command::new("catatonit").arg("--version").output().is_err() {
                missing.push("catatonit, podman's pod infra (run tools/setup.sh)".into());
            }
        }
        _ => missing.push("podman (run tools/setup.sh)".into()),
    }
    if !tools::tools_dir().join("venv/bin/python").exists() {
        missing.push("the tools venv with PyYAML (run tools/setup.sh)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("pod tests need: {}", missing.join("; "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg} (CI=true: pod tests must run)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// A name prefix no other test run uses: `berth-t-<12 hex>`.
pub fn random_prefix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("berth-t-{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// The gateway of podman's default bridge: the host as the pods see it.
pub fn bridge_gateway() -> String {
    let gw = podman_out(&[
        "network",
        "inspect",
        "podman",
        "--format",
        "{{range .Subnets}}{{.Gateway}}{{end}}",
    ]);
    if gw.is_empty() {
        "10.88.0.1".into()
    } else {
        gw
    }
}

/// A private PostgreSQL (the test kit's) that pods on the podman bridge can
/// reach: it listens on every address and accepts scram logins from the
/// bridge subnet. There is no PostgreSQL image (no pulls), so the database
/// runs on the host, as an external database would.
pub struct BridgePostgres {
    pub pg: Postgres,
    /// The host address pods connect to (the bridge gateway).
    pub gateway: String,
}

impl BridgePostgres {
    pub fn start() -> BridgePostgres {
        let pg = Postgres::start();
        let hba = pg.psql("postgres", "SHOW hba_file");
        let mut text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        text.push_str("\nhost all all 10.0.0.0/8 scram-sha-256\n");
        std::fs::write(&hba, text).expect("write pg_hba.conf");
        pg.psql("postgres", "ALTER SYSTEM SET listen_addresses = '*'");
        pg.restart();
        BridgePostgres {
            pg,
            gateway: bridge_gateway(),
        }
    }

    /// `postgresql://postgres:<pw>@<host>:<port>/<db>`; `host` is a name the
    /// pods resolve through /etc/hosts (see [`KubeletOptions::add_hosts`]).
    pub fn url_via(&self, host: &str, db: &str) -> String {
        format!(
            "postgresql://postgres:{}@{}:{}/{}",
            self.pg.password, host, self.pg.port, db
        )
    }
}

/// `helm template <release> charts/berth -f <values>... <args>...` with
/// helm 3 at a Kubernetes version (1.29+ renders native sidecars). `args`
/// are extra helm arguments such as `--set`/`--set-string` pairs.
pub fn render_chart(
    release: &str,
    values: &[PathBuf],
    args: &[String],
    kube_version: &str,
) -> String {
    let root = crate::workspace_root();
    let mut cmd = Command::new(tools::tool("helm3"));
    cmd.args(["template", release])
        .arg(root.join("charts/berth"))
        .args(["--kube-version", kube_version]);
    for v in values {
        cmd.arg("-f").arg(v);
    }
    cmd.args(args);
    let out = cmd.output().expect("run helm3 template");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("render is UTF-8")
}

/// Every document of a render, parsed.
pub fn parse_render(render: &str) -> Vec<serde_yaml::Value> {
    // helm separates documents with a line `---`.
    format!("\n{render}")
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
        .filter(|d| d.get("kind").is_some())
        .collect()
}

/// Options of one mini-kubelet run.
#[derive(Default, Clone)]
pub struct KubeletOptions {
    /// `WORKLOAD=N` replica overrides (HPA-managed workloads otherwise get minReplicas).
    pub scale: Vec<(String, u32)>,
    /// `/etc/hosts` entries in every pod (`name`, `ip`): what cluster DNS would resolve.
    pub add_hosts: Vec<(String, String)>,
    /// `WORKLOAD:PORT=BASE`: replica i's container port on 127.0.0.1:BASE+i.
    pub publish: Vec<String>,
    /// Workloads not to run.
    pub skip: Vec<String>,
}

/// The mini-kubelet running one render's pods. Dropping it terminates every
/// pod (gracefully, then by force) and removes what the prefix created.
pub struct Kubelet {
    pub prefix: String,
    pub dir: tempfile::TempDir,
    control: String,
    child: Option<Child>,
}

impl Kubelet {
    pub fn start(prefix: &str, render: &str, opts: &KubeletOptions) -> Kubelet {
        let dir = tempfile::Builder::new()
            .prefix("berth-kubelet-")
            .tempdir()
            .expect("tempdir");
        let manifests = dir.path().join("render.yaml");
        std::fs::write(&manifests, render).expect("write render");
        let control_file = dir.path().join("control");
        let log = std::fs::File::create(dir.path().join("kubelet.log")).expect("kubelet.log");
        let script = crate::workspace_root().join("tests/pods/kubelet.py");
        let mut cmd = Command::new(tools::tools_dir().join("venv/bin/python"));
        cmd.arg(script)
            .arg("serve")
            .arg("--manifests")
            .arg(&manifests)
            .args(["--prefix", prefix])
            .arg("--control-file")
            .arg(&control_file)
            .arg("--logs-dir")
            .arg(dir.path().join("logs"))
            .args(["--parent-pid", &std::process::id().to_string()]);
        for (w, n) in &opts.scale {
            cmd.args(["--scale", &format!("{w}={n}")]);
        }
        for (h, ip) in &opts.add_hosts {
            cmd.args(["--add-host", &format!("{h}:{ip}")]);
        }
        for p in &opts.publish {
            cmd.args(["--publish", p]);
        }
        for s in &opts.skip {
            cmd.args(["--skip", s]);
        }
        if std::env::var_os("CONTAINERS_CONF").is_none() {
            cmd.env(
                "CONTAINERS_CONF",
                tools::tools_dir().join("etc/containers.conf"),
            );
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tests/pods/kubelet.py");
        let mut k = Kubelet {
            prefix: prefix.to_string(),
            dir,
            control: String::new(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(addr) = std::fs::read_to_string(&control_file) {
                k.control = addr.trim().to_string();
                return k;
            }
            if let Some(Ok(Some(status))) = k.child.as_mut().map(|c| c.try_wait()) {
                panic!("kubelet.py exited with {status}:\n{}", k.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("kubelet.py did not start:\n{}", k.log());
    }

    /// The kubelet's own log (events, probe transitions, terminations).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubelet.log")).unwrap_or_default()
    }

    /// The kubelet log plus the tail of every container log saved so far
    /// and of every running container: for assertion messages.
    pub fn diagnostics(&self) -> String {
        let mut out = format!("---- kubelet log\n{}", self.log());
        if let Ok(status) = self.try_status() {
            for pod in status["pods"].as_array().into_iter().flatten() {
                for c in pod["containers"].as_array().into_iter().flatten() {
                    let name = c["podman_name"].as_str().unwrap_or_default();
                    let logs = podman()
                        .args(["logs", "--tail", "25", name])
                        .output()
                        .map(|o| {
                            String::from_utf8_lossy(&o.stdout).to_string()
                                + &String::from_utf8_lossy(&o.stderr)
                        })
                        .unwrap_or_default();
                    if !logs.trim().is_empty() {
                        out.push_str(&format!("---- {name} (last 25 lines)\n{logs}"));
                    }
                }
            }
        }
        out
    }

    fn try_status(&self) -> std::io::Result<Value> {
        let (code, body) = http("GET", &format!("http://{}/status", self.control), &[], None)?;
        if code != 200 {
            return Err(std::io::Error::other(format!("status {code}")));
        }
        serde_json::from_str(&body).map_err(std::io::Error::other)
    }

    /// The kubelet's view: pods, containers, probe states, events.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("kubelet status: {e}\n{}", self.log()))
    }

    /// The pods of one workload (rendered name, e.g. `jq-api`), by replica index.
    pub fn pods_of(&self, workload: &str) -> Vec<Value> {
        let mut pods: Vec<Value> = self.status()["pods"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["workload"] == workload)
            .collect();
        pods.sort_by_key(|p| p["index"].as_u64());
        pods
    }

    /// Polls `check` against the status until it returns `Some`, or panics
    /// after `timeout` with the diagnostics.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if let Some(err) = status["error"].as_str() {
                panic!("kubelet error: {err}\n{}", self.diagnostics());
            }
            if let Some(v) = check(&status) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until every hook Job ran and every pod of `workloads` is Ready.
    pub fn wait_all_ready(&self, workloads: &[&str], timeout: Duration) -> Value {
        self.wait_for("every pod Ready", timeout, |s| {
            let pods = s["pods"].as_array()?;
            let all = workloads.iter().all(|w| {
                let of: Vec<_> = pods
                    .iter()
                    .filter(|p| p["workload"] == *w && p["phase"] != "Terminated")
                    .collect();
                !of.is_empty() && of.iter().all(|p| p["ready"] == true)
            });
            (all && s["hooks_done"] == true).then(|| s.clone())
        })
    }

    /// Graceful deletion as `kubectl delete pod`: preStop, SIGTERM, grace.
    pub fn delete_pod(&self, pod: &str) {
        let (code, body) = http(
            "POST",
            &format!("http://{}/pods/{pod}/delete", self.control),
            &[],
            None,
        )
        .expect("kubelet delete");
        assert_eq!(code, 202, "delete {pod}: {body}");
    }

    /// Stops every pod gracefully and waits for the kubelet to exit.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = http(
            "POST",
            &format!("http://{}/shutdown", self.control),
            &[],
            None,
        );
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = child.kill();
        let _ = child.wait();
        // Whatever is left (a kubelet that died half-way): by label.
        let _ = Command::new(tools::tools_dir().join("venv/bin/python"))
            .arg(crate::workspace_root().join("tests/pods/kubelet.py"))
            .args(["down", "--prefix", &self.prefix])
            .env(
                "CONTAINERS_CONF",
                std::env::var_os("CONTAINERS_CONF")
                    .unwrap_or_else(|| tools::tools_dir().join("etc/containers.conf").into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
/// Enough for JSON APIs and health endpoints, with no client crate.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP header in {text:?}")))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((code, if chunked { dechunk(rest) } else { rest.into() }))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// What the kernel says about a container's main process, read from the
/// host (`/proc/<host pid>`): the images have no shell to ask from inside.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSecurity {
    /// real, effective, saved, filesystem
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub no_new_privs: bool,
    /// mount options of `/` in the process's mount namespace contain `ro`
    pub root_read_only: bool,
    /// `/proc/<pid>/ns/pid` link target (equal across containers = shared PID namespace)
    pub pid_ns: String,
}

pub fn proc_security(host_pid: u64) -> ProcSecurity {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{host_pid}/status: {e}"));
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let ids = |name: &str| -> Vec<u32> {
        field(name)
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{host_pid}/mountinfo")).expect("read mountinfo");
    // mountinfo: id parent major:minor root mountpoint options ...
    let root_read_only = mountinfo
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .rfind(|f| f.len() > 5 && f[4] == "/")
        .map(|f| f[5].split(',').any(|o| o == "ro"))
        .unwrap_or(false);
    ProcSecurity {
        uids: ids("Uid:"),
        gids: ids("Gid:"),
        cap_eff: u64::from_str_radix(&field("CapEff:"), 16).unwrap_or(u64::MAX),
        cap_bnd: u64::from_str_radix(&field("CapBnd:"), 16).unwrap_or(u64::MAX),
        no_new_privs: field("NoNewPrivs:") == "1",
        root_read_only,
        pid_ns: std::fs::read_link(format!("/proc/{host_pid}/ns/pid"))
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    }
}

/// The environment of a process, read from the host.
pub fn proc_environ(host_pid: u64) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{host_pid}/environ")).expect("read environ");
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// `podman inspect <container>` as JSON (the first element).
pub fn inspect(container: &str) -> Value {
    let out = podman_out(&["inspect", container]);
    let v: Value = serde_json::from_str(&out).expect("podman inspect JSON");
    v[0].clone()
}

/// Path of a file in the repository.
pub fn repo_path(rel: impl AsRef<Path>) -> PathBuf {
    crate::workspace_root().join(rel)
}
