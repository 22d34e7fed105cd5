//! The two images built by `scripts/build-images.sh`: static binaries in
//! `FROM scratch` images (nothing else inside, no shell), non-root, small,
//! and able to resolve host names from the container's /etc/hosts, which
//! static glibc must do without NSS modules (DATABASE_URL carries a host
//! name in every real deployment).
#![allow(clippy::unwrap_used)]

use berth_tests::pod::{
    berth_image, jobqueue_image, pod_environment_ready, podman, podman_out, random_prefix,
    BridgePostgres,
};
use std::process::Output;

/// Regular files (not directories) in an image's filesystem: `podman
/// export` of a created (never started) container, listed with `tar -tv`.
fn image_files(image: &str) -> Vec<String> {
    let name = format!("{}-files", random_prefix());
    podman_out(&["create", "--name", &name, image]);
    let out = podman()
        .args(["export", &name])
        .output()
        .expect("podman export");
    let _ = podman().args(["rm", "-f", &name]).output();
    assert!(out.status.success(), "podman export {image}");
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("fs.tar");
    std::fs::write(&tar, &out.stdout).expect("write tar");
    let list = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&tar)
        .output()
        .expect("tar -tv");
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches("./").to_string())
        .collect()
}

#[test]
fn pod_images_are_static_scratch_nonroot_and_small() {
    if !pod_environment_ready() {
        return;
    }
    for (image, binary) in [(berth_image(), "berth"), (jobqueue_image(), "jobqueue")] {
        let user = podman_out(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
        let uid = user.split(':').next().unwrap_or_default();
        assert_eq!(
            uid, "65532",
            "{image} runs as UID 65532 (Config.User {user:?})"
        );
        let size: u64 = podman_out(&["image", "inspect", "--format", "{{.Size}}", &image])
            .parse()
            .expect("size");
        assert!(
            size < 40_000_000,
            "{image} is small: {size} bytes (static binary, nothing else)"
        );
        let files = image_files(&image);
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(&format!("/{binary}")) || f == binary),
            "{image} contains {binary}: {files:?}"
        );
        let shells: Vec<&String> = files
            .iter()
            .filter(|f| {
                let base = f.rsplit('/').next().unwrap_or_default();
                matches!(base, "sh" | "bash" | "dash" | "ash" | "busybox") || f.contains("lib/")
            })
            .collect();
        assert!(
            shells.is_empty(),
            "{image}: FROM scratch, no shell or shared libraries: {shells:?}"
        );
        assert!(
            files.len() <= 4,
            "{image} holds little besides the binary: {files:?}"
        );
    }
    // The binary starts in a locked-down container (no /lib, no shell needed).
    let out = podman_out(&[
        "run",
        "--rm",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        &berth_image(),
        "--version",
    ]);
    assert!(out.contains("berth"), "berth --version: {out}");
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = podman();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("podman run")
}

#[test]
fn pod_static_binaries_resolve_hostnames_in_scratch() {
    if !pod_environment_ready() {
        return;
    }
    let db = BridgePostgres::start();
    db.pg.create_database("dns");
    let host = format!("db-host:{}", db.gateway);

    // jobqueue: `migrate` connects to postgres://...@db-host/... (name from
    // the container's /etc/hosts, written by podman from --add-host).
    let url = db.url_via("db-host", "dns");
    let name = format!("{}-migrate", random_prefix());
    let out = run(
        &[
            "run",
            "--rm",
            "--name",
            &name,
            "--add-host",
            &host,
            "--read-only",
            "--cap-drop",
            "ALL",
            "-e",
            "DATABASE_URL",
            &jobqueue_image(),
            "migrate",
        ],
        &[("DATABASE_URL", &url)],
    );
    assert!(
        out.status.success(),
        "jobqueue migrate via db-host: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = db.pg.psql(
        "dns",
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    );
    assert_ne!(tables, "0", "migrate created tables through db-host");

    // berth: the startup gate (`berth wait`) on a postgres check at db-host.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("berth.yaml");
    std::fs::write(
        &cfg,
        "listen: 0.0.0.0:8642\nchecks:\n  - {name: db, type: postgres, url: \"${DATABASE_URL}\", interval: 1s, timeout: 900ms}\n",
    )
    .expect("write config");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let mount = format!("{}:/etc/berth:ro", dir.path().display());
    let wait = |url: &str, timeout: &str| {
        run(
            &[
                "run",
                "--rm",
                "--add-host",
                &host,
                "--read-only",
                "--cap-drop",
                "ALL",
                "-v",
                &mount,
                "-e",
                "DATABASE_URL",
                &berth_image(),
                "wait",
                "--config",
                "/etc/berth/berth.yaml",
                "--timeout",
                timeout,
            ],
            &[("DATABASE_URL", url)],
        )
    };
    let ok = wait(&db.url_via("db-host", "dns"), "60s");
    assert!(
        ok.status.success(),
        "berth wait via db-host: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Control: a name that is not in /etc/hosts (and not in DNS) never passes,
    // so the success above really depended on resolving db-host.
    let bad = wait(&db.url_via("no-such-host.invalid", "dns"), "4s");
    assert_eq!(
        bad.status.code(),
        Some(1),
        "berth wait on an unresolvable host times out: {}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
