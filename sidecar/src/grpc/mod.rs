//! gRPC health (`grpc.health.v1`): the wire format berth needs, by hand.
//!
//! Two messages of one field each do not justify a protobuf toolchain and
//! a gRPC framework in a sidecar whose binary must stay small, so this
//! module encodes them directly:
//!
//! ```text
//! message HealthCheckRequest  { string service = 1; }
//! message HealthCheckResponse { ServingStatus status = 1; }
//! enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
//! ```
//!
//! A gRPC message on HTTP/2 is a 5-byte prefix (compressed flag, 4-byte
//! big-endian length) and the protobuf bytes. Decoding is bounded: a
//! message over [`MAX_MESSAGE`] or a malformed varint is an error, never a
//! panic or a large allocation.

pub mod server;

/// `:path` of the unary health check.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// `:path` of the streaming health watch.
pub const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";
/// Health messages are a few bytes; anything larger is refused.
pub const MAX_MESSAGE: usize = 4096;

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingStatus {
    Unknown,
    Serving,
    NotServing,
    ServiceUnknown,
}

impl ServingStatus {
    pub fn code(self) -> u64 {
        match self {
            ServingStatus::Unknown => 0,
            ServingStatus::Serving => 1,
            ServingStatus::NotServing => 2,
            ServingStatus::ServiceUnknown => 3,
        }
    }

    pub fn from_code(code: u64) -> ServingStatus {
        match code {
            1 => ServingStatus::Serving,
            2 => ServingStatus::NotServing,
            3 => ServingStatus::ServiceUnknown,
            _ => ServingStatus::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        }
    }
}

/// Why bytes are not a health message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated message")]
    Truncated,
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("compressed messages are not supported")]
    Compressed,
    #[error("malformed protobuf")]
    Malformed,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Malformed)
}

/// Wraps protobuf bytes in the gRPC message prefix.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Splits the first complete gRPC message off `buf`: `Ok(None)` when more
/// bytes are needed.
pub fn unframe(buf: &[u8]) -> Result<Option<(&[u8], usize)>, DecodeError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != 0 {
        return Err(DecodeError::Compressed);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(DecodeError::TooLarge);
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    Ok(Some((&buf[5..5 + len], 5 + len)))
}

/// Visits every field of a protobuf message: `(field number, wire type,
/// varint value or length-delimited bytes)`. Unknown fields are skipped.
fn fields(msg: &[u8], mut visit: impl FnMut(u64, Field<'_>)) -> Result<(), DecodeError> {
    let mut pos = 0;
    while pos < msg.len() {
        let key = get_varint(msg, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => visit(number, Field::Varint(get_varint(msg, &mut pos)?)),
            1 => {
                pos = pos
                    .checked_add(8)
                    .filter(|p| *p <= msg.len())
                    .ok_or(DecodeError::Truncated)?
            }
            2 => {
                let len = usize::try_from(get_varint(msg, &mut pos)?)
                    .map_err(|_| DecodeError::Malformed)?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= msg.len())
                    .ok_or(DecodeError::Truncated)?;
                visit(number, Field::Bytes(&msg[pos..end]));
                pos = end;
            }
            5 => {
                pos = pos
                    .checked_add(4)
                    .filter(|p| *p <= msg.len())
                    .ok_or(DecodeError::Truncated)?
            }
            _ => return Err(DecodeError::Malformed),
        }
    }
    Ok(())
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// `HealthCheckRequest { service }` as protobuf bytes (unframed).
pub fn encode_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a);
        put_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// The `service` of a `HealthCheckRequest`.
pub fn decode_request(msg: &[u8]) -> Result<String, DecodeError> {
    let mut service = None;
    let mut bad = false;
    fields(msg, |n, f| {
        if let (1, Field::Bytes(b)) = (n, f) {
            match std::str::from_utf8(b) {
                Ok(s) => service = Some(s.to_string()),
                Err(_) => bad = true,
            }
        }
    })?;
    if bad {
        return Err(DecodeError::Malformed);
    }
    Ok(service.unwrap_or_default())
}

/// `HealthCheckResponse { status }` as protobuf bytes (unframed).
pub fn encode_response(status: ServingStatus) -> Vec<u8> {
    let mut out = Vec::new();
    if status.code() != 0 {
        out.push(0x08);
        put_varint(&mut out, status.code());
    }
    out
}

/// The `status` of a `HealthCheckResponse`.
pub fn decode_response(msg: &[u8]) -> Result<ServingStatus, DecodeError> {
    let mut status = ServingStatus::Unknown;
    fields(msg, |n, f| {
        if let (1, Field::Varint(v)) = (n, f) {
            status = ServingStatus::from_code(v);
        }
    })?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for service in ["", "db", "a-much-longer-service-name.with.dots"] {
            let framed = frame(&encode_request(service));
            let (msg, used) = unframe(&framed).expect("ok").expect("complete");
            assert_eq!(used, framed.len());
            assert_eq!(decode_request(msg).expect("decodes"), service);
        }
        for status in [
            ServingStatus::Unknown,
            ServingStatus::Serving,
            ServingStatus::NotServing,
            ServingStatus::ServiceUnknown,
        ] {
            assert_eq!(decode_response(&encode_response(status)), Ok(status));
        }
        // What protoc would produce for {service: "db"} and {status: SERVING}.
        assert_eq!(encode_request("db"), vec![0x0a, 2, b'd', b'b']);
        assert_eq!(encode_response(ServingStatus::Serving), vec![0x08, 1]);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        assert_eq!(unframe(&[0, 0, 0]), Ok(None));
        assert_eq!(unframe(&[1, 0, 0, 0, 0]), Err(DecodeError::Compressed));
        assert_eq!(
            unframe(&[0, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::TooLarge)
        );
        assert!(decode_request(&[0x0a, 0xff]).is_err());
        assert!(decode_request(&[0x0a, 5, b'a']).is_err());
        assert!(decode_request(&[0x0a, 2, 0xff, 0xfe]).is_err());
        assert!(decode_request(&[0xff; 11]).is_err());
        assert!(decode_response(&[0x0f]).is_err());
        // Every prefix of a valid message either decodes or errors.
        let full = encode_request("service-name");
        for n in 0..full.len() {
            let _ = decode_request(&full[..n]);
        }
    }
}
