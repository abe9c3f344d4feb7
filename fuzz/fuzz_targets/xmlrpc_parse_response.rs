//! `parse_response` on arbitrary bytes (what `oca` does with a server's answer): never a panic;
//! a parsed success value must survive `write_response` and a second parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use one_proto::xmlrpc::{Limits, MethodResponse, parse_response, write_fault, write_response};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let written = match parse_response(data, &limits) {
        Ok(MethodResponse::Success(v)) => write_response(&v),
        Ok(MethodResponse::Fault { code, message }) => write_fault(code, &message),
        Err(_) => return,
    };
    let again = match parse_response(written.as_bytes(), &limits) {
        Ok(r) => r,
        Err(e) => panic!("our own output does not parse: {e}\n{written}"),
    };
    let rewritten = match again {
        MethodResponse::Success(v) => write_response(&v),
        MethodResponse::Fault { code, message } => write_fault(code, &message),
    };
    assert_eq!(rewritten, written);
});
