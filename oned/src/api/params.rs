//! Typed access to a call's parameters, with OpenNebula's defaults for omitted trailing ones.

use super::errors::rpc_api;
use one_proto::ApiError;
use one_proto::xmlrpc::Value;

/// The parameters after the session string. Index 0 is the first real parameter.
pub struct Params {
    method: &'static str,
    values: Vec<Value>,
}

impl Params {
    pub fn new(method: &'static str, values: Vec<Value>) -> Self {
        Params { method, values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn raw(&self, i: usize) -> Option<&Value> {
        self.values.get(i)
    }

    fn missing(&self, i: usize, ty: &str) -> ApiError {
        rpc_api(
            self.method,
            &format!("Missing parameter {} (expected {ty}).", i + 1),
        )
    }

    fn wrong(&self, i: usize, ty: &str) -> ApiError {
        rpc_api(self.method, &format!("Parameter {} must be {ty}.", i + 1))
    }

    pub fn int(&self, i: usize) -> Result<i64, ApiError> {
        match self.values.get(i) {
            Some(Value::Int(v)) => Ok(*v),
            // Some clients send numbers as strings (untyped values).
            Some(Value::String(s)) => s.trim().parse().map_err(|_| self.wrong(i, "an int")),
            Some(_) => Err(self.wrong(i, "an int")),
            None => Err(self.missing(i, "an int")),
        }
    }

    /// An int that must fit the 32-bit range OpenNebula uses for ids and flags.
    pub fn int32(&self, i: usize) -> Result<i64, ApiError> {
        let v = self.int(i)?;
        if v < i32::MIN as i64 || v > i32::MAX as i64 {
            return Err(self.wrong(i, "a 32-bit int"));
        }
        Ok(v)
    }

    pub fn opt_int(&self, i: usize, default: i64) -> Result<i64, ApiError> {
        if i >= self.values.len() {
            Ok(default)
        } else {
            self.int32(i)
        }
    }

    pub fn str(&self, i: usize) -> Result<&str, ApiError> {
        match self.values.get(i) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.wrong(i, "a string")),
            None => Err(self.missing(i, "a string")),
        }
    }

    pub fn opt_str<'a>(&'a self, i: usize, default: &'a str) -> Result<&'a str, ApiError> {
        if i >= self.values.len() {
            Ok(default)
        } else {
            self.str(i)
        }
    }

    pub fn bool(&self, i: usize) -> Result<bool, ApiError> {
        match self.values.get(i) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(0)) => Ok(false),
            Some(Value::Int(1)) => Ok(true),
            Some(Value::String(s)) if s == "0" || s.eq_ignore_ascii_case("false") => Ok(false),
            Some(Value::String(s)) if s == "1" || s.eq_ignore_ascii_case("true") => Ok(true),
            Some(_) => Err(self.wrong(i, "a boolean")),
            None => Err(self.missing(i, "a boolean")),
        }
    }

    pub fn opt_bool(&self, i: usize, default: bool) -> Result<bool, ApiError> {
        if i >= self.values.len() {
            Ok(default)
        } else {
            self.bool(i)
        }
    }

    /// An array of ints (e.g. the group ids of `one.user.allocate`); absent → empty.
    pub fn opt_int_array(&self, i: usize) -> Result<Vec<i64>, ApiError> {
        match self.values.get(i) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Int(n) => Ok(*n),
                    _ => Err(self.wrong(i, "an array of ints")),
                })
                .collect(),
            Some(_) => Err(self.wrong(i, "an array of ints")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_types() {
        let p = Params::new(
            "one.x.y",
            vec![Value::Int(3), Value::String("a".into()), Value::Bool(true)],
        );
        assert_eq!(p.int(0).unwrap(), 3);
        assert_eq!(p.str(1).unwrap(), "a");
        assert!(p.bool(2).unwrap());
        assert_eq!(p.opt_int(3, -1).unwrap(), -1);
        let e = p.int(1).unwrap_err();
        assert_eq!(e.code, one_proto::ErrorCode::RpcApi);
        assert_eq!(e.message, "[one.x.y] Parameter 2 must be an int.");
        assert!(
            p.str(5)
                .unwrap_err()
                .message
                .contains("Missing parameter 6")
        );
    }
}
