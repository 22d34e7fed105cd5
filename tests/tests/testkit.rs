//! The test kit itself: a private PostgreSQL and Redis start, answer, stop
//! and come back on the same port.

use berth_tests::{wait_for_port, Postgres, Redis};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn postgres_starts_stops_and_restarts_on_the_same_port() {
    let pg = Postgres::start();
    assert_eq!(pg.psql("postgres", "SELECT 40 + 2"), "42");
    pg.create_database("kit");
    assert_eq!(pg.psql("kit", "SELECT current_database()"), "kit");
    assert!(
        pg.url("kit").contains(&pg.password),
        "URL carries the credential"
    );
    pg.stop();
    assert!(!wait_for_port(pg.port, Duration::from_millis(300)));
    pg.restart();
    assert_eq!(pg.psql("kit", "SELECT 1"), "1");
}

fn redis_ping(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect redis");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"PING\r\n").expect("write");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).trim().to_string()
}

#[test]
fn redis_starts_stops_and_restarts_on_the_same_port() {
    let mut redis = Redis::start();
    assert_eq!(redis_ping(redis.port), "+PONG");
    redis.stop();
    assert!(!wait_for_port(redis.port, Duration::from_millis(300)));
    redis.restart();
    assert_eq!(redis_ping(redis.port), "+PONG");
}
