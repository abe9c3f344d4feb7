//! XML-RPC codec (methodCall / methodResponse). (Being written: see the codec helper's task.)

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
