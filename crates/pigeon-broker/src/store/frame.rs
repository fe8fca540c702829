//! Record framing: `length: u32 LE | crc: u32 LE | payload`, where `crc` is the CRC-32C of the
//! length's four bytes followed by the payload (so a flipped length bit is caught too).
//!
//! [`scan`] walks a file's bytes and says where its valid records end and why: the end of the
//! file, a torn tail (a record cut short, or a bad last record: what a crash mid-write leaves),
//! or corruption followed by more data (which no crash explains).

use super::crc;

/// Bytes before each payload.
pub const HEADER: usize = 8;
/// The largest payload accepted (a PUBLISH is at most 256 MiB; its record adds a little).
pub const MAX_PAYLOAD: usize = 300 << 20;

/// Appends one framed record holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let crc = crc::extend(crc::crc32c(&len), payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// How a scan of one file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a valid record.
    Clean,
    /// The record at this offset is incomplete or fails its check, and no valid record
    /// follows it anywhere: a write cut short by a crash.
    Torn(u64),
    /// The record at this offset fails its check and a valid record follows: damage.
    Corrupt(u64),
}

/// Calls `each(offset, payload)` for every valid record of `data` in order, and says how the
/// data ended. Stops at the first bad record.
pub fn scan<'a>(data: &'a [u8], mut each: impl FnMut(u64, &'a [u8])) -> End {
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        // Torn when nothing valid follows; damage otherwise.
        let bad = || {
            if (at + 1..data.len()).any(|p| valid_at(data, p)) {
                End::Corrupt(at as u64)
            } else {
                End::Torn(at as u64)
            }
        };
        if rest.len() < HEADER {
            return bad();
        }
        let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_PAYLOAD {
            return bad();
        }
        let Some(payload) = rest.get(HEADER..HEADER + len) else {
            // Cut short (a crash mid-append), or a damaged length.
            return bad();
        };
        if crc::extend(crc::crc32c(&len_bytes), payload) != crc {
            return bad();
        }
        each(at as u64, payload);
        at += HEADER + len;
    }
    End::Clean
}

/// Whether a valid record starts at `at` (searched for after a bad one, on damage only).
fn valid_at(data: &[u8], at: usize) -> bool {
    let Some(rest) = data.get(at..) else {
        return false;
    };
    if rest.len() < HEADER {
        return false;
    }
    let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    len <= MAX_PAYLOAD
        && rest
            .get(HEADER..HEADER + len)
            .is_some_and(|p| crc::extend(crc::crc32c(&len_bytes), p) == crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(payloads: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for p in payloads {
            starts.push(out.len());
            encode(p, &mut out);
        }
        (out, starts)
    }

    fn collect(data: &[u8]) -> (Vec<Vec<u8>>, End) {
        let mut got = Vec::new();
        let end = scan(data, |_, p| got.push(p.to_vec()));
        (got, end)
    }

    #[test]
    fn round_trip() {
        let (data, _) = records(&[b"one", b"", b"three"]);
        let (got, end) = collect(&data);
        assert_eq!(got, [b"one".to_vec(), vec![], b"three".to_vec()]);
        assert_eq!(end, End::Clean);
    }

    #[test]
    fn truncation_at_every_byte_of_the_last_record_is_a_torn_tail() {
        let (data, starts) = records(&[b"first", b"second record", b"the last record"]);
        let last = starts[2];
        for cut in last..data.len() {
            let (got, end) = collect(&data[..cut]);
            assert_eq!(got.len(), 2, "cut at {cut}");
            if cut == last {
                assert_eq!(end, End::Clean);
            } else {
                assert_eq!(end, End::Torn(last as u64), "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_bit_flip_in_the_last_record_is_a_torn_tail_elsewhere_corruption() {
        let (data, starts) = records(&[b"first", b"second record", b"the last record"]);
        for byte in 0..data.len() {
            for bit in 0..8 {
                let mut d = data.clone();
                d[byte] ^= 1 << bit;
                let (got, end) = collect(&d);
                let victim = starts.iter().rposition(|&s| s <= byte).unwrap_or(0);
                assert_eq!(got.len(), victim, "flip {byte}.{bit}");
                let at = starts[victim] as u64;
                match end {
                    End::Torn(o) => {
                        assert_eq!(o, at);
                        // Only the last record may be taken for a torn write.
                        assert_eq!(victim, 2, "flip {byte}.{bit}");
                    }
                    End::Corrupt(o) => {
                        assert_eq!(o, at);
                        assert!(victim < 2, "flip {byte}.{bit}");
                    }
                    End::Clean => panic!("flip {byte}.{bit} went unnoticed"),
                }
            }
        }
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let (mut data, _) = records(&[b"a", b"b"]);
        let end = data.len();
        data.extend_from_slice(&[0; 100]);
        let (got, e) = collect(&data);
        assert_eq!(got.len(), 2);
        assert_eq!(e, End::Torn(end as u64));
    }
}
