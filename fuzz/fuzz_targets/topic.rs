//! Parses arbitrary bytes as a topic name and a topic filter and checks that a filter
//! without wildcards matches the equal topic name.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pigeon_proto::fuzz::topic(data);
});
