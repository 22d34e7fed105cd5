//! `mysql`: MySQL/MariaDB login, then `COM_PING` over one long-lived
//! connection (`COM_PING` again on every run; reconnecting after any error).
//!
//! The client protocol is spoken by hand (see `wire`): the v10 handshake,
//! an optional `SSLRequest` + TLS upgrade, `HandshakeResponse41` with
//! `mysql_native_password` (MariaDB's default) or the fast path of
//! `caching_sha2_password` (MySQL 8's default), and `COM_PING` → OK. That
//! is a few hundred lines instead of a full client crate.
//!
//! `url: mysql://user:password@host:3306/db?ssl-mode=…&ssl-ca=/path/ca.pem`
//! (`mariadb://` and SQLAlchemy's `mysql+driver://` too). `ssl-mode` as
//! the `mysql` client has it: `disabled`, `preferred` (default: TLS if the
//! server offers it), `required`, `verify_ca`, `verify_identity`. Without
//! `ssl-ca`, `preferred`/`required` encrypt without authenticating the
//! server (as the `mysql` client does) and the `verify_*` modes use the
//! compiled-in Mozilla roots.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ring::digest;
use rustls::ClientConfig;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::{self, Reader, ServiceUrl, Stream, Verify};
use super::{CheckDef, CheckType, Probe};
use crate::config::{ConfigError, Cx, Scalar};
use crate::redact::{CheckError, Secrets};

pub const TYPE: CheckType = CheckType {
    name: "mysql",
    keys: &["url"],
    parse,
};

/// No answer of a health check comes near this; a bigger length is a
/// confused (or hostile) peer, refused before allocating.
const MAX_PACKET: usize = 1024 * 1024;

// Capability flags (MySQL client/server protocol).
const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
const CLIENT_LONG_FLAG: u32 = 0x0000_0004;
const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_TRANSACTIONS: u32 = 0x0000_2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;

const COM_PING: u8 = 0x0e;
/// utf8mb4_general_ci: known to every server since MySQL 5.5 / MariaDB 5.5.
const CHARSET: u8 = 45;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    url: Option<Scalar>,
}

/// `ssl-mode`, as the `mysql` client spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "disabled" | "disable" => SslMode::Disabled,
            "preferred" | "prefer" => SslMode::Preferred,
            "required" | "require" => SslMode::Required,
            "verify_ca" => SslMode::VerifyCa,
            "verify_identity" | "verify_full" => SslMode::VerifyIdentity,
            _ => return None,
        })
    }
}

/// Everything a connection needs, read once at load time.
struct Target {
    host: String,
    port: u16,
    user: String,
    password: String,
    db: Option<String>,
    mode: SslMode,
    /// `None` with `ssl-mode=disabled`.
    tls: Option<Arc<ClientConfig>>,
}

struct Mysql {
    url: String,
    target: Arc<Target>,
}

// The URL carries the password: never print it, even in Debug. The
// identity used for reloads is a hash of it.
impl std::fmt::Debug for Mysql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::redact::debug_url(f, "Mysql", &self.url)
    }
}

fn parse(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError> {
    let f: Fields = cx.fields(fields, path)?;
    let field = format!("{path}.url");
    let url = cx.required(&field, &f.url, " for a mysql check")?;
    let target = target(&url.value).map_err(|m| {
        // Only the CA file error names something from the URL (its path).
        let m = if m.starts_with("ssl-ca: ") {
            wire::ca_message(m, &url, "ssl-ca")
        } else {
            m
        };
        ConfigError::new(&field, m)
    })?;
    Ok(Arc::new(Mysql {
        url: url.value,
        target: Arc::new(target),
    }))
}

/// Messages never repeat the URL or any part of it but option names.
fn target(url: &str) -> Result<Target, String> {
    let u = ServiceUrl::parse(url, &["mysql", "mariadb"], |_| 3306)?;
    let Some(user) = u.user.clone() else {
        return Err("has no user name (mysql://user:password@host:3306/db)".into());
    };
    let mode = match u
        .param("ssl-mode")
        .or(u.param("ssl_mode"))
        .or(u.param("sslmode"))
    {
        None => SslMode::Preferred,
        Some(m) => SslMode::parse(m).ok_or(
            "has an unknown ssl-mode (expected disabled, preferred, required, verify_ca or verify_identity)",
        )?,
    };
    let ca = u.param("ssl-ca").or(u.param("ssl_ca")).or(u.param("sslca"));
    // With a CA, even `preferred`/`required` check the chain: a CA given
    // and then ignored would be a surprise.
    let verify = match (mode, ca) {
        (SslMode::VerifyIdentity, _) => Verify::Full,
        (SslMode::VerifyCa, _) | (_, Some(_)) => Verify::Chain,
        _ => Verify::Nothing,
    };
    let tls = match mode {
        SslMode::Disabled => None,
        _ => Some(wire::tls_config(verify, &wire::roots(ca)).map_err(|e| format!("ssl-ca: {e}"))?),
    };
    Ok(Target {
        host: u.host.clone(),
        port: u.port,
        user,
        password: u.password.clone().unwrap_or_default(),
        db: u.path.clone().filter(|d| !d.is_empty()),
        mode,
        tls,
    })
}

impl CheckDef for Mysql {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn probe(&self, _timeout: Duration) -> Box<dyn Probe> {
        Box::new(MysqlProbe {
            target: self.target.clone(),
            conn: None,
        })
    }

    fn add_secrets(&self, secrets: &mut Secrets) {
        secrets.add(&self.target.password);
        secrets.add_url_userinfo(&self.url);
    }
}

struct MysqlProbe {
    target: Arc<Target>,
    conn: Option<Stream>,
}

impl Probe for MysqlProbe {
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            if let Some(mut conn) = self.conn.take() {
                match ping(&mut conn, secrets).await {
                    Ok(()) => {
                        self.conn = Some(conn);
                        return Ok(());
                    }
                    // The server answered: its answer is the result.
                    Err(e) if e.kind != "connection_lost" && e.kind != "io_error" => return Err(e),
                    // A connection that died between runs (server restart,
                    // proxy idle timeout) says nothing about the server
                    // now: try a fresh one before reporting.
                    Err(_) => {}
                }
            }
            let mut conn = login(&self.target, secrets).await?;
            ping(&mut conn, secrets).await?;
            self.conn = Some(conn);
            Ok(())
        })
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}

async fn ping(conn: &mut Stream, secrets: &Secrets) -> Result<(), CheckError> {
    write_packet(conn, 0, &[COM_PING], secrets).await?;
    let (_, reply) = read_packet(conn, secrets).await?;
    match reply.first() {
        Some(0x00) => Ok(()),
        Some(0xff) => Err(server_error(&reply, secrets)),
        _ => Err(CheckError::new(
            "protocol_error",
            "unexpected answer to COM_PING",
        )),
    }
}

/// The server's greeting (protocol v10), the parts a login needs.
struct Greeting {
    capabilities: u32,
    nonce: Vec<u8>,
    plugin: String,
}

fn parse_greeting(p: &[u8], secrets: &Secrets) -> Result<Greeting, CheckError> {
    let mut r = Reader::new(p);
    match r.u8()? {
        10 => {}
        // Refused before the handshake: too many connections, host blocked.
        0xff => return Err(server_error(p, secrets)),
        v => {
            return Err(CheckError::new(
                "protocol_error",
                format!("not a MySQL server (protocol version {v})"),
            ))
        }
    }
    r.nul_str(); // server version
    r.u32_le()?; // connection id
    let mut nonce = r.bytes(8)?.to_vec();
    r.u8()?; // filler
    let mut capabilities = u32::from(r.u16_le()?);
    if r.is_empty() {
        return Ok(Greeting {
            capabilities,
            nonce,
            plugin: "mysql_native_password".into(),
        });
    }
    r.u8()?; // character set
    r.u16_le()?; // status flags
    capabilities |= u32::from(r.u16_le()?) << 16;
    let data_len = usize::from(r.u8()?);
    r.bytes(10)?; // reserved (MariaDB: extended capabilities)
    if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        let n = data_len.saturating_sub(8).max(13);
        let part2 = r.bytes(n)?;
        // The scramble is 20 bytes; part 2 ends with a NUL.
        nonce.extend(part2.iter().take(12));
    }
    let plugin = if capabilities & CLIENT_PLUGIN_AUTH != 0 {
        String::from_utf8_lossy(r.nul_str()).into_owned()
    } else {
        "mysql_native_password".into()
    };
    Ok(Greeting {
        capabilities,
        nonce,
        plugin,
    })
}

async fn login(t: &Target, secrets: &Secrets) -> Result<Stream, CheckError> {
    let mut tcp = wire::connect(&t.host, t.port, secrets).await?;
    let (seq, greeting) = read_packet(&mut tcp, secrets).await?;
    let greeting = parse_greeting(&greeting, secrets)?;
    let server = greeting.capabilities;
    if server & CLIENT_PROTOCOL_41 == 0 || server & CLIENT_SECURE_CONNECTION == 0 {
        return Err(CheckError::new(
            "protocol_error",
            "server predates MySQL 4.1's protocol",
        ));
    }
    let mut caps = CLIENT_LONG_PASSWORD
        | CLIENT_LONG_FLAG
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | (server & CLIENT_PLUGIN_AUTH);
    if t.db.is_some() {
        caps |= server & CLIENT_CONNECT_WITH_DB;
    }
    let mut seq = seq.wrapping_add(1);
    let use_tls = match (&t.tls, server & CLIENT_SSL != 0) {
        (None, _) => false,
        (Some(_), true) => true,
        (Some(_), false) if t.mode == SslMode::Preferred => false,
        (Some(_), false) => {
            return Err(CheckError::new(
                "tls_failed",
                "the server does not offer TLS (ssl-mode asks for it)",
            ))
        }
    };
    let mut conn: Stream = match (&t.tls, use_tls) {
        (Some(config), true) => {
            caps |= CLIENT_SSL;
            // SSLRequest: the first 32 bytes of a HandshakeResponse41.
            let mut req = Vec::with_capacity(32);
            req.extend(caps.to_le_bytes());
            req.extend((MAX_PACKET as u32).to_le_bytes());
            req.push(CHARSET);
            req.extend([0u8; 23]);
            write_packet(&mut tcp, seq, &req, secrets).await?;
            seq = seq.wrapping_add(1);
            wire::tls_connect(config, &t.host, tcp, secrets).await?
        }
        _ => Box::new(tcp),
    };

    // The server's preferred plugin if berth speaks it; otherwise
    // mysql_native_password, and the server switches if it must.
    let plugin = match greeting.plugin.as_str() {
        "caching_sha2_password" => "caching_sha2_password",
        _ => "mysql_native_password",
    };
    let auth = auth_response(plugin, &t.password, &greeting.nonce, use_tls)?;
    let mut resp = Vec::with_capacity(64 + t.user.len());
    resp.extend(caps.to_le_bytes());
    resp.extend((MAX_PACKET as u32).to_le_bytes());
    resp.push(CHARSET);
    resp.extend([0u8; 23]);
    resp.extend(t.user.as_bytes());
    resp.push(0);
    // A short scramble: its length fits the one-byte prefix.
    resp.push(auth.len() as u8);
    resp.extend(&auth);
    if caps & CLIENT_CONNECT_WITH_DB != 0 {
        if let Some(db) = &t.db {
            resp.extend(db.as_bytes());
            resp.push(0);
        }
    }
    if caps & CLIENT_PLUGIN_AUTH != 0 {
        resp.extend(plugin.as_bytes());
        resp.push(0);
    }
    write_packet(&mut conn, seq, &resp, secrets).await?;

    let mut plugin = plugin.to_string();
    // OK, ERR, or a few more rounds (auth switch, caching_sha2's answer):
    // bounded, so a confused server cannot keep berth in a loop.
    for _ in 0..6 {
        let (seq, p) = read_packet(&mut conn, secrets).await?;
        let next = seq.wrapping_add(1);
        match p.first() {
            Some(0x00) => return Ok(conn),
            Some(0xff) => return Err(server_error(&p, secrets)),
            // AuthSwitchRequest: another plugin, with a fresh scramble.
            Some(0xfe) => {
                let mut r = Reader::new(&p[1..]);
                plugin = String::from_utf8_lossy(r.nul_str()).into_owned();
                let data = r.rest();
                let nonce = data.strip_suffix(&[0]).unwrap_or(data);
                let auth = auth_response(&plugin, &t.password, nonce, use_tls)?;
                write_packet(&mut conn, next, &auth, secrets).await?;
            }
            // caching_sha2_password: 3 = the fast path worked (OK follows),
            // 4 = full authentication, which needs the clear password: only
            // over TLS (without it MySQL wants RSA, which berth does not do).
            Some(0x01) if plugin == "caching_sha2_password" => match p.get(1) {
                Some(3) => {}
                Some(4) if use_tls => {
                    let mut pw = t.password.as_bytes().to_vec();
                    pw.push(0);
                    write_packet(&mut conn, next, &pw, secrets).await?;
                }
                Some(4) => {
                    return Err(CheckError::new(
                        "auth_unsupported",
                        "caching_sha2_password full authentication needs TLS \
                         (ssl-mode=required) when the server has no cached login for this user",
                    ))
                }
                _ => {
                    return Err(CheckError::new(
                        "protocol_error",
                        "unexpected caching_sha2_password message",
                    ))
                }
            },
            _ => {
                return Err(CheckError::new(
                    "protocol_error",
                    "unexpected message during login",
                ))
            }
        }
    }
    Err(CheckError::new(
        "protocol_error",
        "login did not finish after several rounds",
    ))
}

/// The scramble `plugin` wants for `password`.
fn auth_response(
    plugin: &str,
    password: &str,
    nonce: &[u8],
    tls: bool,
) -> Result<Vec<u8>, CheckError> {
    if password.is_empty() && plugin != "mysql_clear_password" {
        return Ok(Vec::new());
    }
    let pw = password.as_bytes();
    match plugin {
        // SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))
        "mysql_native_password" => {
            let sha1 = |parts: &[&[u8]]| {
                let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
                for p in parts {
                    ctx.update(p);
                }
                ctx.finish()
            };
            let h1 = sha1(&[pw]);
            let h2 = sha1(&[h1.as_ref()]);
            let h3 = sha1(&[nonce.get(..20).unwrap_or(nonce), h2.as_ref()]);
            Ok(xor(h1.as_ref(), h3.as_ref()))
        }
        // SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)
        "caching_sha2_password" => {
            let sha256 = |parts: &[&[u8]]| {
                let mut ctx = digest::Context::new(&digest::SHA256);
                for p in parts {
                    ctx.update(p);
                }
                ctx.finish()
            };
            let h1 = sha256(&[pw]);
            let h2 = sha256(&[h1.as_ref()]);
            let h3 = sha256(&[h2.as_ref(), nonce.get(..20).unwrap_or(nonce)]);
            Ok(xor(h1.as_ref(), h3.as_ref()))
        }
        // PAM/LDAP-style plugins want the password itself: never in clear text.
        "mysql_clear_password" if tls => {
            let mut v = pw.to_vec();
            v.push(0);
            Ok(v)
        }
        other => Err(CheckError::new(
            "auth_unsupported",
            format!(
                "the server asks for authentication plugin {:?}, which berth does not speak{}",
                other.chars().take(40).collect::<String>(),
                if other == "mysql_clear_password" {
                    " without TLS"
                } else {
                    ""
                }
            ),
        )),
    }
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// An ERR packet → a failure kind; the message is the server's, scrubbed
/// (it names the user, never the password).
fn server_error(p: &[u8], secrets: &Secrets) -> CheckError {
    let mut r = Reader::new(p.get(1..).unwrap_or_default());
    let code = r.u16_le().unwrap_or(0);
    let mut rest = r.rest();
    if rest.first() == Some(&b'#') && rest.len() >= 6 {
        rest = &rest[6..]; // '#' + SQLSTATE
    }
    let message: String = String::from_utf8_lossy(rest).chars().take(300).collect();
    let kind = match code {
        1044 | 1045 | 1698 => "auth_failed",
        1049 => "database_not_found",
        1129 | 1130 => "not_allowed",
        1040 | 1053 | 1203 => "server_unavailable",
        _ => "mysql_error",
    };
    CheckError::new(kind, secrets.scrub(&format!("{code}: {message}")))
}

async fn write_packet<W: tokio::io::AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    seq: u8,
    payload: &[u8],
    secrets: &Secrets,
) -> Result<(), CheckError> {
    let len = payload.len() as u32;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend(&len.to_le_bytes()[..3]);
    buf.push(seq);
    buf.extend(payload);
    w.write_all(&buf)
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))?;
    w.flush()
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))
}

/// One packet: 3-byte length, sequence number, payload (capped).
async fn read_packet<R: tokio::io::AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    secrets: &Secrets,
) -> Result<(u8, Vec<u8>), CheckError> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head)
        .await
        .map_err(|e| CheckError::from_io(&e, secrets))?;
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let payload = wire::read_exact_capped(r, len, MAX_PACKET, "a MySQL packet", secrets).await?;
    Ok((head[3], payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_scramble_matches_the_reference() {
        // From a captured MariaDB handshake: password "secret".
        let nonce = b"abcdefghijklmnopqrst";
        let got = auth_response("mysql_native_password", "secret", nonce, false).expect("ok");
        assert_eq!(got.len(), 20);
        // SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))), recomputed step by step.
        let h1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, b"secret");
        let h2 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, h1.as_ref());
        let mut cat = nonce.to_vec();
        cat.extend(h2.as_ref());
        let h3 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cat);
        assert_eq!(got, xor(h1.as_ref(), h3.as_ref()));
        assert!(auth_response("mysql_native_password", "", nonce, false)
            .expect("ok")
            .is_empty());
        let e = auth_response("mysql_clear_password", "secret", nonce, false).expect_err("no TLS");
        assert_eq!(e.kind, "auth_unsupported");
        assert!(!e.detail.contains("secret"));
    }

    #[test]
    fn url_options() {
        let t = target("mysql://u:pw@db.example:3307/app?ssl-mode=VERIFY_IDENTITY").expect("valid");
        assert_eq!(
            (t.host.as_str(), t.port, t.db.as_deref()),
            ("db.example", 3307, Some("app"))
        );
        assert_eq!(t.mode, SslMode::VerifyIdentity);
        let t = target("mariadb://u@h").expect("valid");
        assert_eq!(
            (t.port, t.mode, t.password.as_str()),
            (3306, SslMode::Preferred, "")
        );
        let t = target("mysql://u:p@h/?ssl-mode=disabled").expect("valid");
        assert!(t.tls.is_none() && t.db.is_none());
        for bad in [
            "mysql://h/db",
            "mysql://u:pw@h/db?ssl-mode=sometimes",
            "postgres://u:pw@h/db",
            "mysql://u:pw@h/db?ssl-mode=required&ssl-ca=/nonexistent/ca.pem",
        ] {
            let e = target(bad).err().unwrap_or_default();
            assert!(!e.is_empty(), "{bad} must be refused");
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    #[test]
    fn err_packets_are_classified() {
        let mut p = vec![0xff];
        p.extend(1045u16.to_le_bytes());
        p.extend(b"#28000Access denied for user 'u'@'h' (using password: YES)");
        let e = server_error(&p, &Secrets::default());
        assert_eq!(e.kind, "auth_failed");
        assert!(e.detail.starts_with("1045: Access denied"), "{}", e.detail);
        assert_eq!(
            server_error(&[0xff], &Secrets::default()).kind,
            "mysql_error"
        );
    }
}
