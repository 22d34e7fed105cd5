//! Mutation fuzzing of berth's configuration: valid configs of every check
//! type, mutated thousands of times (bytes flipped, cut, repeated; hostile
//! tokens spliced in: `${file:/dev/zero}`, a secret variable, NUL, deep
//! nesting, YAML aliases, huge numbers). For every input, `config::parse`
//! must return (no panic, no hang) and no error may contain the secret.
//! A sample also goes through the real `berth check-config`: exit 0 or 64,
//! one line on stderr, within a few seconds.
//!
//! Deterministic (a fixed xorshift seed): a failure names the case number
//! and prints the input, so it can be replayed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "Zq9-fuzz-secret-value-7Kp";

const CORPUS: &[&str] = &[
    "listen: 0.0.0.0:8642\nmode: native\ntoken: ${TOKEN}\nchecks:\n  - {name: db, type: postgres, url: \"postgres://app:${PASSWORD}@db:5432/app?sslmode=prefer\", interval: 5s, timeout: 2s}\n  - {name: cache, type: redis, url: \"redis://:${PASSWORD}@cache:6379/0\", critical: false}\nstartup:\n  waitFor: [db]\ndrain:\n  delay: 5s\n  timeout: 45s\n  notify: {type: signal, process: app, signal: SIGTERM}\n",
    "checks:\n  - {name: app, type: http, url: \"http://127.0.0.1:8000/healthz\", expectStatus: 200-299}\n  - {name: port, type: tcp, address: \"127.0.0.1:8000\", failureThreshold: 2, successThreshold: 2}\n  - {name: beat, type: file, path: /tmp/heartbeat, maxAge: 30s}\n  - {name: worker, type: process, command: jobqueue}\ngroups:\n  local: [app, port]\ndrain:\n  waitUntilDown: [app]\n  notify: {type: http, url: \"http://127.0.0.1:8000/drain\"}\n",
    "grpcListen: 127.0.0.1:8644\nlifecycle:\n  listen: 0.0.0.0:8643\n  token: ${TOKEN}\nchecks:\n  - {name: mq, type: amqp, url: \"amqp://guest:${PASSWORD}@mq:5672/%2f\"}\n  - {name: sql, type: mysql, url: \"mysql://root:${PASSWORD}@db:3306/app\"}\n  - {name: bus, type: nats, url: \"nats://u:${PASSWORD}@nats:4222\"}\n  - {name: name, type: dns, host: db.internal, expect: [10.0.0.1]}\n  - {name: api, type: https, url: \"https://api.example/healthz\", insecureSkipVerify: true}\n  - {name: rpc, type: grpc, address: \"rpc:50051\", service: \"\"}\n",
    "checks:\n- name: a\n  type: tcp\n  address: ${ADDR}\n  interval: 1m30s\n  timeout: 500ms\n",
];

const TOKENS: &[&str] = &[
    "${file:/dev/zero}",
    "${file:/proc/self/mem}",
    "${PASSWORD}",
    "${TOKEN}",
    "${ADDR}",
    "${UNSET_VAR}",
    "${",
    "$${",
    "\0",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "{a: {b: {c: {d: {e: {f: {g: {h: 1}}}}}}}}",
    "&anchor x",
    "*anchor",
    "!!binary aGVsbG8=",
    "99999999999999999999999999999",
    "-1",
    "1e309",
    "0.0000000001ms",
    "\u{202e}\u{feff}é漢",
    "\n  - ",
    ": ",
    "\t",
    "---\n",
    "~",
    "''",
    "\"\\u0000\"",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &str) -> String {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let end = (at + rng.below(20)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                bytes.splice(at..at, t.bytes());
            }
            3 if !bytes.is_empty() => {
                let start = rng.below(bytes.len());
                let end = (start + rng.below(60)).min(bytes.len());
                let chunk: Vec<u8> = bytes[start..end].to_vec();
                bytes.splice(at..at, chunk);
            }
            4 => {
                // Replace a value after a colon with a hostile token.
                if let Some(pos) = bytes[at.min(bytes.len())..].iter().position(|b| *b == b':') {
                    let p = at + pos + 1;
                    let t = TOKENS[rng.below(TOKENS.len())];
                    bytes.splice(p..p, format!(" {t}").into_bytes());
                }
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn env(name: &str) -> Option<String> {
    match name {
        "PASSWORD" | "TOKEN" => Some(SECRET.to_string()),
        "ADDR" => Some(format!("{SECRET}:5432")),
        _ => None,
    }
}

#[test]
fn mutated_configs_never_panic_hang_or_leak() {
    let mut rng = Rng(0x5eed_0bad_f00d_1234);
    for valid in CORPUS {
        berth::config::parse(valid, &env)
            .unwrap_or_else(|e| panic!("corpus entry invalid: {e}\n{valid}"));
    }
    let mut slowest = Duration::ZERO;
    let (mut ok, mut rejected) = (0, 0);
    for case in 0..20_000 {
        let base = CORPUS[rng.below(CORPUS.len())];
        let input = mutate(&mut rng, base);
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| berth::config::parse(&input, &env));
        let took = started.elapsed();
        slowest = slowest.max(took);
        let result = result.unwrap_or_else(|_| panic!("case {case} panicked on:\n{input:?}"));
        assert!(
            took < Duration::from_secs(2),
            "case {case} took {took:?}:\n{input:?}"
        );
        match result {
            Ok(_) => ok += 1,
            Err(e) => {
                rejected += 1;
                let text = e.to_string();
                assert!(
                    !text.contains(SECRET) && !text.contains("Zq9-fuzz"),
                    "case {case} leaked the secret: {text}\n{input:?}"
                );
                assert!(!text.contains('\n'), "case {case}: not one line: {text:?}");
                assert!(!e.field.is_empty(), "case {case}: no field named: {text}");
            }
        }
    }
    eprintln!(
        "20000 mutated configs: {ok} accepted, {rejected} rejected, slowest parse {slowest:?}"
    );
    assert!(
        rejected > 1000 && ok > 100,
        "the mutations exercise both paths"
    );
}

#[test]
fn the_binary_answers_exit_0_or_64_in_one_line() {
    let mut rng = Rng(0xfeed_0000_1234_5679);
    let dir = tempfile::tempdir().unwrap();
    for case in 0..150 {
        let base = CORPUS[rng.below(CORPUS.len())];
        let input = mutate(&mut rng, base);
        let path = dir.path().join(format!("c{case}.yaml"));
        std::fs::write(&path, &input).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("check-config")
            .arg(&path)
            .env("PASSWORD", SECRET)
            .env("TOKEN", SECRET)
            .env("ADDR", format!("{SECRET}:5432"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("case {case}: check-config hung on:\n{input:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        match out.status.code() {
            Some(0) => assert!(stdout.contains(": ok ("), "case {case}: {stdout}"),
            Some(64) => assert_eq!(stderr.lines().count(), 1, "case {case}: {stderr}"),
            other => panic!("case {case}: exit {other:?}: {stderr}\n{input:?}"),
        }
        assert!(
            !stderr.contains(SECRET) && !stdout.contains(SECRET),
            "case {case} leaked: {stderr}"
        );
    }
}
