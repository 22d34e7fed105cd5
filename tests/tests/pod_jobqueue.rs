//! The whole product as containers: `charts/berth` rendered with
//! `examples/jobqueue/values.yaml` (helm 3, Kubernetes 1.31: berth as a
//! native sidecar), its pods run by podman under the mini-kubelet
//! (`tests/pods/kubelet.py`), with the real images built by
//! `scripts/build-images.sh` and a real PostgreSQL.
//!
//! What podman does here: the pods (shared network, and PID namespace when
//! the render asks), the containers with the rendered security context,
//! env, ConfigMap/Secret files and emptyDirs. What the mini-kubelet does, as
//! kubelet would, because podman 4.3 does not: the native sidecar started
//! first and the main container held until the sidecar's startupProbe
//! passes; startup/readiness/liveness probes polled per the rendered spec;
//! preStop httpGet, SIGTERM, grace period, SIGKILL on pod deletion; helm
//! hook Jobs. Nothing in these tests is a mock: the probes hit berth over the
//! pod network and berth checks the real database.
//!
//! PostgreSQL runs on the host (there is no postgres image and no pulls),
//! reached by the pods as `db-host` through their /etc/hosts: the chart's
//! external-DATABASE_URL mode, and a check that the static binaries resolve
//! host names inside a scratch container.
#![allow(clippy::unwrap_used)]

use berth_tests::pod::{
    http, inspect, parse_render, pod_environment_ready, proc_environ, proc_security, random_prefix,
    render_chart, repo_path, BridgePostgres, Kubelet, KubeletOptions,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const RELEASE: &str = "jq";
const API: &str = "jq-api";
const WORKER: &str = "jq-worker";
const REAPER: &str = "jq-reaper";
/// Generous: a loaded 2-core machine starting ~10 containers.
const UP_TIMEOUT: Duration = Duration::from_secs(300);

struct Stack {
    kubelet: Kubelet,
    render: String,
    api_key: String,
    db: BridgePostgres,
}

/// Renders the chart for an external database at `db-host` and starts the
/// kubelet. With `db_down`, PostgreSQL is stopped before the pods start.
fn start_stack(scale: &[(&str, u32)], db_down: bool) -> Stack {
    let db = BridgePostgres::start();
    db.pg.create_database("jobqueue");
    let api_key = format!("k-{}", random_prefix());
    let args: Vec<String> = [
        "--set",
        "workloads.postgresql.enabled=false",
        "--set",
        "secrets.postgresql.enabled=false",
        "--set-string",
        &format!(
            "secrets.jobqueue.stringData.DATABASE_URL={}",
            db.url_via("db-host", "jobqueue")
        ),
        "--set-string",
        &format!("secrets.jobqueue.stringData.API_SECRET_KEY={api_key}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let render = render_chart(
        RELEASE,
        &[repo_path("examples/jobqueue/values.yaml")],
        &args,
        "1.31.0",
    );
    if db_down {
        db.pg.stop();
    }
    let opts = KubeletOptions {
        scale: scale.iter().map(|(w, n)| (w.to_string(), *n)).collect(),
        add_hosts: vec![("db-host".into(), db.gateway.clone())],
        ..Default::default()
    };
    let kubelet = Kubelet::start(&random_prefix(), &render, &opts);
    Stack {
        kubelet,
        render,
        api_key,
        db,
    }
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name} in {}", pod["name"]))
}

fn main_container(pod: &Value) -> &Value {
    pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["kind"] == "main"))
        .expect("a main container")
}

fn ip(pod: &Value) -> String {
    pod["ip"].as_str().expect("pod ip").to_string()
}

/// The rendered pod template of a workload.
fn template<'a>(docs: &'a [serde_yaml::Value], workload: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"].as_str() == Some(workload))
        .map(|d| &d["spec"]["template"])
        .unwrap_or_else(|| panic!("no Deployment {workload} in the render"))
}

/// Pod securityContext overlaid with the container's, as kubelet merges them.
fn effective_security(
    tmpl: &serde_yaml::Value,
    container: &str,
) -> BTreeMap<String, serde_yaml::Value> {
    let mut sc = BTreeMap::new();
    if let Some(m) = tmpl["spec"]["securityContext"].as_mapping() {
        for (k, v) in m {
            sc.insert(k.as_str().unwrap().to_string(), v.clone());
        }
    }
    let spec = &tmpl["spec"];
    let all = spec["initContainers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .chain(spec["containers"].as_sequence().into_iter().flatten());
    let c = all
        .clone()
        .find(|c| c["name"].as_str() == Some(container))
        .unwrap_or_else(|| panic!("no container {container} in the template"));
    if let Some(m) = c["securityContext"].as_mapping() {
        for (k, v) in m {
            sc.insert(k.as_str().unwrap().to_string(), v.clone());
        }
    }
    sc
}

/// podman's RFC 3339 timestamp as (date, seconds of the day): comparable
/// even when the fractional part has a different number of digits.
fn podman_time(t: &str) -> (String, f64) {
    let (date, rest) = t.split_once('T').expect("RFC 3339");
    let time = rest.trim_end_matches('Z');
    let time = time.split(['+', '-']).next().unwrap_or(time);
    let secs = time
        .split(':')
        .map(|x| x.parse::<f64>().unwrap_or(0.0))
        .fold(0.0, |acc, x| acc * 60.0 + x);
    (date.to_string(), secs)
}

fn bearer(stack: &Stack) -> String {
    format!("Bearer {}", stack.api_key)
}

fn submit(stack: &Stack, api: &str, body: &Value) -> Value {
    let auth = bearer(stack);
    let (code, text) = http(
        "POST",
        &format!("http://{api}:8000/api/v1/jobs"),
        &[("Authorization", &auth)],
        Some(&body.to_string()),
    )
    .expect("POST /api/v1/jobs");
    assert_eq!(code, 201, "submit {body}: {text}");
    serde_json::from_str(&text).expect("job JSON")
}

fn get_job(stack: &Stack, api: &str, id: &str) -> Value {
    let auth = bearer(stack);
    let (code, text) = http(
        "GET",
        &format!("http://{api}:8000/api/v1/jobs/{id}"),
        &[("Authorization", &auth)],
        None,
    )
    .expect("GET job");
    assert_eq!(code, 200, "GET job {id}: {text}");
    serde_json::from_str(&text).expect("job JSON")
}

/// Sum of every sample of a Prometheus metric (all label sets).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn job_id(job: &Value) -> String {
    match &job["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn serial_pod_jobqueue_stack_runs_as_rendered() {
    if !pod_environment_ready() {
        return;
    }
    let stack = start_stack(&[(API, 1), (WORKER, 1), (REAPER, 1)], true);
    let k = &stack.kubelet;
    let docs = parse_render(&stack.render);

    // 1. Startup gate: with the database down, every berth sidecar runs and
    //    answers its startup probe with 503, and no main container exists.
    let gated = [API, WORKER, REAPER];
    k.wait_for("sidecars running, startup failing", UP_TIMEOUT, |s| {
        let pods = s["pods"].as_array()?;
        let ok = gated.iter().all(|w| {
            pods.iter().any(|p| {
                if p["workload"] != *w {
                    return false;
                }
                let b = container(p, "berth");
                b["state"] == "running"
                    && b["probes"]["startupProbe"]["runs"].as_u64().unwrap_or(0) >= 3
            })
        });
        ok.then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    for w in gated {
        for pod in k.pods_of(w) {
            let b = container(&pod, "berth");
            assert_eq!(b["started"], false, "{w}: startup passed with the DB down");
            assert_eq!(
                b["probes"]["startupProbe"]["last"], "HTTP 503",
                "{w}: berth's startup endpoint while the DB is down"
            );
            let m = main_container(&pod);
            assert_eq!(
                m["state"], "waiting",
                "{w}: main container must wait for the sidecar's startup gate"
            );
            let (code, _) = http(
                "GET",
                &format!("http://{}:8642/api/v1/health/live", ip(&pod)),
                &[],
                None,
            )
            .expect("live");
            assert_eq!(code, 200, "{w}: /live never depends on a dependency");
        }
    }

    // 2. The database comes up: the gate opens, everything turns Ready and the
    //    migration hook Job runs to completion.
    stack.db.pg.restart();
    let status = k.wait_all_ready(&[API, WORKER, REAPER], UP_TIMEOUT);
    let migrate_ok = status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["workload"] == "jq-migrate" && main_container(p)["exit_code"] == 0);
    assert!(migrate_ok, "the migration hook Job succeeded");

    for w in gated {
        let pod = &k.pods_of(w)[0];
        let b = container(pod, "berth");
        let m = main_container(pod);
        let gate = b["startup_passed_at"].as_f64().expect("gate time");
        assert!(
            b["started_at"].as_f64().unwrap() < gate,
            "{w}: sidecar started before its gate passed"
        );
        assert!(
            m["created_at"].as_f64().unwrap() >= gate,
            "{w}: main container created only after the startup gate ({} < {gate})",
            m["created_at"]
        );
        // The runtime's own record agrees: the sidecar started first.
        let started = |c: &Value| {
            let info = inspect(c["podman_name"].as_str().unwrap());
            podman_time(info["State"]["StartedAt"].as_str().expect("StartedAt"))
        };
        let (b_start, m_start) = (started(b), started(m));
        assert!(
            b_start < m_start,
            "{w}: podman StartedAt berth {b_start:?} < main {m_start:?}"
        );
    }

    // 3. Health endpoints answer on the pod network (pod IP, as kubelet probes).
    let api = &k.pods_of(API)[0];
    let api_ip = ip(api);
    for path in ["live", "ready", "startup"] {
        let (code, body) = http(
            "GET",
            &format!("http://{api_ip}:8642/api/v1/health/{path}"),
            &[],
            None,
        )
        .expect("health");
        assert_eq!(code, 200, "/api/v1/health/{path}: {body}");
    }
    let (code, body) = http(
        "GET",
        &format!("http://{api_ip}:8642/api/v1/health/"),
        &[],
        None,
    )
    .expect("health detail");
    assert_eq!(code, 200, "{body}");
    let detail: Value = serde_json::from_str(&body).expect("health JSON");
    let checks = detail["checks"].as_array().expect("checks");
    let db_check = checks.iter().find(|c| c["name"] == "db").expect("db check");
    assert_eq!(db_check["status"], "up", "berth reached db-host: {body}");
    let app_check = checks
        .iter()
        .find(|c| c["name"] == "app")
        .expect("app check");
    assert_eq!(
        app_check["status"], "up",
        "berth reached the API over the pod's loopback: {body}"
    );
    assert!(
        !body.contains(&stack.db.pg.password),
        "no secret in health output"
    );
    for path in ["/healthz", "/readyz"] {
        let (code, body) =
            http("GET", &format!("http://{api_ip}:8000{path}"), &[], None).expect("api health");
        assert_eq!(code, 200, "API {path}: {body}");
    }

    // 4. Every container runs with the security context of the render, as the
    //    kernel sees it; env and config come from the rendered Secret/ConfigMap.
    let secret_url = stack.db.url_via("db-host", "jobqueue");
    for w in gated {
        let tmpl = template(&docs, w);
        let pod = &k.pods_of(w)[0];
        let share_pid = tmpl["spec"]["shareProcessNamespace"].as_bool() == Some(true);
        let mut pid_namespaces = Vec::new();
        for c in pod["containers"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let sc = effective_security(tmpl, name);
            let pid = c["host_pid"].as_u64().expect("host pid");
            let facts = proc_security(pid);
            let info = inspect(c["podman_name"].as_str().unwrap());
            let uid = sc["runAsUser"].as_u64().expect("render sets runAsUser") as u32;
            let gid = sc["runAsGroup"].as_u64().expect("render sets runAsGroup") as u32;
            assert!(
                uid >= 10000 && gid >= 10000,
                "{w}/{name}: restricted UID/GID"
            );
            assert_eq!(facts.uids, vec![uid; 4], "{w}/{name}: Uid");
            assert_eq!(facts.gids, vec![gid; 4], "{w}/{name}: Gid");
            if sc["readOnlyRootFilesystem"].as_bool() == Some(true) {
                assert_eq!(info["HostConfig"]["ReadonlyRootfs"], true, "{w}/{name}");
                assert!(facts.root_read_only, "{w}/{name}: / mounted ro");
            }
            let drop_all = sc["capabilities"]["drop"]
                .as_sequence()
                .is_some_and(|d| d.iter().any(|x| x.as_str() == Some("ALL")));
            assert!(drop_all, "{w}/{name}: render drops ALL capabilities");
            assert_eq!(facts.cap_eff, 0, "{w}/{name}: CapEff");
            assert_eq!(facts.cap_bnd, 0, "{w}/{name}: CapBnd");
            if sc["allowPrivilegeEscalation"].as_bool() == Some(false) {
                assert!(facts.no_new_privs, "{w}/{name}: NoNewPrivs");
            }
            let env = proc_environ(pid);
            let db_url = env.iter().find(|(k, _)| k == "DATABASE_URL");
            assert_eq!(
                db_url.map(|(_, v)| v.as_str()),
                Some(secret_url.as_str()),
                "{w}/{name}: DATABASE_URL from the rendered Secret"
            );
            pid_namespaces.push(facts.pid_ns);
        }
        let shared = pid_namespaces.windows(2).all(|p| p[0] == p[1]);
        assert_eq!(
            shared, share_pid,
            "{w}: PID namespace shared exactly when the render asks ({pid_namespaces:?})"
        );
    }

    // 5. A job submitted to the API is processed by a worker pod.
    let job = submit(
        &stack,
        &api_ip,
        &json!({"kind": "sleep", "payload": {"ms": 200}}),
    );
    let id = job_id(&job);
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let j = get_job(&stack, &api_ip, &id);
        if j["status"] == "succeeded" {
            break j;
        }
        assert!(
            j["status"] != "dead" && Instant::now() < deadline,
            "job {id} did not succeed: {j}\n{}",
            k.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(done["attempts"], 1, "{done}");

    // 6. Graceful deletion of the API pod: preStop drains through berth, the
    //    API exits on SIGTERM well within the grace period.
    let api_name = api["name"].as_str().unwrap().to_string();
    k.delete_pod(&api_name);
    let gone = k.wait_for("API pod terminated", UP_TIMEOUT, |s| {
        s["pods"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == api_name.as_str() && p["phase"] == "Terminated")
            .cloned()
    });
    let m = main_container(&gone);
    let term = &m["termination"];
    let prestop = &term["prestop"];
    assert_eq!(prestop["detail"], "HTTP 200", "preStop: {term}");
    let body: Value =
        serde_json::from_str(prestop["body"].as_str().unwrap()).expect("prestop JSON");
    assert_eq!(body["status"], "drained", "{body}");
    assert_eq!(term["killed"], false, "API exited on SIGTERM: {term}");
    let b = container(&gone, "berth");
    assert!(
        b["termination"]["sigterm_at"].as_f64() >= m["exited_at"].as_f64(),
        "native sidecar stopped only after the main container: {gone}"
    );
    stack.kubelet.shutdown();
}

#[test]
fn serial_pod_worker_drain_loses_no_jobs() {
    if !pod_environment_ready() {
        return;
    }
    let stack = start_stack(&[(API, 1), (WORKER, 2), (REAPER, 1)], false);
    let k = &stack.kubelet;
    k.wait_all_ready(&[API, WORKER, REAPER], UP_TIMEOUT);
    let api_ip = ip(&k.pods_of(API)[0]);

    // Enough 3 s jobs that both workers hold some when one is deleted.
    let n = 24;
    let ids: Vec<String> = (0..n)
        .map(|_| {
            job_id(&submit(
                &stack,
                &api_ip,
                &json!({"kind": "sleep", "payload": {"ms": 3000}}),
            ))
        })
        .collect();
    // Delete a worker that, by its own metrics, holds jobs it has not finished.
    let victim_pod = k.pods_of(WORKER)[0].clone();
    let victim = victim_pod["name"].as_str().unwrap().to_string();
    let victim_metrics = format!("http://{}:9090/metrics", ip(&victim_pod));
    let held = k.wait_for(
        "victim worker holding jobs",
        Duration::from_secs(120),
        |_| {
            let (_, text) = http("GET", &victim_metrics, &[], None).ok()?;
            let held = metric_sum(&text, "worker_lease_acquired_total")
                - metric_sum(&text, "job_completed_total")
                - metric_sum(&text, "job_failed_total");
            (held >= 1.0).then_some(held)
        },
    );
    k.delete_pod(&victim);
    eprintln!("deleted {victim} while it held {held} job(s)");

    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let jobs: Vec<Value> = ids.iter().map(|id| get_job(&stack, &api_ip, id)).collect();
        let by_status = jobs.iter().fold(BTreeMap::new(), |mut m, j| {
            *m.entry(j["status"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
            m
        });
        assert!(!by_status.contains_key("dead"), "a job died: {by_status:?}");
        if by_status.get("succeeded") == Some(&n) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every job succeeded after draining {victim}: {by_status:?}\n{}",
            k.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let gone = k.wait_for("worker terminated", UP_TIMEOUT, |s| {
        s["pods"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == victim.as_str() && p["phase"] == "Terminated")
            .cloned()
    });
    let m = main_container(&gone);
    let term = &m["termination"];
    assert_eq!(term["prestop"]["detail"], "HTTP 200", "{term}");
    assert_eq!(
        term["killed"], false,
        "worker finished within its grace: {term}"
    );
    assert_eq!(m["exit_code"], 0, "worker exit code: {term}");
    stack.kubelet.shutdown();
}

/// Kubernetes 1.28 (no native sidecars): the chart renders berth as a
/// regular container in `mode: regular`. On deletion kubelet signals every
/// container at once (after each one's own preStop): berth, which has no
/// preStop, gets SIGTERM first and must keep serving (the API's preStop is a
/// call to berth) until that call returned, then exit on its own, not be
/// SIGKILLed at the end of the grace period. (the sidecar README says regular-mode berth
/// serves until the main process is gone; the API pod does not share its
/// PID namespace, so berth cannot see it and exits once the drain is done:
/// that ordering is not asserted here.)
#[test]
fn serial_pod_regular_sidecar_serves_the_app_prestop_on_deletion() {
    if !pod_environment_ready() {
        return;
    }
    let db = BridgePostgres::start();
    db.pg.create_database("jobqueue");
    let args: Vec<String> = vec![
        "--set".into(),
        "workloads.postgresql.enabled=false".into(),
        "--set".into(),
        "secrets.postgresql.enabled=false".into(),
        "--set-string".into(),
        format!(
            "secrets.jobqueue.stringData.DATABASE_URL={}",
            db.url_via("db-host", "jobqueue")
        ),
    ];
    let render = render_chart(
        RELEASE,
        &[repo_path("examples/jobqueue/values.yaml")],
        &args,
        "1.28.0",
    );
    let docs = parse_render(&render);
    let tmpl = template(&docs, API);
    let in_containers = tmpl["spec"]["containers"]
        .as_sequence()
        .is_some_and(|cs| cs.iter().any(|c| c["name"].as_str() == Some("berth")));
    assert!(in_containers, "1.28 render: berth is a regular container");
    let opts = KubeletOptions {
        scale: vec![(API.into(), 1)],
        add_hosts: vec![("db-host".into(), db.gateway.clone())],
        skip: vec![WORKER.into(), REAPER.into()],
        ..Default::default()
    };
    let k = Kubelet::start(&random_prefix(), &render, &opts);
    k.wait_all_ready(&[API], UP_TIMEOUT);
    let pod = k.pods_of(API)[0].clone();
    assert_eq!(container(&pod, "berth")["kind"], "main");
    let name = pod["name"].as_str().unwrap().to_string();
    k.delete_pod(&name);
    let gone = k.wait_for("API pod terminated", UP_TIMEOUT, |s| {
        s["pods"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name.as_str() && p["phase"] == "Terminated")
            .cloned()
    });
    let api = container(&gone, "api");
    let berth = container(&gone, "berth");
    let prestop: Value = serde_json::from_str(
        api["termination"]["prestop"]["body"]
            .as_str()
            .unwrap_or("{}"),
    )
    .unwrap_or(Value::Null);
    assert_eq!(
        prestop["status"], "drained",
        "API preStop through berth: {gone}"
    );
    assert_eq!(api["termination"]["killed"], false, "{gone}");
    assert_eq!(
        berth["termination"]["killed"], false,
        "berth exits by itself: {gone}"
    );
    // berth got its SIGTERM first (it has no preStop of its own) and still
    // served the API's preStop to the end: it exited only after that call
    // returned, i.e. after kubelet's SIGTERM to the API.
    assert!(
        berth["termination"]["sigterm_at"].as_f64() < api["termination"]["sigterm_at"].as_f64(),
        "berth was signalled at once, the API after its preStop: {gone}"
    );
    assert!(
        berth["exited_at"].as_f64() >= api["termination"]["sigterm_at"].as_f64(),
        "regular-mode berth kept serving until the API's preStop returned: {gone}"
    );
    k.shutdown();
}
