//! Fuzzes both template parsers (`Template::parse` picks XML for input starting with `<`) and
//! checks that whatever parses survives the writer: `Template::parse(&t.to_text()) == t`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use one_proto::Template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Template::parse(text) {
        Ok(t) => {
            let written = t.to_text();
            match Template::parse(&written) {
                Ok(back) => assert_eq!(back, t, "round trip of {text:?} via {written:?}"),
                Err(e) => panic!("{written:?} (written from {text:?}) does not parse: {e}"),
            }
        }
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1, "{e}");
            assert!(e.line <= text.split('\n').count(), "{e}");
        }
    }
});
