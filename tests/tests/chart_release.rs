//! The charts as people consume them: `scripts/charts-release.sh` packages
//! and signs both charts with a throwaway GnuPG key, pushes them to a real
//! OCI registry (Debian's `docker-registry`, on a free loopback port),
//! pulls them back with `--verify` and renders from `oci://127.0.0.1:PORT/…`,
//! with helm 3 and helm 4. A tampered package, one signed by another key and
//! a tampered package in the registry all fail verification. Also: the
//! Artifact Hub metadata in both Chart.yaml files.
//!
//! Every process started here (registry, gpg-agent) is stopped and every
//! directory removed on `Drop`, also when an assertion fails.

use berth_tests::chart::{Helm, HELMS};
use berth_tests::{free_port, wait_for_port, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A `docker-registry` (distribution v2) on 127.0.0.1, storage in a temp dir.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                    dir.path().join("data").display()
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start docker-registry (apt-get install docker-registry; tools/setup.sh installs it)");
            if wait_for_port(port, Duration::from_secs(10)) {
                return Registry {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }

    fn oci(&self, path: &str) -> String {
        format!("oci://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway GnuPG home with one RSA signing key (helm 3's OpenPGP code
/// reads RSA, not EdDSA), exported as the legacy keyrings helm reads.
struct Gpg {
    dir: tempfile::TempDir,
    uid: String,
    fingerprint: String,
}

impl Gpg {
    fn new(name: &str) -> Gpg {
        // A short path: gpg-agent's socket lives in the home directory.
        let dir = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let home = dir.path().join("h");
        std::fs::create_dir(&home).expect("gnupg home");
        let mut perms = std::fs::metadata(&home).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        std::fs::set_permissions(&home, perms).expect("chmod 700");
        let uid = format!("{name} <{name}@berth.invalid>");
        gpg(
            &home,
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                &uid,
                "rsa2048",
                "sign",
                "never",
            ],
        );
        let secring = gpg(&home, &["--export-secret-keys", &uid]).stdout;
        std::fs::write(dir.path().join("secring.gpg"), secring).expect("write secring");
        let pubring = gpg(&home, &["--export", &uid]).stdout;
        std::fs::write(dir.path().join("pubring.gpg"), pubring).expect("write pubring");
        let listing =
            String::from_utf8(gpg(&home, &["--with-colons", "--list-keys"]).stdout).expect("utf-8");
        let fingerprint = listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fingerprint")
            .to_string();
        Gpg {
            dir,
            uid,
            fingerprint,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("h")
    }

    fn secring(&self) -> PathBuf {
        self.dir.path().join("secring.gpg")
    }

    fn pubring(&self) -> PathBuf {
        self.dir.path().join("pubring.gpg")
    }
}

fn gpg(home: &Path, args: &[&str]) -> Output {
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .arg("--batch")
        .args(args)
        .output()
        .expect("run gpg");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home())
            .args(["--kill", "all"])
            .output();
    }
}

/// A helm with its own cache/config/data directories (registry logins and
/// the OCI cache stay out of the user's).
struct HelmRun {
    helm: Helm,
    home: PathBuf,
}

impl HelmRun {
    fn cmd(&self) -> Command {
        let mut c = Command::new(self.helm.binary());
        self.env(&mut c);
        c
    }

    fn env(&self, c: &mut Command) {
        c.env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .env("HELM", self.helm.binary());
        // The script's environment twins of its options must not leak in.
        for var in [
            "SIGN_KEY",
            "KEYRING",
            "PASSPHRASE_FILE",
            "VERIFY_KEYRING",
            "KEY_URL",
            "REGISTRY",
            "PLAIN_HTTP",
            "VALUES",
            "INSTALL",
            "OUT_DIR",
        ] {
            c.env_remove(var);
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.cmd().args(args).output().expect("run helm");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Unpacks `tgz`, appends a line to `file` inside it, packs it again under
/// the same name in `into` and copies the original provenance next to it.
fn tamper(tgz: &Path, file: &str, into: &Path) -> PathBuf {
    let work = into.join("unpacked");
    std::fs::create_dir_all(&work).expect("mkdir");
    let ok = Command::new("tar")
        .arg("xzf")
        .arg(tgz)
        .arg("-C")
        .arg(&work)
        .status()
        .expect("tar")
        .success();
    assert!(ok);
    let target = work.join(file);
    let mut text = std::fs::read_to_string(&target).expect("read file in package");
    text.push_str("# one extra line\n");
    std::fs::write(&target, text).expect("write");
    let name = tgz.file_name().expect("name");
    let out = into.join(name);
    let top = file.split('/').next().expect("top dir");
    let ok = Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&work)
        .arg(top)
        .status()
        .expect("tar")
        .success();
    assert!(ok);
    let mut prov = tgz.as_os_str().to_owned();
    prov.push(".prov");
    let mut prov_out = out.as_os_str().to_owned();
    prov_out.push(".prov");
    std::fs::copy(&prov, &prov_out).expect("copy prov");
    out
}

fn release(h: &HelmRun, gpg: &Gpg, registry: &str, out: &Path) -> String {
    let mut c = Command::new(workspace_root().join("scripts/charts-release.sh"));
    h.env(&mut c);
    let o = c
        .args(["--key", &gpg.uid, "--keyring", s(&gpg.secring())])
        .args(["--verify-keyring", s(&gpg.pubring())])
        .args(["--push", registry, "--plain-http", "--out", s(out)])
        .output()
        .expect("run scripts/charts-release.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success(),
        "{:?} charts-release.sh failed:\n{text}",
        h.helm
    );
    text
}

#[test]
fn signed_charts_round_trip_through_a_real_oci_registry_with_helm3_and_helm4() {
    let registry = Registry::start();
    let key = Gpg::new("berth-test-release");
    let intruder = Gpg::new("someone-else");
    let tmp = tempfile::tempdir().expect("tempdir");
    for helm in HELMS {
        let tag = format!("{helm:?}").to_lowercase();
        let h = HelmRun {
            helm,
            home: tmp.path().join(format!("helm-{tag}")),
        };
        let repo = registry.oci(&format!("{tag}/charts"));
        let dist = tmp.path().join(format!("dist-{tag}"));

        // 1. The script: package, sign, verify, push, pull --verify, render.
        let report = release(&h, &key, &repo, &dist);
        for line in [
            format!("signed by {}", key.fingerprint),
            "ok    helm verify: both packages".into(),
            format!("ok    pushed to {repo}"),
            format!("ok    pulled back from {repo} with --verify"),
            format!("ok    rendered {repo}/berth:0.1.0"),
        ] {
            assert!(report.contains(&line), "{helm:?}: no {line:?} in\n{report}");
        }
        // The packaged Chart.yaml names the key that signed it (Artifact Hub).
        let chart_yaml = Command::new("tar")
            .arg("xzf")
            .arg(dist.join("berth-0.1.0.tgz"))
            .args(["-O", "berth/Chart.yaml"])
            .output()
            .expect("tar");
        let chart_yaml = String::from_utf8_lossy(&chart_yaml.stdout).into_owned();
        assert!(
            chart_yaml.contains(&format!("fingerprint: {}", key.fingerprint)),
            "{chart_yaml}"
        );

        // 2. A user, independently: pull with --verify from oci://127.0.0.1:PORT.
        let pulled = tmp.path().join(format!("pulled-{tag}"));
        std::fs::create_dir_all(&pulled).expect("mkdir");
        for chart in ["berth", "berth-lib"] {
            let out = h.run(&[
                "pull",
                &format!("{repo}/{chart}"),
                "--version",
                "0.1.0",
                "--plain-http",
                "--verify",
                "--keyring",
                s(&key.pubring()),
                "-d",
                s(&pulled),
            ]);
            let out = out.unwrap_or_else(|e| panic!("{helm:?} pull --verify {chart}: {e}"));
            assert!(out.contains(&key.fingerprint), "{helm:?}: {out}");
            assert!(pulled.join(format!("{chart}-0.1.0.tgz.prov")).exists());
        }
        let verified = h
            .run(&[
                "verify",
                s(&pulled.join("berth-0.1.0.tgz")),
                "--keyring",
                s(&key.pubring()),
            ])
            .unwrap_or_else(|e| panic!("{helm:?} verify: {e}"));
        assert!(verified.contains("Chart Hash Verified"), "{verified}");

        // 3. Render straight from the registry, verifying on the way.
        let text = h
            .run(&[
                "template",
                "rel",
                &format!("{repo}/berth"),
                "--version",
                "0.1.0",
                "--plain-http",
                "--verify",
                "--keyring",
                s(&key.pubring()),
                "--api-versions",
                "keda.sh/v1alpha1/ScaledObject",
                "-f",
                s(&workspace_root().join("examples/jobqueue/values.yaml")),
            ])
            .unwrap_or_else(|e| panic!("{helm:?} template from {repo}: {e}"));
        let docs: Vec<Value> = text
            .split("\n---")
            .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
            .filter(|v| !v.is_null())
            .map(|v| serde_json::to_value(v).expect("json"))
            .collect();
        let has = |kind: &str, name: &str| {
            docs.iter()
                .any(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        };
        assert!(has("Deployment", "rel-api"), "{helm:?}");
        assert!(has("ScaledObject", "rel-worker"), "{helm:?}");
        assert!(has("StatefulSet", "rel-postgresql"), "{helm:?}");

        // 4. berth-lib from the registry as a dependency of the example
        //    chart that adds the sidecar to an existing app.
        let app = tmp.path().join(format!("myapp-{tag}"));
        copy_dir(&workspace_root().join("examples/existing-pod/chart"), &app);
        let _ = std::fs::remove_dir_all(app.join("charts"));
        let _ = std::fs::remove_file(app.join("Chart.lock"));
        let manifest = std::fs::read_to_string(app.join("Chart.yaml")).expect("Chart.yaml");
        let manifest = manifest.replace("file://../../../charts/berth-lib", &repo);
        assert!(manifest.contains(&repo));
        std::fs::write(app.join("Chart.yaml"), manifest).expect("write Chart.yaml");
        h.run(&[
            "dependency",
            "update",
            s(&app),
            "--plain-http",
            "--verify",
            "--keyring",
            s(&key.pubring()),
        ])
        .unwrap_or_else(|e| panic!("{helm:?} dependency update from {repo}: {e}"));
        let text = h
            .run(&["template", "rel", s(&app)])
            .unwrap_or_else(|e| panic!("{helm:?} template myapp: {e}"));
        assert!(text.contains("name: berth"), "{helm:?}: sidecar rendered");
        assert!(text.contains("/api/v1/health/ready"));

        // 5. Tampering fails: a changed file under the original provenance ...
        let bad = tmp.path().join(format!("tampered-{tag}"));
        let tampered = tamper(&dist.join("berth-0.1.0.tgz"), "berth/values.yaml", &bad);
        let err = h
            .run(&["verify", s(&tampered), "--keyring", s(&key.pubring())])
            .expect_err("a tampered package must fail helm verify");
        assert!(err.contains("sha256 sum does not match"), "{helm:?}: {err}");
        // ... a package signed by a key the user does not trust ...
        let other = tmp.path().join(format!("other-{tag}"));
        h.run(&[
            "package",
            "--sign",
            "--key",
            &intruder.uid,
            "--keyring",
            s(&intruder.secring()),
            s(&workspace_root().join("charts/berth-lib")),
            "-d",
            s(&other),
        ])
        .unwrap_or_else(|e| panic!("{helm:?} package --sign: {e}"));
        let err = h
            .run(&[
                "verify",
                s(&other.join("berth-lib-0.1.0.tgz")),
                "--keyring",
                s(&key.pubring()),
            ])
            .expect_err("a package signed by another key must fail helm verify");
        assert!(
            err.contains("signature made by unknown entity"),
            "{helm:?}: {err}"
        );
        // ... and a tampered package in the registry fails `pull --verify`.
        let evil = registry.oci(&format!("{tag}/tampered"));
        let evil_dir = tmp.path().join(format!("evil-{tag}"));
        std::fs::create_dir_all(&evil_dir).expect("mkdir");
        h.run(&["push", s(&tampered), &evil, "--plain-http"])
            .unwrap_or_else(|e| panic!("{helm:?} push tampered: {e}"));
        let err = h
            .run(&[
                "pull",
                &format!("{evil}/berth"),
                "--version",
                "0.1.0",
                "--plain-http",
                "--verify",
                "--keyring",
                s(&key.pubring()),
                "-d",
                s(&evil_dir),
            ])
            .expect_err("pull --verify of a tampered package must fail");
        assert!(err.contains("sha256 sum does not match"), "{helm:?}: {err}");
        let err = h
            .run(&[
                "template",
                "rel",
                &format!("{evil}/berth"),
                "--version",
                "0.1.0",
                "--plain-http",
                "--verify",
                "--keyring",
                s(&key.pubring()),
            ])
            .expect_err("template --verify of a tampered package must fail");
        assert!(err.contains("sha256 sum does not match"), "{helm:?}: {err}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `annotations.<key>` of a Chart.yaml, itself YAML, parsed.
fn annotation(chart: &serde_yaml::Value, key: &str) -> serde_yaml::Value {
    let text = chart["annotations"][key]
        .as_str()
        .unwrap_or_else(|| panic!("annotation {key}"));
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{key} is YAML: {e}"))
}

#[test]
fn both_charts_carry_artifact_hub_metadata() {
    let root = workspace_root();
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("charts/berth/values.yaml")).expect("values"),
    )
    .expect("values.yaml");
    let image = &values["berth"]["image"];
    let berth_image = format!(
        "{}/{}:{}",
        image["registry"].as_str().expect("registry"),
        image["repository"].as_str().expect("repository"),
        image["tag"].as_str().expect("tag")
    );
    for chart in ["berth", "berth-lib"] {
        let c: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(root.join(format!("charts/{chart}/Chart.yaml")))
                .expect("Chart.yaml"),
        )
        .expect("Chart.yaml parses");
        let a = &c["annotations"];
        assert_eq!(a["artifacthub.io/license"], "Apache-2.0", "{chart}");
        let images = annotation(&c, "artifacthub.io/images");
        let images = images.as_sequence().expect("images list");
        assert!(
            images
                .iter()
                .any(|i| i["image"].as_str() == Some(berth_image.as_str())),
            "{chart}: artifacthub.io/images lists {berth_image} (values.yaml berth.image)"
        );
        // The image tag follows the chart's appVersion.
        assert!(berth_image.ends_with(&format!(
            ":{}",
            c["appVersion"].as_str().expect("appVersion")
        )));
        let changes = annotation(&c, "artifacthub.io/changes");
        for ch in changes.as_sequence().expect("changes list") {
            let kind = ch["kind"].as_str().expect("kind");
            assert!(
                [
                    "added",
                    "changed",
                    "deprecated",
                    "removed",
                    "fixed",
                    "security"
                ]
                .contains(&kind),
                "{chart}: change kind {kind}"
            );
            assert!(ch["description"].as_str().is_some_and(|d| !d.is_empty()));
        }
        let links = annotation(&c, "artifacthub.io/links");
        let links = links.as_sequence().expect("links");
        assert!(links.iter().any(|l| l["name"] == "source"));
        assert!(links
            .iter()
            .all(|l| l["url"].as_str().is_some_and(|u| u.starts_with("https://"))));
        let sign = annotation(&c, "artifacthub.io/signKey");
        assert!(
            sign["fingerprint"].as_str().is_some(),
            "{chart}: signKey.fingerprint"
        );
        assert!(sign["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")));
        assert!(a["artifacthub.io/category"].as_str().is_some());
    }
}

#[test]
fn release_script_refuses_what_it_cannot_do_and_packages_unsigned_on_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = workspace_root().join("scripts/charts-release.sh");
    let h = HelmRun {
        helm: HELMS[0],
        home: tmp.path().join("helm"),
    };
    let run = |args: &[&str]| {
        let mut c = Command::new(&script);
        h.env(&mut c);
        let o = c.args(args).output().expect("run charts-release.sh");
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let out = tmp.path().join("dist");
    for (args, needle) in [
        (vec![], "signing needs --key NAME and --keyring FILE"),
        (
            vec!["--key", "x", "--keyring", "/nonexistent/secring.gpg"],
            "--keyring /nonexistent/secring.gpg: no such file",
        ),
        (
            vec!["--unsigned", "--push", "https://127.0.0.1:1/charts"],
            "must start with oci://",
        ),
        (vec!["--bogus"], "unknown option --bogus"),
    ] {
        let (ok, text) = run(&args);
        assert!(!ok && text.contains(needle), "{args:?}: {text}");
    }
    // A key the keyring does not hold.
    let key = Gpg::new("berth-test-other");
    let (ok, text) = run(&[
        "--key",
        "nobody-has-this-key",
        "--keyring",
        s(&key.secring()),
        "--out",
        s(&out),
    ]);
    assert!(!ok && text.contains("no key matching"), "{text}");
    // --unsigned: packages without provenance, which helm verify refuses.
    let (ok, text) = run(&["--unsigned", "--out", s(&out)]);
    assert!(ok, "{text}");
    for chart in ["berth-lib", "berth"] {
        let tgz = out.join(format!("{chart}-0.1.0.tgz"));
        assert!(tgz.exists(), "{text}");
        assert!(!out.join(format!("{chart}-0.1.0.tgz.prov")).exists());
        let err = h
            .run(&["verify", s(&tgz), "--keyring", s(&key.pubring())])
            .expect_err("an unsigned package fails helm verify");
        assert!(err.contains(".prov"), "{err}");
    }
}
