//! OpenNebula's API error codes and the error type every API call answers with.

use std::fmt;

/// Error codes as OpenNebula's `Request::ErrorCode` (sent as the third element of a failed answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    Success = 0x0000,
    Authentication = 0x0100,
    Authorization = 0x0200,
    NoExists = 0x0400,
    Action = 0x0800,
    RpcApi = 0x1000,
    Internal = 0x2000,
    Allocate = 0x4000,
    Locked = 0x8000,
    Replication = 0x10000,
}

impl ErrorCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<ErrorCode> {
        use ErrorCode::*;
        [
            Success,
            Authentication,
            Authorization,
            NoExists,
            Action,
            RpcApi,
            Internal,
            Allocate,
            Locked,
            Replication,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

/// A failed API call: the code and the full message clients show (`[one.vm.info] Error getting ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}
