//! Decodes arbitrary bytes as a packet stream for every protocol version; whatever decodes
//! must re-encode to the same length `encoded_len` predicts and decode back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pigeon_proto::fuzz::decode_roundtrip(data);
});
