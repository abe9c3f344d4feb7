//! `parse_call` on arbitrary bytes: it must never panic, hang or blow up memory. When a body
//! parses, writing the call and parsing that again must reproduce the same body (the writer's
//! output is a fixed point), which checks the writer and the parser against each other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use one_proto::xmlrpc::{Limits, parse_call, write_call};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(call) = parse_call(data, &limits) else {
        return;
    };
    let written = write_call(&call.method, &call.params);
    let again = match parse_call(written.as_bytes(), &limits) {
        Ok(c) => c,
        Err(e) => panic!("our own output does not parse: {e}\n{written}"),
    };
    assert_eq!(write_call(&again.method, &again.params), written);
});
