//! A TCP forwarder to put between a client and a *shared* server.
//!
//! Outage tests need a dependency that goes away and comes back. For the
//! servers this kit starts itself (PostgreSQL, Redis) the test stops the
//! server; the machine's MariaDB, RabbitMQ and NATS are shared by every
//! test and must keep running. So the test talks to them through a
//! [`Forwarder`] on a port of its own and stops *that*: new connections
//! are refused and the open ones are cut, exactly what a client sees when
//! its server dies, while the real server never notices.
//!
//! It also counts the connections it accepted, which is how a test proves
//! that a client keeps one connection between runs.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Open connections by number: (client side, server side).
type Open = Arc<Mutex<HashMap<usize, (TcpStream, TcpStream)>>>;

/// Forwards `127.0.0.1:port` to a target address; stops and starts on demand.
pub struct Forwarder {
    pub port: u16,
    target: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Both halves of every open forwarded connection, to cut them on stop.
    open: Open,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Forwarder {
    /// Listens on a free port and forwards to `target` (`host:port`).
    pub fn start(target: &str) -> Forwarder {
        let target = std::net::ToSocketAddrs::to_socket_addrs(target)
            .expect("resolve forward target")
            .next()
            .expect("forward target has an address");
        let mut f = Forwarder {
            port: crate::free_port(),
            target,
            accepted: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(Mutex::new(HashMap::new())),
            running: None,
        };
        f.resume();
        f
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes the listening socket (new connections are refused) and cuts
    /// every open connection. Idempotent.
    pub fn stop(&mut self) {
        if let Some((stop, handle)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = handle.join();
        }
        for (_, (client, server)) in self.open.lock().expect("lock").drain() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port after [`Forwarder::stop`].
    pub fn resume(&mut self) {
        if self.running.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline && e.kind() == ErrorKind::AddrInUse => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("forwarder cannot bind 127.0.0.1:{}: {e}", self.port),
            }
        };
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let (target, accepted, open) = (self.target, self.accepted.clone(), self.open.clone());
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // Polling keeps stop() simple: no wake-up connection needed.
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let id = accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = client.set_nonblocking(false);
                        let Ok(server) =
                            TcpStream::connect_timeout(&target, Duration::from_secs(5))
                        else {
                            continue; // dropping `client` closes it
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        pipe(id, &client, &server, &open);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.running = Some((stop, handle));
    }
}

/// Copies both ways on two threads; each direction ends at EOF or error
/// and then shuts the other side's write half. The connection leaves
/// `open` (closing its sockets) when both directions are done.
fn pipe(id: usize, client: &TcpStream, server: &TcpStream, open: &Open) {
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = clones else {
        return;
    };
    if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
        open.lock().expect("lock").insert(id, (c, s));
    }
    let done = Arc::new(AtomicUsize::new(0));
    for (from, to) in [(c1, s1), (s2, c2)] {
        let (open, done) = (open.clone(), done.clone());
        std::thread::spawn(move || {
            copy(from, to);
            if done.fetch_add(1, Ordering::SeqCst) == 1 {
                open.lock().expect("lock").remove(&id);
            }
        });
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_stops_and_resumes() {
        let echo = TcpListener::bind("127.0.0.1:0").expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut s in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let mut f = Forwarder::start(&echo_addr.to_string());
        let round_trip = |f: &Forwarder| -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect(f.addr())?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            Ok(buf.to_vec())
        };
        assert_eq!(round_trip(&f).expect("forwarded"), b"ping");
        let mut held = TcpStream::connect(f.addr()).expect("connect");
        std::thread::sleep(Duration::from_millis(50));
        f.stop();
        let err = TcpStream::connect(f.addr()).expect_err("refused while stopped");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        held.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 4];
        assert!(
            matches!(held.read(&mut buf), Ok(0) | Err(_)),
            "open connection cut"
        );
        f.resume();
        assert_eq!(round_trip(&f).expect("forwarded again"), b"ping");
        assert_eq!(f.accepted(), 3);
    }
}
