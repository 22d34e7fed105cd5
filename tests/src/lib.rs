//! Test kit shared by every crate in the workspace.
//!
//! Tests in this project talk to *real* dependencies. This crate starts and
//! stops them: a private PostgreSQL cluster (`initdb` + `pg_ctl`) and a
//! private `redis-server`, each on its own free port and in its own temporary
//! directory, so fault tests can stop and restart them without touching the
//! machine's shared services or each other.
//!
//! For TLS tests, [`TestCa`] makes a throwaway CA and a server certificate
//! for `localhost`/`127.0.0.1` (with the `openssl` CLI), and
//! [`Postgres::start_tls`] / [`Redis::start_tls`] start servers that use it.
//!
//! Everything here is synchronous (`std::process`) so it can be used from both
//! plain `#[test]`s and `#[tokio::test]`s. Instances are torn down on `Drop`.

#![forbid(unsafe_code)]

pub mod forward;
pub mod scrape;
pub mod tools;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bind to port 0, read it back, release it).
///
/// There is a small window in which another process could take the port;
/// callers that start servers retry on "address in use" where it matters.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().expect("socket addr"),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

fn running_as_root() -> bool {
    // `id -u` avoids a libc dependency (and `unsafe`) for one number.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Directory holding `initdb`, `pg_ctl` and `postgres`: `$BERTH_PG_BIN`, else
/// the newest `/usr/lib/postgresql/*/bin`, else whatever is on `PATH`.
fn pg_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("BERTH_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// A private PostgreSQL cluster for one test (or one test binary).
///
/// TCP connections on 127.0.0.1 use `scram-sha-256` with the superuser
/// `postgres` and a random password, so [`Postgres::url`] holds a real
/// credential: tests use it to prove that secrets never leak.
pub struct Postgres {
    pub port: u16,
    pub password: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres_user: bool,
    /// The CA that signed the server certificate, when started with TLS.
    pub tls: Option<TestCa>,
}

impl Postgres {
    /// initdb + start. Panics with the server log if it cannot start.
    pub fn start() -> Postgres {
        Postgres::start_inner(None)
    }

    /// Like [`Postgres::start`], with `ssl = on` and a server certificate for
    /// `localhost` and `127.0.0.1` signed by a fresh [`TestCa`] (in
    /// [`Postgres::tls`]). Plain TCP connections are still accepted, so the
    /// tests can show which one a client used (`pg_stat_ssl`).
    pub fn start_tls() -> Postgres {
        Postgres::start_inner(Some(TestCa::new()))
    }

    /// Like [`Postgres::start_tls`] with a given CA (e.g. one whose server
    /// certificate names another host: [`TestCa::with_names`]).
    pub fn start_tls_with(ca: TestCa) -> Postgres {
        Postgres::start_inner(Some(ca))
    }

    fn start_inner(tls: Option<TestCa>) -> Postgres {
        let bin = pg_bin_dir().unwrap_or_default();
        let as_postgres_user = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .expect("tempdir");
        let password = format!("pw-{}", random_suffix());
        std::fs::write(dir.path().join("pwfile"), &password).expect("write pwfile");
        if as_postgres_user {
            // initdb refuses to run as root: hand the directory to `postgres`.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the PostgreSQL test dir failed");
        }
        let pg = Postgres {
            port: free_port(),
            password,
            dir,
            bin,
            as_postgres_user,
            tls,
        };
        let data = pg.data_dir();
        let out = pg
            .pg_command("initdb")
            .args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "--auth-local=trust",
            ])
            .arg("--pwfile")
            .arg(pg.dir.path().join("pwfile"))
            .arg("-D")
            .arg(&data)
            .args(["-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 200\nshared_buffers = 64MB\nlog_min_messages = warning\n",
            pg.port,
            pg.dir.path().display()
        );
        if let Some(ca) = &pg.tls {
            // The key must belong to the server's user and be private.
            for (from, to) in [
                (&ca.server_cert, "server.crt"),
                (&ca.server_key, "server.key"),
            ] {
                std::fs::copy(from, data.join(to)).expect("copy TLS file into the data dir");
            }
            let status = Command::new("chmod")
                .arg("600")
                .arg(data.join("server.key"))
                .status()
                .expect("chmod");
            assert!(status.success(), "chmod of server.key failed");
            if pg.as_postgres_user {
                let status = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(data.join("server.crt"))
                    .arg(data.join("server.key"))
                    .status()
                    .expect("chown");
                assert!(status.success(), "chown of the TLS files failed");
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let conf_path = data.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).expect("write postgresql.auto.conf");
        pg.start_server();
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn start_server(&self) {
        let out = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
        assert!(
            wait_for_port(self.port, Duration::from_secs(30)),
            "PostgreSQL did not listen on {}",
            self.port
        );
    }

    /// Connection URL for `db` (with the password). Database `postgres` always exists.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}",
            self.password, self.port, db
        )
    }

    /// Same server, no password in the URL: for libraries that take it elsewhere.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs SQL through `psql` over the Unix socket (trust auth) and returns stdout.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .pg_command("psql")
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `CREATE DATABASE name` (ignores "already exists").
    pub fn create_database(&self, name: &str) {
        let exists = self.psql(
            "postgres",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        );
        if exists.is_empty() {
            self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        }
    }

    /// Stops the server (fast shutdown: disconnects clients). Idempotent.
    pub fn stop(&self) {
        let _ = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts the server again after [`Postgres::stop`], on the same port.
    pub fn restart(&self) {
        self.stop();
        self.start_server();
    }

    /// The server log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A private `redis-server` (no persistence) for one test.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
    /// The CA that signed the server certificate, when started with TLS
    /// (then `port` is the TLS port and there is no plain one).
    pub tls: Option<TestCa>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_inner(None)
    }

    /// A TLS-only `redis-server` (`--tls-port`, no plain port, client
    /// certificates not required) with a certificate from a fresh [`TestCa`].
    pub fn start_tls() -> Redis {
        Redis::start_inner(Some(TestCa::new()))
    }

    fn start_inner(tls: Option<TestCa>) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("berth-redis-")
            .tempdir()
            .expect("tempdir");
        let mut redis = Redis {
            port: free_port(),
            child: None,
            _dir: dir,
            tls,
        };
        redis.start_server();
        redis
    }

    fn start_server(&mut self) {
        let mut cmd =
            Command::new(std::env::var("BERTH_REDIS_SERVER").unwrap_or("redis-server".into()));
        cmd.args(["--bind", "127.0.0.1"]);
        match &self.tls {
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
            Some(ca) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&ca.server_cert)
                    .arg("--tls-key-file")
                    .arg(&ca.server_key)
                    .arg("--tls-ca-cert-file")
                    .arg(&ca.ca_cert)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        let child = cmd
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (apt-get install redis-server)");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(20)),
            "redis-server did not listen on {}",
            self.port
        );
    }

    /// `redis://127.0.0.1:port/0`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: clients see a dropped connection). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.start_server();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway certificate authority and one server certificate it signed,
/// valid for `localhost` and `127.0.0.1`, made with the `openssl` CLI (ECDSA
/// P-256, valid for two days). Files live in a temporary directory removed
/// on drop.
pub struct TestCa {
    /// The CA certificate (PEM): what clients pass as `sslrootcert`.
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Server certificate for `localhost` and `127.0.0.1`. Panics with
    /// openssl's output if a step fails.
    pub fn new() -> TestCa {
        TestCa::with_names("DNS:localhost, IP:127.0.0.1")
    }

    /// Server certificate whose subjectAltName is `san` (openssl syntax,
    /// e.g. `"DNS:db.invalid"`).
    pub fn with_names(san: &str) -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("berth-ca-")
            .tempdir()
            .expect("tempdir");
        let p = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl (apt-get install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let subject = format!("/CN=berth test CA {}", random_suffix());
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend(ec);
        ca_args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&ca_args);
        let mut csr_args = vec!["req", "-new"];
        csr_args.extend(ec);
        csr_args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&csr_args);
        std::fs::write(
            p("server.ext"),
            format!(
                "subjectAltName = {san}\n\
                 basicConstraints = CA:FALSE\n\
                 keyUsage = critical, digitalSignature, keyEncipherment\n\
                 extendedKeyUsage = serverAuth\n"
            ),
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        // Readable by the postgres/redis users the servers may run as.
        for f in ["ca.crt", "server.crt", "server.key"] {
            let _ = Command::new("chmod").arg("644").arg(p(f)).status();
        }
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        TestCa {
            ca_cert: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
            dir,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

fn random_suffix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

pub mod chart;
pub mod pod;
