//! A row version's physical address (`ctid`), as the worker's claims
//! return it and its store-and-claim statement looks rows up by it.
//!
//! Why: a claimed job's row is found again when its success is stored, and
//! by primary key that is a B-tree descent plus a visit to every version
//! of the id the index still lists (the queued one the claim replaced,
//! then the running one). By `ctid` it is one heap fetch (a TID scan).
//! The address is only a way in, never the fence: the statement still
//! compares id, lease token and status (`claim_and_complete.rs`), so a
//! stale address (the row moved: a lease extension, a progress report)
//! finds nothing, and the worker stores that job by id instead
//! (`worker/fetcher.rs`). Measured with `bench/jobqueue/claim-sql-instructions.sh`
//! (a 24-job cycle): claiming by `ctid` −3.3 % of the statement's
//! instructions, storing by `ctid` too −5.8 %.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// `ctid`: block number and line pointer of one row version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tid {
    block: u32,
    offset: u16,
}

/// PostgreSQL's text form, `(block,offset)`: for logs and SQL literals.
impl std::fmt::Display for Tid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({},{})", self.block, self.offset)
    }
}

impl<'a> FromSql<'a> for Tid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        // Binary `tid`: block (4 bytes), offset (2 bytes), big-endian.
        let bytes: [u8; 6] = raw
            .try_into()
            .map_err(|_| format!("a tid is 6 bytes, got {}", raw.len()))?;
        Ok(Tid {
            block: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            offset: u16::from_be_bytes([bytes[4], bytes[5]]),
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TID
    }
}

impl ToSql for Tid {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u32(self.block);
        out.put_u16(self.offset);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TID
    }

    to_sql_checked!();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_tid_goes_out_as_it_came_in() {
        let raw = [0, 0, 1, 2, 0, 7];
        let tid = Tid::from_sql(&Type::TID, &raw).unwrap();
        assert_eq!(
            tid,
            Tid {
                block: 258,
                offset: 7
            }
        );
        let mut out = BytesMut::new();
        tid.to_sql(&Type::TID, &mut out).unwrap();
        assert_eq!(&out[..], &raw);
        assert_eq!(tid.to_string(), "(258,7)");
    }

    #[test]
    fn a_short_or_long_tid_is_an_error_not_a_panic() {
        assert!(Tid::from_sql(&Type::TID, &[0, 1, 2]).is_err());
        assert!(Tid::from_sql(&Type::TID, &[0; 7]).is_err());
    }
}
