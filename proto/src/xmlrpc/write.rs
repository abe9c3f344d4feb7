//! Writing `methodCall` and `methodResponse` bodies.
//!
//! Output is compact (no indentation). It is built as bytes in one buffer sized exactly (for
//! strings) up front and checked as UTF-8 once at the end, because an answer can carry a 20 MB
//! object document as one string: count, copy plain runs 32 bytes at a time, convert once.

use super::Value;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::io::Write as _;

const DECL: &[u8] = b"<?xml version=\"1.0\"?>\n";

/// A request body, as a client sends it.
pub fn write_call(method: &str, params: &[Value]) -> String {
    let size = 128 + escaped_len(method) + params.iter().map(estimate).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(DECL);
    out.extend_from_slice(b"<methodCall><methodName>");
    escape_into(&mut out, method);
    out.extend_from_slice(b"</methodName><params>");
    for p in params {
        out.extend_from_slice(b"<param>");
        write_value(&mut out, p);
        out.extend_from_slice(b"</param>");
    }
    out.extend_from_slice(b"</params></methodCall>\n");
    into_string(out)
}

/// A successful response body carrying one value.
pub fn write_response(value: &Value) -> String {
    let mut out = Vec::with_capacity(128 + estimate(value));
    out.extend_from_slice(DECL);
    out.extend_from_slice(b"<methodResponse><params><param>");
    write_value(&mut out, value);
    out.extend_from_slice(b"</param></params></methodResponse>\n");
    into_string(out)
}

/// A fault response body (`faultCode` as `<int>`, `faultString` as `<string>`).
pub fn write_fault(code: i32, message: &str) -> String {
    let mut out = Vec::with_capacity(256 + escaped_len(message));
    out.extend_from_slice(DECL);
    out.extend_from_slice(
        b"<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>",
    );
    let _ = write!(out, "{code}");
    out.extend_from_slice(
        b"</int></value></member><member><name>faultString</name><value><string>",
    );
    escape_into(&mut out, message);
    out.extend_from_slice(
        b"</string></value></member></struct></value></fault></methodResponse>\n",
    );
    into_string(out)
}

/// The buffer as a `String`. Everything written came from `str`s, ASCII markup, or whole
/// replacement characters, so the check (fast for ASCII) always passes; the lossy fallback only
/// keeps this free of panics and `unsafe`.
fn into_string(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The exact length of `s` after [`escape_into`]. Counting first costs a read-only scan, far
/// cheaper than growing (and copying) a multi-megabyte buffer, and object documents are full of
/// `<` and `>`, so a guess would be wrong by half.
pub(super) fn escaped_len(s: &str) -> usize {
    // Branch-free with a small accumulator per chunk, so that the compiler vectorises it.
    // U+FFFE/U+FFFF and their replacement U+FFFD are all three bytes: 0xEF adds nothing.
    let mut extra = 0;
    for chunk in s.as_bytes().chunks(255) {
        let mut acc = 0u16;
        for &b in chunk {
            acc += (u16::from(b == b'&') + u16::from(b == b'\r')) * 4
                + (u16::from(b == b'<') + u16::from(b == b'>')) * 3
                + u16::from((b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r')) * 2;
        }
        extra += usize::from(acc);
    }
    s.len() + extra
}

/// An upper bound of a value's written size, to allocate the output once.
pub(super) fn estimate(v: &Value) -> usize {
    // The longest wrapper is `<value><dateTime.iso8601></dateTime.iso8601></value>`.
    const TAGS: usize = 56;
    match v {
        Value::Int(_) => TAGS + 20,
        // Display of an f64 never uses an exponent: 5e-324 is 326 characters.
        Value::Double(_) => TAGS + 330,
        Value::Bool(_) | Value::Nil => TAGS,
        Value::String(s) | Value::DateTime(s) => TAGS + escaped_len(s),
        Value::Base64(b) => TAGS + b.len().div_ceil(3) * 4,
        Value::Array(items) => TAGS + items.iter().map(estimate).sum::<usize>(),
        Value::Struct(members) => {
            TAGS + members
                .iter()
                .map(|(n, v)| 40 + escaped_len(n) + estimate(v))
                .sum::<usize>()
        }
    }
}

/// `<value>..</value>` for one value.
///
/// Recursive: values come from our own code or from the parser, whose depth limit bounds them.
fn write_value(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"<value>");
    match v {
        Value::Int(n) => {
            // Writing into a Vec cannot fail.
            let _ = match i32::try_from(*n) {
                Ok(n) => write!(out, "<int>{n}</int>"),
                Err(_) => write!(out, "<i8>{n}</i8>"),
            };
        }
        Value::Bool(true) => out.extend_from_slice(b"<boolean>1</boolean>"),
        Value::Bool(false) => out.extend_from_slice(b"<boolean>0</boolean>"),
        Value::String(s) => {
            out.extend_from_slice(b"<string>");
            escape_into(out, s);
            out.extend_from_slice(b"</string>");
        }
        // Rust's shortest round-trip form, never an exponent (the XML-RPC spec has none);
        // NaN and infinities come out as `NaN`, `inf`, `-inf`, which our parser reads back.
        Value::Double(x) => {
            let _ = write!(out, "<double>{x}</double>");
        }
        Value::Base64(bytes) => {
            out.extend_from_slice(b"<base64>");
            // Encode straight into the buffer; the size is exact, so this cannot fail.
            let start = out.len();
            out.resize(start + bytes.len().div_ceil(3) * 4, 0);
            let written = BASE64.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
            out.extend_from_slice(b"</base64>");
        }
        Value::DateTime(s) => {
            out.extend_from_slice(b"<dateTime.iso8601>");
            escape_into(out, s);
            out.extend_from_slice(b"</dateTime.iso8601>");
        }
        Value::Array(items) => {
            out.extend_from_slice(b"<array><data>");
            for item in items {
                write_value(out, item);
            }
            out.extend_from_slice(b"</data></array>");
        }
        Value::Struct(members) => {
            out.extend_from_slice(b"<struct>");
            for (name, value) in members {
                out.extend_from_slice(b"<member><name>");
                escape_into(out, name);
                out.extend_from_slice(b"</name>");
                write_value(out, value);
                out.extend_from_slice(b"</member>");
            }
            out.extend_from_slice(b"</struct>");
        }
        Value::Nil => out.extend_from_slice(b"<nil/>"),
    }
    out.extend_from_slice(b"</value>");
}

/// Whether a byte starts something the writer must change: markup characters, CR, the control
/// characters XML 1.0 forbids, and 0xEF (which starts U+FFFE and U+FFFF).
#[inline(always)]
const fn is_special(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\n') || b == b'&' || b == b'<' || b == b'>' || b == 0xEF
}

/// What [`escape_into`] does with a byte.
#[derive(Clone, Copy)]
enum Esc {
    Keep,
    Amp,
    Lt,
    Gt,
    Cr,
    /// A control character XML 1.0 cannot carry.
    Forbidden,
    /// May start U+FFFE or U+FFFF.
    Ef,
}

const ESCAPE: [Esc; 256] = {
    let mut t = [Esc::Keep; 256];
    let mut b = 0;
    while b < 256 {
        if is_special(b as u8) {
            t[b] = match b as u8 {
                b'&' => Esc::Amp,
                b'<' => Esc::Lt,
                b'>' => Esc::Gt,
                b'\r' => Esc::Cr,
                0xEF => Esc::Ef,
                _ => Esc::Forbidden,
            };
        }
        b += 1;
    }
    t
};

/// Appends `s` as XML 1.0 character data in one pass: `&`, `<`, `>` as entities, CR as `&#13;`
/// (so end-of-line normalisation keeps it), and characters XML 1.0 cannot carry as U+FFFD.
///
/// Quotes stay as they are: they need no escaping in element content. Runs of 32 plain bytes are
/// found with a test the compiler vectorises and copied at once; around special bytes the copy
/// goes byte by byte, which beats many tiny slice copies in markup-dense documents.
pub(super) fn escape_into(out: &mut Vec<u8>, s: &str) {
    const CHUNK: usize = 32;
    const FFFD: &[u8] = "\u{FFFD}".as_bytes();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + CHUNK)
            && !chunk.iter().fold(false, |acc, &b| acc | is_special(b))
        {
            out.extend_from_slice(chunk);
            i += CHUNK;
            continue;
        }
        let end = bytes.len().min(i + CHUNK);
        while i < end {
            let b = bytes[i];
            i += 1;
            match ESCAPE[usize::from(b)] {
                Esc::Keep => out.push(b),
                Esc::Amp => out.extend_from_slice(b"&amp;"),
                Esc::Lt => out.extend_from_slice(b"&lt;"),
                Esc::Gt => out.extend_from_slice(b"&gt;"),
                Esc::Cr => out.extend_from_slice(b"&#13;"),
                Esc::Forbidden => out.extend_from_slice(FFFD),
                // U+FFFE is EF BF BE, U+FFFF is EF BF BF; other characters starting with EF
                // are fine (their continuation bytes are never special).
                Esc::Ef => match bytes.get(i..i + 2) {
                    Some([0xBF, 0xBE | 0xBF]) => {
                        out.extend_from_slice(FFFD);
                        i += 2;
                    }
                    _ => out.push(b),
                },
            }
        }
    }
}
