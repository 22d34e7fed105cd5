//! berth's `https` and `grpc` checks against real servers on this machine:
//! a Python `ssl` + `http.server` HTTPS server with a throwaway CA (right
//! CA, wrong CA, client certificates, insecureSkipVerify) and the reference
//! gRPC health server (`grpcio-health-checking`, tests/grpc/health_server.py,
//! from the venv `tools/setup.sh` builds). Each is shown up, down and back
//! up, through the real berth binary and its health API. No mocks.
#![allow(clippy::unwrap_used)]

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{check_config, get, Running};

/// Room for a loaded machine on every "within" bound.
const WITHIN: Duration = Duration::from_secs(20);

// ------------------------------------------------------------ helpers

/// name → (status, error) of every check, from the full (loopback) view.
async fn checks(berth: &Running) -> Vec<(String, String, String)> {
    let (_, body) = get(&berth.url("/api/v1/health/")).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    json["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["status"].as_str().unwrap_or("").to_string(),
                        c["error"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until check `name` has status `want` and an error starting with
/// `kind` (any error for `""`); returns the error text.
async fn wait_for(berth: &Running, name: &str, want: &str, kind: &str) -> String {
    let start = Instant::now();
    loop {
        let all = checks(berth).await;
        if let Some((_, status, error)) = all.iter().find(|(n, _, _)| n == name) {
            if status == want && error.starts_with(kind) {
                return error.clone();
            }
        }
        assert!(
            start.elapsed() < WITHIN,
            "check {name} never became {want} {kind}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until check `name` has status `want`; returns its error text.
async fn wait_check(berth: &Running, name: &str, want: &str) -> String {
    wait_for(berth, name, want, "").await
}

/// Waits until check `name` is down with an error of kind `kind`.
async fn wait_down(berth: &Running, name: &str, kind: &str) -> String {
    wait_for(berth, name, "down", kind).await
}

/// A check entry with fast timing: down after one failure.
fn check(name: &str, rest: &str) -> String {
    format!(
        "  - {{name: {name}, critical: false, interval: 500ms, timeout: 400ms, failureThreshold: 1, {rest}}}\n"
    )
}

/// A child process killed (and reaped) on drop.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Server {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_port(port: u16, what: &str) {
    assert!(
        berth_tests::wait_for_port(port, WITHIN),
        "{what} did not listen on {port}"
    );
}

/// Signs a client certificate (clientAuth) with `ca`'s key, next to it.
fn client_cert(ca: &berth_tests::TestCa) -> (PathBuf, PathBuf) {
    let dir = ca.dir();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=berth-client",
    ]);
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.crt",
        "-days",
        "2",
        "-extfile",
        "client.ext",
    ]);
    (dir.join("client.crt"), dir.join("client.key"))
}

// ------------------------------------------------------------ HTTPS server

/// HTTPS on 127.0.0.1:PORT with CERT/KEY; with CLIENT_CA, a client
/// certificate signed by it is required. `/healthz` → 200, `/status/N` → N.
/// Each accepted TLS connection appends a line to ACCEPT_LOG.
const HTTPS_SERVER: &str = r#"
import http.server, socketserver, ssl, sys
port, cert, key, accept_log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
client_ca = sys.argv[5] if len(sys.argv) > 5 else None
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if client_ca:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_ca)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        with open(accept_log, "a") as f:
            f.write("accept\n")
    def do_GET(self):
        code = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
        body = b"ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(10)
        try:
            return ctx.wrap_socket(sock, server_side=True), addr
        except Exception:
            sock.close()
            raise
srv = S(("127.0.0.1", port), H)
srv.serve_forever()
"#;

struct Https {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    accept_log: PathBuf,
    server: Option<Server>,
}

impl Https {
    fn start(ca: &berth_tests::TestCa, require_client_cert: bool, dir: &Path) -> Https {
        let mut https = Https {
            port: berth_tests::free_port(),
            cert: ca.server_cert.clone(),
            key: ca.server_key.clone(),
            client_ca: require_client_cert.then(|| ca.ca_cert.clone()),
            accept_log: dir.join(format!("accepts-{}", berth_tests::free_port())),
            server: None,
        };
        https.restart();
        https
    }

    fn restart(&mut self) {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(HTTPS_SERVER)
            .arg(self.port.to_string())
            .arg(&self.cert)
            .arg(&self.key)
            .arg(&self.accept_log);
        if let Some(ca) = &self.client_ca {
            cmd.arg(ca);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("python3");
        self.server = Some(Server {
            child,
            stdin: None,
            stdout: None,
        });
        wait_port(self.port, "the HTTPS server");
    }

    fn stop(&mut self) {
        self.server = None;
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn accepts(&self) -> usize {
        std::fs::read_to_string(&self.accept_log)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

/// Right CA → up (on one kept connection); wrong CA → `tls_failed` naming
/// the reason; insecureSkipVerify with the wrong CA → up; an unexpected
/// status → `unexpected_status`. Then the server stops (down) and comes
/// back (up again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_right_ca_wrong_ca_insecure_then_down_and_back_up() {
    let ca = berth_tests::TestCa::new();
    let other = berth_tests::TestCa::new();
    let scratch = tempfile::tempdir().unwrap();
    let mut server = Https::start(&ca, false, scratch.path());
    let right = ca.ca_cert.display();
    let wrong = other.ca_cert.display();
    let yaml = format!(
        "checks:\n{}{}{}{}{}",
        check(
            "right",
            &format!(
                "type: https, url: \"{}\", caFile: {right}",
                server.url("/healthz")
            )
        ),
        // A password in the URL must show nowhere.
        check(
            "wrong",
            &format!(
                "type: https, url: \"{}\", caFile: {wrong}",
                server
                    .url("/healthz")
                    .replace("https://", "https://u:hunter2pw@")
            )
        ),
        check(
            "insecure",
            &format!(
                "type: https, url: \"{}\", caFile: {wrong}, insecureSkipVerify: true",
                server.url("/healthz")
            )
        ),
        check(
            "status",
            &format!(
                "type: https, url: \"{}\", caFile: {right}, expectStatus: 200-299",
                server.url("/status/503")
            )
        ),
        check(
            "builtin",
            &format!("type: https, url: \"{}\"", server.url("/healthz"))
        ),
    );
    let berth = Running::start(&yaml);
    wait_check(&berth, "right", "up").await;
    wait_check(&berth, "insecure", "up").await;
    let error = wait_down(&berth, "wrong", "tls_failed").await;
    assert!(error.contains("not signed by a trusted CA"), "{error}");
    // Without caFile the compiled-in public roots do not know a private CA.
    let error = wait_down(&berth, "builtin", "tls_failed").await;
    assert!(error.contains("not signed by a trusted CA"), "{error}");
    let error = wait_down(&berth, "status", "unexpected_status").await;
    assert!(error.contains("503"), "{error}");
    let (_, body) = get(&berth.url("/api/v1/health/")).await;
    assert!(!body.contains("hunter2pw"), "password leaked: {body}");

    // Several runs of `right`, `insecure` and `status` (500ms apart) over
    // kept connections: a handful of TLS accepts, not one per run.
    let before = server.accepts();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = server.accepts() - before;
    // One connection per run would be about 24; a slow run on a loaded
    // machine (a timeout) may cost a reconnect or two.
    assert!(
        during <= 4,
        "{during} new TLS connections in 4s: connections are not kept"
    );

    server.stop();
    let error = wait_check(&berth, "right", "down").await;
    assert!(
        error.starts_with("connection_refused") || error.starts_with("connection_lost"),
        "{error}"
    );
    server.restart();
    wait_check(&berth, "right", "up").await;
    wait_check(&berth, "insecure", "up").await;
    wait_down(&berth, "wrong", "tls_failed").await;
    let log = berth.log();
    assert!(!log.contains("hunter2pw"), "password leaked:\n{log}");
}

/// A server that requires a client certificate: with clientCert/clientKey
/// signed by its CA → up; without → down (the server refuses the
/// handshake); with a certificate from another CA → down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_client_certificate_required() {
    let ca = berth_tests::TestCa::new();
    let other = berth_tests::TestCa::new();
    let (cert, key) = client_cert(&ca);
    let (other_cert, other_key) = client_cert(&other);
    let scratch = tempfile::tempdir().unwrap();
    let server = Https::start(&ca, true, scratch.path());
    let ca_file = ca.ca_cert.display();
    let url = server.url("/healthz");
    let yaml = format!(
        "checks:\n{}{}{}",
        check(
            "mtls",
            &format!(
                "type: https, url: \"{url}\", caFile: {ca_file}, clientCert: {}, clientKey: {}",
                cert.display(),
                key.display()
            )
        ),
        check(
            "nocert",
            &format!("type: https, url: \"{url}\", caFile: {ca_file}")
        ),
        check(
            "othercert",
            &format!(
                "type: https, url: \"{url}\", caFile: {ca_file}, clientCert: {}, clientKey: {}",
                other_cert.display(),
                other_key.display()
            )
        ),
    );
    let berth = Running::start(&yaml);
    wait_check(&berth, "mtls", "up").await;
    let error = wait_down(&berth, "nocert", "tls_failed").await;
    eprintln!("without a client certificate: {error}");
    let error = wait_down(&berth, "othercert", "tls_failed").await;
    eprintln!("with another CA's client certificate: {error}");
    // Still up a while later (kept connection, no flapping).
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_check(&berth, "mtls", "up").await;
}

/// Bad TLS settings are config errors at load: exit 64, one line naming
/// the field, never the URL's password or a `${…}` value.
#[test]
fn https_and_grpc_config_errors_name_the_field() {
    let ca = berth_tests::TestCa::new();
    let (cert, _key) = client_cert(&ca);
    let not_pem = ca.dir().join("client.ext");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "type: https, url: \"https://u:hunter2@h/\", caFile: /nonexistent/ca.pem".into(),
            "checks[0].caFile",
            "/nonexistent/ca.pem",
        ),
        (
            format!(
                "type: https, url: \"https://u:hunter2@h/\", caFile: {}",
                not_pem.display()
            ),
            "checks[0].caFile",
            "no PEM certificate",
        ),
        (
            "type: https, url: \"https://u:hunter2@h/\", caFile: /dev/zero".into(),
            "checks[0].caFile",
            "not a regular file",
        ),
        (
            format!(
                "type: https, url: \"https://u:hunter2@h/\", clientCert: {}",
                cert.display()
            ),
            "checks[0].clientKey",
            "both or neither",
        ),
        (
            format!(
                "type: https, url: \"https://u:hunter2@h/\", clientCert: {}, clientKey: {}",
                cert.display(),
                not_pem.display()
            ),
            "checks[0].clientKey",
            "no PEM private key",
        ),
        (
            "type: https, url: \"http://u:hunter2@h/\"".into(),
            "checks[0].url",
            "https://",
        ),
        (
            "type: https, url: \"https://u:hunter2@h/\", insecureSkipVerify: maybe".into(),
            "checks[0].insecureSkipVerify",
            "true or false",
        ),
        (
            "type: https, url: \"https://u:hunter2@h/\", caFile: \"${CA_PATH}\"".into(),
            "checks[0].caFile",
            "CA_PATH",
        ),
        (
            "type: grpc, address: \"h:50051\", caFile: /etc/ca.pem".into(),
            "checks[0].caFile",
            "needs tls: true",
        ),
        (
            "type: grpc, address: \"hunter2\"".into(),
            "checks[0].address",
            "host:port",
        ),
        (
            "type: grpc, address: \"h:50051\", tls: true, caFile: /nonexistent/ca.pem".into(),
            "checks[0].caFile",
            "/nonexistent/ca.pem",
        ),
        (
            "type: grpc, address: \"h:50051\", authority: \"a b\"".into(),
            "checks[0].authority",
            "host",
        ),
        (
            "type: grpc, address: \"h:50051\", tlss: true".into(),
            "checks[0].tlss",
            "unknown key",
        ),
    ];
    // The path a `${…}` reference expands to must not show.
    let env = [("CA_PATH", "/nonexistent/hunter2-ca.pem")];
    for (rest, field, says) in &cases {
        let out = check_config(&format!("checks:\n  - {{name: d, {rest}}}\n"), &env);
        assert_eq!(out.code, Some(64), "{rest}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {:?}", out.stderr);
        assert!(lines[0].contains(field), "{rest}: {}", lines[0]);
        assert!(lines[0].contains(says), "{rest}: {}", lines[0]);
        assert!(!lines[0].contains("hunter2"), "{}", lines[0]);
    }
    // Valid ones pass.
    let out = check_config(
        &format!(
            "checks:\n  - {{name: a, type: https, url: \"https://h/x\", caFile: {}}}\n  \
             - {{name: b, type: grpc, address: \"h:50051\", service: app}}\n  \
             - {{name: c, type: grpc, address: \"h:50051\", tls: true, authority: h.example}}\n",
            ca.ca_cert.display()
        ),
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

// ------------------------------------------------------------ gRPC server

/// The venv Python with grpcio (tools/setup.sh installs it).
fn grpc_python() -> PathBuf {
    let py = berth_tests::tools::tools_dir().join("venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import grpc, grpc_health.v1.health"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import grpcio/grpcio-health-checking: run tools/setup.sh",
        py.display()
    );
    py
}

struct GrpcHealth {
    port: u16,
    args: Vec<String>,
    server: Option<Server>,
}

impl GrpcHealth {
    fn start(args: &[String]) -> GrpcHealth {
        let mut g = GrpcHealth {
            port: berth_tests::free_port(),
            args: args.to_vec(),
            server: None,
        };
        g.restart();
        g
    }

    fn restart(&mut self) {
        let script = berth_tests::workspace_root().join("tests/grpc/health_server.py");
        let mut child = Command::new(grpc_python())
            .arg(script)
            .arg(self.port.to_string())
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the gRPC health server");
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().map(BufReader::new);
        let mut line = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_line(&mut line);
        }
        assert!(line.starts_with("listening"), "gRPC server: {line:?}");
        self.server = Some(Server {
            child,
            stdin,
            stdout,
        });
        wait_port(self.port, "the gRPC server");
    }

    /// Sets `service`'s status (`-` = the overall service).
    fn set(&mut self, service: &str, status: &str) {
        let server = self.server.as_mut().expect("running");
        let stdin = server.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{service} {status}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        server
            .stdout
            .as_mut()
            .expect("stdout")
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ok");
    }

    fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// SERVING → up; NOT_SERVING → down `not_serving`; back to SERVING → up; a
/// service the server does not know → down `service_unknown`; the server
/// killed → down; restarted → up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_serving_not_serving_unknown_killed_restarted() {
    let mut server = GrpcHealth::start(&[]);
    let addr = server.address();
    let yaml = format!(
        "checks:\n{}{}{}",
        check("overall", &format!("type: grpc, address: \"{addr}\"")),
        check(
            "app",
            &format!("type: grpc, address: \"{addr}\", service: app")
        ),
        check(
            "nosuch",
            &format!("type: grpc, address: \"{addr}\", service: nosuch")
        ),
    );
    let berth = Running::start(&yaml);
    wait_check(&berth, "overall", "up").await;
    wait_check(&berth, "app", "up").await;
    let error = wait_down(&berth, "nosuch", "service_unknown").await;
    assert!(error.contains("NOT_FOUND"), "{error}");

    server.set("app", "NOT_SERVING");
    let error = wait_down(&berth, "app", "not_serving").await;
    assert!(error.contains("NOT_SERVING"), "{error}");
    wait_check(&berth, "overall", "up").await;
    server.set("app", "SERVING");
    wait_check(&berth, "app", "up").await;
    server.set("-", "UNKNOWN");
    wait_down(&berth, "overall", "not_serving").await;
    server.set("-", "SERVING");
    wait_check(&berth, "overall", "up").await;

    server.kill();
    let error = wait_check(&berth, "app", "down").await;
    assert!(
        error.starts_with("connection_refused") || error.starts_with("connection_lost"),
        "{error}"
    );
    wait_check(&berth, "overall", "down").await;
    server.restart();
    wait_check(&berth, "app", "up").await;
    wait_check(&berth, "overall", "up").await;
    wait_down(&berth, "nosuch", "service_unknown").await;
}

/// gRPC over TLS: the right CA → up; another CA → `tls_failed`;
/// insecureSkipVerify → up; a certificate for another name is accepted
/// only with that name as `authority`; plain HTTP/2 to a TLS port → down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_tls_right_ca_wrong_ca_authority() {
    let ca = berth_tests::TestCa::with_names("DNS:health.grpc.internal");
    let other = berth_tests::TestCa::new();
    let mut server = GrpcHealth::start(&[
        "--tls".into(),
        ca.server_cert.display().to_string(),
        ca.server_key.display().to_string(),
    ]);
    let addr = server.address();
    let right = ca.ca_cert.display();
    let yaml = format!(
        "checks:\n{}{}{}{}{}",
        check(
            "named",
            &format!(
                "type: grpc, address: \"{addr}\", service: app, tls: true, caFile: {right}, authority: health.grpc.internal"
            )
        ),
        check(
            "byip",
            &format!("type: grpc, address: \"{addr}\", tls: true, caFile: {right}")
        ),
        check(
            "wrongca",
            &format!(
                "type: grpc, address: \"{addr}\", tls: true, caFile: {}, authority: health.grpc.internal",
                other.ca_cert.display()
            )
        ),
        check(
            "insecure",
            &format!("type: grpc, address: \"{addr}\", tls: true, insecureSkipVerify: true")
        ),
        check("plain", &format!("type: grpc, address: \"{addr}\"")),
    );
    let berth = Running::start(&yaml);
    wait_check(&berth, "named", "up").await;
    wait_check(&berth, "insecure", "up").await;
    let error = wait_down(&berth, "byip", "tls_failed").await;
    assert!(error.contains("not valid for the host name"), "{error}");
    let error = wait_down(&berth, "wrongca", "tls_failed").await;
    assert!(error.contains("not signed by a trusted CA"), "{error}");
    let error = wait_check(&berth, "plain", "down").await;
    eprintln!("plain HTTP/2 to a TLS port: {error}");

    server.set("app", "NOT_SERVING");
    wait_down(&berth, "named", "not_serving").await;
    server.kill();
    wait_check(&berth, "insecure", "down").await;
    server.restart();
    wait_check(&berth, "named", "up").await;
    wait_check(&berth, "insecure", "up").await;
}

/// The wrong kind of server says so: a grpc check against a plain HTTP/1
/// server is `http2_error` with a hint, an https check against a port
/// without TLS is `tls_failed` "does not speak TLS", and nothing listening
/// is `connection_refused`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_kind_of_server_is_named() {
    let port = berth_tests::free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let _server = Server {
        child,
        stdin: None,
        stdout: None,
    };
    wait_port(port, "http.server");
    let closed = berth_tests::free_port();
    let yaml = format!(
        "checks:\n{}{}{}",
        check("h1", &format!("type: grpc, address: \"127.0.0.1:{port}\"")),
        check(
            "plain",
            &format!("type: https, url: \"https://127.0.0.1:{port}/\", insecureSkipVerify: true")
        ),
        check(
            "nothing",
            &format!("type: grpc, address: \"127.0.0.1:{closed}\"")
        ),
    );
    let berth = Running::start(&yaml);
    let error = wait_down(&berth, "h1", "http2_error").await;
    assert!(error.contains("not a gRPC server"), "{error}");
    let error = wait_down(&berth, "plain", "tls_failed").await;
    assert!(error.contains("does not speak TLS"), "{error}");
    wait_down(&berth, "nothing", "connection_refused").await;
}

/// A gRPC server that requires a client certificate: clientCert/clientKey
/// → up, none → down `tls_failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_certificate_required() {
    let ca = berth_tests::TestCa::new();
    let (cert, key) = client_cert(&ca);
    let server = GrpcHealth::start(&[
        "--tls".into(),
        ca.server_cert.display().to_string(),
        ca.server_key.display().to_string(),
        "--client-ca".into(),
        ca.ca_cert.display().to_string(),
    ]);
    let addr = server.address();
    let ca_file = ca.ca_cert.display();
    let yaml = format!(
        "checks:\n{}{}",
        check(
            "mtls",
            &format!(
                "type: grpc, address: \"{addr}\", tls: true, caFile: {ca_file}, clientCert: {}, clientKey: {}",
                cert.display(),
                key.display()
            )
        ),
        check(
            "nocert",
            &format!("type: grpc, address: \"{addr}\", tls: true, caFile: {ca_file}")
        ),
    );
    let berth = Running::start(&yaml);
    wait_check(&berth, "mtls", "up").await;
    let error = wait_down(&berth, "nocert", "tls_failed").await;
    eprintln!("gRPC without a client certificate: {error}");
}
