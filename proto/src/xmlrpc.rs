//! XML-RPC codec (methodCall / methodResponse) as OpenNebula's clients speak it.
//!
//! The parser is lenient in what real clients send (pyone's `<int>` with newlines, Ruby's `<i4>`
//! without whitespace, Apache's `<ex:i8>`, untyped `<value>text</value>`, CDATA, character
//! references) and strict about everything else: any malformed body is an [`XmlRpcError`], never a
//! panic, and neither nesting depth nor body size is unbounded (see [`Limits`]).
//!
//! The writer produces compact XML 1.0 in one pre-sized buffer, because an answer can carry a
//! multi-megabyte object document as a single string.
//!
//! # Characters XML 1.0 cannot carry
//!
//! XML 1.0 forbids the control characters U+0000–U+0008, U+000B, U+000C, U+000E–U+001F and the
//! non-characters U+FFFE, U+FFFF, even as character references, and a strict peer (pyone's expat,
//! Ruby's REXML) rejects the whole document if one appears. The writer therefore replaces each of
//! them with U+FFFD (REPLACEMENT CHARACTER): the answer stays readable and the loss is visible.
//! Carriage returns are written as `&#13;` so that XML end-of-line normalisation does not turn
//! them into line feeds. The parser accepts such characters if a peer sends them anyway.
//!
//! # Nil
//!
//! [`Value::Nil`] is written as `<nil/>` because the codec is generic, but oned must never answer
//! with it: the Ruby client raises on `<nil/>` in a response.

mod parse;
mod write;

#[cfg(test)]
mod tests;

pub use parse::{parse_call, parse_response};
pub use write::{write_call, write_fault, write_response};

/// An XML-RPC value. Integers of every width (`i4`, `int`, `i8`) arrive as `Int`.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    String(String),
    Double(f64),
    Base64(Vec<u8>),
    /// `dateTime.iso8601`, kept as the text the peer sent.
    DateTime(String),
    Array(Vec<Value>),
    Struct(Vec<(String, Value)>),
    Nil,
}

impl Value {
    /// The XML-RPC type name, for error messages ("Parameter 2 must be an int, got string").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Double(_) => "double",
            Value::Base64(_) => "base64",
            Value::DateTime(_) => "dateTime.iso8601",
            Value::Array(_) => "array",
            Value::Struct(_) => "struct",
            Value::Nil => "nil",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MethodCall {
    pub method: String,
    pub params: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MethodResponse {
    Success(Value),
    Fault { code: i32, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlRpcError {
    #[error("malformed XML-RPC: {0}")]
    Malformed(String),
    #[error("XML-RPC body exceeds limits: {0}")]
    TooLarge(String),
}

/// Bounds on what the parser accepts, so a hostile body cannot exhaust memory or stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, in bytes. Decoded values are never larger than a small multiple of
    /// this, so it also bounds memory.
    pub max_bytes: usize,
    /// How many arrays/structs may nest inside one another (a scalar parameter has depth 0, an
    /// array of scalars depth 1).
    pub max_depth: usize,
}

impl Default for Limits {
    /// 64 MiB (templates and image contents can be big) and depth 64 (OpenNebula never nests
    /// more than a few levels).
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// OpenNebula's success answer: `[true, value, 0]`.
pub fn one_success(v: Value) -> Value {
    Value::Array(vec![Value::Bool(true), v, Value::Int(0)])
}

/// OpenNebula's failure answer: `[false, message, code, resp_id, replication_index]`.
///
/// Clients read only the first three elements; the last two are `-1` (no object id, no
/// replication), both sent as `<int>`.
pub fn one_failure(message: &str, code: i32) -> Value {
    Value::Array(vec![
        Value::Bool(false),
        Value::String(message.to_owned()),
        Value::Int(code.into()),
        Value::Int(-1),
        Value::Int(-1),
    ])
}
