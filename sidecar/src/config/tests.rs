//! The configuration rules, through [`parse`] with an injected environment.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn err(yaml: &str) -> ConfigError {
    match parse(yaml, &no_env) {
        Ok(_) => panic!("expected an error for {yaml}"),
        Err(e) => e,
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("5x"), None);
    assert_eq!(parse_duration("s"), None);
}

#[test]
fn defaults() {
    let c = parse(
        "checks:\n  - {name: a, type: tcp, address: 'x:1'}\n",
        &no_env,
    )
    .expect("valid");
    assert_eq!(c.listen.port(), 8642);
    assert_eq!(c.mode, Mode::Regular);
    let a = &c.checks[0];
    assert!(a.critical);
    assert_eq!(a.interval, Duration::from_secs(5));
    assert_eq!(a.timeout, Duration::from_secs(2));
    assert_eq!((a.failure_threshold, a.success_threshold), (3, 1));
    assert_eq!(c.startup_wait_for, vec!["a".to_string()]);
    assert_eq!(c.drain.delay, Duration::from_secs(5));
    assert_eq!(c.drain.timeout, Duration::from_secs(45));
}

#[test]
fn lifecycle_needs_a_long_token_and_its_own_port() {
    assert!(parse("", &no_env).expect("valid").lifecycle.is_none());
    let c = parse("lifecycle: {token: 0123456789abcdef}", &no_env).expect("valid");
    let lc = c.lifecycle.expect("lifecycle");
    assert_eq!(lc.listen.to_string(), DEFAULT_LIFECYCLE_LISTEN);
    assert_eq!(lc.token, "0123456789abcdef");
    let e = err("lifecycle: {token: short-secret}");
    assert_eq!(e.field, "lifecycle.token");
    assert!(!e.message.contains("short-secret"), "{e}");
    assert_eq!(
        err("lifecycle: {listen: 0.0.0.0:9}").field,
        "lifecycle.token"
    );
    assert_eq!(
        err("lifecycle: {listen: 0.0.0.0:8642, token: 0123456789abcdef}").field,
        "lifecycle.listen"
    );
    assert_eq!(
        err("lifecycle: {token: \"0123456789 abcdef\"}").field,
        "lifecycle.token"
    );
    assert_eq!(err("lifecycle: {tokn: x}").field, "lifecycle.tokn");
    let e = parse("lifecycle: {token: \"${T}\"}", &|v| {
        (v == "T").then(|| "tiny".to_string())
    })
    .expect_err("too short");
    assert!(!e.to_string().contains("tiny"), "{e}");
}

#[test]
fn errors_name_the_field() {
    assert_eq!(err("bogus: 1").field, "bogus");
    assert_eq!(
        err("checks:\n  - {name: a, type: tcp, address: 'x:1', interval: 1s, timeout: 1s}").field,
        "checks[0].timeout"
    );
    assert_eq!(
        err("checks:\n  - {name: a, type: tcp, address: 'x:1', interval: 5}").field,
        "checks[0].interval"
    );
    assert_eq!(
        err("checks:\n  - {name: a, type: tcp, address: 'x:1'}\n  - {name: a, type: tcp, address: 'x:1'}").field,
        "checks[1].name"
    );
    assert_eq!(
        err("checks:\n  - {name: a, type: mongo}").field,
        "checks[0].type"
    );
    assert_eq!(
        err("checks:\n  - {name: a, type: postgres, url: 'postgres://u:secret@h:x/d'}").field,
        "checks[0].url"
    );
    assert_eq!(
        err("checks:\n  - {name: a, type: tcp, address: 'x:1'}\nstartup:\n  waitFor: [b]").field,
        "startup.waitFor"
    );
    assert_eq!(
        err("drain:\n  notify: {type: signal, process: x, signal: SIGNOPE}").field,
        "drain.notify.signal"
    );
}

#[test]
fn url_errors_do_not_echo_the_password() {
    let e = err("checks:\n  - {name: a, type: postgres, url: 'postgres://u:secret@h:x/d'}");
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn secrets_from_env_are_never_echoed_in_errors() {
    let secret = "hunter2-very-secret";
    let env = |k: &str| (k == "S").then(|| secret.to_string());
    for yaml in [
        "mode: ${S}",
        "listen: ${S}",
        "checks:\n  - {name: a, type: tcp, address: '${S}'}",
        "checks:\n  - {name: a, type: tcp, address: 'x:1', interval: '${S}'}",
        "checks:\n  - {name: a, type: tcp, address: 'x:1', failureThreshold: '${S}'}",
        "checks:\n  - {name: a, type: tcp, address: 'x:1', critical: '${S}'}",
        "checks:\n  - {name: a, type: '${S}'}",
        "checks:\n  - {name: a, type: postgres, url: '${S}'}",
        "checks:\n  - {name: a, type: redis, url: '${S}'}",
        "checks:\n  - {name: a, type: http, url: '${S}'}",
        "checks:\n  - {name: a, type: http, url: 'http://x:1/', expectStatus: '${S}'}",
        "drain:\n  notify: {type: '${S}'}",
        "drain:\n  notify: {type: signal, process: x, signal: '${S}'}",
        "startup:\n  waitFor: ['${S}']",
        "lifecycle: {token: '${S}${S}', listen: '${S}'}",
    ] {
        let e = parse(yaml, &env).expect_err(yaml);
        assert!(!e.to_string().contains("hunter2"), "{yaml}: {e}");
    }
}

#[test]
fn shape_errors_name_the_field_without_quoting_values() {
    let e = err("checks: 5");
    assert_eq!(e.field, "checks");
    let e = err("drain: [a-secret-value]");
    assert_eq!(e.field, "drain");
    assert!(!e.message.contains("a-secret-value"), "{e}");
    let e = err("drain:\n  delay: {x: 1}");
    assert_eq!(e.field, "drain.delay");
    let e = err("checks:\n  - {name: a, type: tcp, address: 'x:1', port: 5}");
    assert_eq!(e.field, "checks[0].port");
    assert!(e.message.contains("unknown key"), "{e}");
    let e = err("checks:\n  - {name: a, type: tcp, address: [secret-list]}");
    assert_eq!(e.field, "checks[0].address");
    assert!(!e.message.contains("secret-list"), "{e}");
    let e = err("key: [unclosed");
    assert_eq!(e.field, "config");
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(err(&deep).field, "config");
}

#[test]
fn groups_name_existing_checks() {
    let base = "checks:\n  - {name: pg, type: tcp, address: 'x:1'}\n  - {name: cache, type: tcp, address: 'x:2', critical: false}\n";
    let c = parse(&format!("{base}groups:\n  db: [pg, cache]\n"), &no_env).expect("valid");
    assert_eq!(c.groups["db"], vec!["pg".to_string(), "cache".to_string()]);
    assert_eq!(
        err(&format!("{base}groups:\n  db: [pg, nope]\n")).field,
        "groups.db"
    );
    assert_eq!(
        err(&format!("{base}groups:\n  pg: [cache]\n")).field,
        "groups.pg"
    );
    assert_eq!(
        err(&format!("{base}groups:\n  db: []\n")).field,
        "groups.db"
    );
}

#[test]
fn driver_suffixes_of_postgres_urls_are_accepted() {
    for url in [
        "postgresql+asyncpg://u@h:5432/d",
        "postgresql+psycopg://u@h/d",
        "postgres://u@h/d",
    ] {
        parse(
            &format!("checks:\n  - {{name: a, type: postgres, url: '{url}'}}"),
            &no_env,
        )
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    assert_eq!(
        err("checks:\n  - {name: a, type: postgres, url: 'mysql+x://u@h/d'}").field,
        "checks[0].url"
    );
}

#[test]
fn fragments_of_expanded_values_are_not_quoted_by_other_crates_messages() {
    // berth-tls quotes a bad sslmode, truncated: the fragment is still a secret.
    let env = |k: &str| (k == "S").then(|| "Zq9-fuzz-secret-value-7Kp".to_string());
    for yaml in [
        "checks:\n  - {name: db, type: postgres, url: \"postgres://h/d?sslmode=prefe${S}r\"}",
        "checks:\n  - {name: db, type: postgres, url: \"postgres://h/d?sslmode=${S}\"}",
    ] {
        let e = parse(yaml, &env).expect_err(yaml);
        assert!(!e.to_string().contains("Zq9-fu"), "{e}");
        assert_eq!(e.field, "checks[0].url");
    }
}
