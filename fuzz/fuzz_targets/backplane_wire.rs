//! Backplane messages as another node (or anything that can write to Redis) sends them: reading
//! never panics, and whatever reads as a message writes back to the same bytes' meaning.

#![no_main]

use bytes::Bytes;
use imgate_domain::ports::backplane::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((origin, message)) = wire::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = wire::decode(wire::encode(&origin, &message))
        .expect("what this build wrote, it reads");
    assert_eq!(again, (origin, message));
});
