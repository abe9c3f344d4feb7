//! OpenNebula's error messages, built in one place so every method words them alike.

use one_proto::{ApiError, ErrorCode};

pub fn rpc_api(method: &str, detail: &str) -> ApiError {
    ApiError::new(ErrorCode::RpcApi, format!("[{method}] {detail}"))
}

pub fn auth_failed(method: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Authentication,
        format!("[{method}] User couldn't be authenticated, aborting call."),
    )
}

/// `[one.vm.info] User [4] : Not authorized to perform USE VM [0].`
pub fn not_authorized(method: &str, uid: i64, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Authorization,
        format!("[{method}] User [{uid}] : Not authorized to perform {what}."),
    )
}

/// `[one.vm.info] Error getting virtual machine [42].`
pub fn no_exists(method: &str, objname: &str, id: i64) -> ApiError {
    ApiError::new(
        ErrorCode::NoExists,
        format!("[{method}] Error getting {objname} [{id}]."),
    )
}

pub fn action(method: &str, detail: &str) -> ApiError {
    ApiError::new(ErrorCode::Action, format!("[{method}] {detail}"))
}

/// `[one.vm.allocate] Error allocating a new virtual machine. <reason>`: OpenNebula answers
/// failed allocations with INTERNAL (its ALLOCATE code is unused by the allocate calls).
pub fn allocate(method: &str, objname: &str, reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        format!("[{method}] Error allocating a new {objname}. {reason}"),
    )
}

pub fn locked(method: &str, objname: &str, id: i64) -> ApiError {
    ApiError::new(
        ErrorCode::Locked,
        format!("[{method}] The resource {objname} is locked. [{id}]."),
    )
}

pub fn internal(method: &str, detail: &str) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("[{method}] {detail}"))
}

/// A template that does not parse: the parser's message with its position.
pub fn bad_template(method: &str, err: &one_proto::template::TemplateError) -> ApiError {
    rpc_api(method, &format!("Error parsing template: {err}"))
}
