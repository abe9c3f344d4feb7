//! HOOK documents (hook.xsd, hook_pool.xsd), the HOOKLOG of `one.hooklog.info`, and the
//! CALL_INFO document an API hook receives as `$API` (api_info.xsd).

use super::Lock;
use crate::template::Template;
use crate::xml::XmlWriter;
use crate::xmlrpc::Value;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// A hook's TYPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HookType {
    /// Fired when a VM, host, image or network enters a state.
    State,
    /// Fired after an API call.
    Api,
}

impl HookType {
    /// The name OpenNebula writes in TYPE.
    pub fn name(self) -> &'static str {
        match self {
            HookType::State => "state",
            HookType::Api => "api",
        }
    }

    /// Parses TYPE, ignoring case as oned does.
    pub fn parse(s: &str) -> Option<HookType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "state" => Some(HookType::State),
            "api" => Some(HookType::Api),
            _ => None,
        }
    }
}

/// What running the command gave (EXECUTION_RESULT).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionResult {
    /// The command line that ran (arguments included unless they went to stdin).
    pub command: String,
    /// Captured output, possibly cut at the configured bound; written base64 in the XML.
    pub stdout: String,
    pub stderr: String,
    /// Exit code; 255 when the command could not run, was killed, or timed out.
    pub code: i32,
}

/// One execution of a hook (HOOK_EXECUTION_RECORD).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookExecution {
    pub hook_id: i64,
    /// Per hook, growing from 0.
    pub execution_id: i64,
    /// Unix seconds when the execution ended.
    pub timestamp: i64,
    /// The arguments after substitution (`$TEMPLATE`, `$API` already base64), as a `one.hook.retry`
    /// runs them again.
    pub arguments: String,
    pub result: ExecutionResult,
    /// The host the event concerned (VM's host, the host itself), for REMOTE hooks.
    #[serde(default)]
    pub remote_host: Option<String>,
    /// Whether this execution came from `one.hook.retry`.
    #[serde(default)]
    pub retry: bool,
}

impl HookExecution {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        let b64 = base64::engine::general_purpose::STANDARD;
        w.open("HOOK_EXECUTION_RECORD")
            .num("HOOK_ID", self.hook_id)
            .num("EXECUTION_ID", self.execution_id)
            .num("TIMESTAMP", self.timestamp)
            .text("ARGUMENTS", &self.arguments)
            .open("EXECUTION_RESULT")
            .text("COMMAND", &self.result.command)
            // OpenNebula's CLI and Sunstone base64-decode these two.
            .text("STDOUT", &b64.encode(&self.result.stdout))
            .text("STDERR", &b64.encode(&self.result.stderr))
            .num("CODE", self.result.code)
            .close("EXECUTION_RESULT");
        if let Some(h) = &self.remote_host {
            w.text("REMOTE_HOST", h);
        }
        if self.retry {
            w.text("RETRY", "yes");
        }
        w.close("HOOK_EXECUTION_RECORD");
    }
}

/// A hook: a command oned runs on a state change or after an API call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    pub id: i64,
    pub name: String,
    pub hook_type: HookType,
    #[serde(default)]
    pub lock: Option<Lock>,
    /// COMMAND, ARGUMENTS, ARGUMENTS_STDIN, REMOTE, TIMEOUT, and RESOURCE/STATE/LCM_STATE
    /// (state hooks) or CALL (API hooks). NAME and TYPE live outside it, as in oned.
    pub template: Template,
    /// The newest executions, oldest first, at most the configured retention.
    #[serde(default)]
    pub log: Vec<HookExecution>,
    /// The EXECUTION_ID the next execution gets (ids are not reused when old ones are dropped).
    #[serde(default)]
    pub next_execution_id: i64,
}

impl Hook {
    /// The document of `one.hook.info` (with HOOKLOG) or of `one.hookpool.info` (without).
    pub fn write_xml(&self, w: &mut XmlWriter, with_log: bool) {
        w.open("HOOK")
            .num("ID", self.id)
            .text("NAME", &self.name)
            .text("TYPE", self.hook_type.name());
        if let Some(l) = &self.lock {
            l.write_xml(w);
        }
        self.template.write_xml(w, "TEMPLATE");
        if with_log {
            write_hooklog(w, self.log.iter());
        }
        w.close("HOOK");
    }
}

/// `<HOOKLOG>` with the given records (`one.hooklog.info`, and inside `one.hook.info`).
pub fn write_hooklog<'a>(w: &mut XmlWriter, records: impl IntoIterator<Item = &'a HookExecution>) {
    let mut records = records.into_iter().peekable();
    if records.peek().is_none() {
        w.empty("HOOKLOG");
        return;
    }
    w.open("HOOKLOG");
    for r in records {
        r.write_xml(w);
    }
    w.close("HOOKLOG");
}

/// Direction of a CALL_INFO parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamDir {
    In,
    Out,
}

/// One PARAMETER of CALL_INFO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallParam {
    /// 1-based; IN position 1 is the session, always hidden.
    pub position: usize,
    pub dir: ParamDir,
    pub value: String,
}

/// What an API hook learns about the call (`$API`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    pub success: bool,
    pub params: Vec<CallParam>,
    /// The allocated or deleted object's document, as XML.
    pub extra: Option<String>,
}

/// How oned prints the session in CALL_INFO: hidden.
pub const HIDDEN_PARAM: &str = "****";

impl CallInfo {
    /// The CALL_INFO of a call: IN parameters (position 1 the hidden session, then `params`),
    /// and OUT parameters as OpenNebula lays out its answer: 1 success flag, 2 the value (or the
    /// error message), 3 the error code, and on failure 4 the id of the object involved.
    pub fn new(
        params: &[Value],
        outcome: Result<&Value, (&str, i32)>,
        extra: Option<String>,
    ) -> Self {
        let mut out = Vec::with_capacity(params.len() + 5);
        out.push(CallParam {
            position: 1,
            dir: ParamDir::In,
            value: HIDDEN_PARAM.into(),
        });
        for (i, v) in params.iter().enumerate() {
            out.push(CallParam {
                position: i + 2,
                dir: ParamDir::In,
                value: value_text(v),
            });
        }
        let outs: Vec<String> = match outcome {
            Ok(v) => vec!["true".into(), value_text(v), "0".into()],
            Err((msg, code)) => vec!["false".into(), msg.into(), code.to_string(), "-1".into()],
        };
        for (i, value) in outs.into_iter().enumerate() {
            out.push(CallParam {
                position: i + 1,
                dir: ParamDir::Out,
                value,
            });
        }
        CallInfo {
            success: outcome.is_ok(),
            params: out,
            extra,
        }
    }

    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("CALL_INFO")
            .flag("RESULT", self.success)
            .open("PARAMETERS");
        for p in &self.params {
            w.open("PARAMETER")
                .num("POSITION", p.position)
                .text(
                    "TYPE",
                    match p.dir {
                        ParamDir::In => "IN",
                        ParamDir::Out => "OUT",
                    },
                )
                .text("VALUE", &p.value)
                .close("PARAMETER");
        }
        w.close("PARAMETERS");
        match &self.extra {
            Some(x) => {
                w.open("EXTRA").raw(x).close("EXTRA");
            }
            None => {
                w.empty("EXTRA");
            }
        }
        w.close("CALL_INFO");
    }

    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        self.write_xml(&mut w);
        w.finish()
    }
}

/// A parameter as text, the way oned prints it for hooks: numbers in decimal, booleans 1/0,
/// strings as they are; arrays as their items joined by commas.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "1" } else { "0" }.into(),
        Value::String(s) => s.clone(),
        Value::Double(d) => d.to_string(),
        Value::Base64(b) => base64::engine::general_purpose::STANDARD.encode(b),
        Value::DateTime(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(","),
        Value::Struct(_) | Value::Nil => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::xsd;

    fn template(pairs: &[(&str, &str)]) -> Template {
        let mut t = Template::new();
        for (k, v) in pairs {
            t.set(k, *v);
        }
        t
    }

    fn record(id: i64, code: i32) -> HookExecution {
        HookExecution {
            hook_id: 2,
            execution_id: id,
            timestamp: 1_700_000_000 + id,
            arguments: "PFZNLz4= -m".into(),
            result: ExecutionResult {
                command: "/hooks/ft.rb PFZNLz4= -m".into(),
                stdout: "ok\n".into(),
                stderr: String::new(),
                code,
            },
            remote_host: Some("node1".into()),
            retry: id == 1,
        }
    }

    fn sample() -> Hook {
        Hook {
            id: 2,
            name: "ft".into(),
            hook_type: HookType::State,
            lock: None,
            template: template(&[
                ("COMMAND", "ft/host_error.rb"),
                ("ARGUMENTS", "$TEMPLATE -m"),
                ("ARGUMENTS_STDIN", "YES"),
                ("REMOTE", "NO"),
                ("RESOURCE", "HOST"),
                ("STATE", "ERROR"),
            ]),
            log: vec![record(0, 0), record(1, 1)],
            next_execution_id: 2,
        }
    }

    fn xml(h: &Hook, log: bool) -> String {
        let mut w = XmlWriter::new();
        h.write_xml(&mut w, log);
        w.finish()
    }

    #[test]
    fn hook_xml_in_xsd_order() {
        let h = sample();
        let pool = xml(&h, false);
        assert_eq!(
            pool,
            "<HOOK><ID>2</ID><NAME>ft</NAME><TYPE>state</TYPE><TEMPLATE>\
             <ARGUMENTS>$TEMPLATE -m</ARGUMENTS><ARGUMENTS_STDIN>YES</ARGUMENTS_STDIN>\
             <COMMAND>ft/host_error.rb</COMMAND><REMOTE>NO</REMOTE><RESOURCE>HOST</RESOURCE>\
             <STATE>ERROR</STATE></TEMPLATE></HOOK>"
        );
        let full = xml(&h, true);
        assert!(full.contains(
            "</TEMPLATE><HOOKLOG><HOOK_EXECUTION_RECORD><HOOK_ID>2</HOOK_ID>\
             <EXECUTION_ID>0</EXECUTION_ID><TIMESTAMP>1700000000</TIMESTAMP>\
             <ARGUMENTS>PFZNLz4= -m</ARGUMENTS><EXECUTION_RESULT>\
             <COMMAND>/hooks/ft.rb PFZNLz4= -m</COMMAND><STDOUT>b2sK</STDOUT><STDERR></STDERR>\
             <CODE>0</CODE></EXECUTION_RESULT><REMOTE_HOST>node1</REMOTE_HOST>\
             </HOOK_EXECUTION_RECORD>"
        ));
        assert!(full.contains("<CODE>1</CODE></EXECUTION_RESULT><REMOTE_HOST>node1</REMOTE_HOST><RETRY>yes</RETRY></HOOK_EXECUTION_RECORD></HOOKLOG></HOOK>"));
        xsd::check("hook", &full);
        xsd::check("hook pool", &format!("<HOOK_POOL>{pool}</HOOK_POOL>"));
        xsd::check("empty hook pool", "<HOOK_POOL></HOOK_POOL>");
    }

    #[test]
    fn locked_hook_and_empty_log() {
        let mut h = sample();
        h.log.clear();
        h.hook_type = HookType::Api;
        h.template = template(&[("CALL", "one.vm.allocate"), ("COMMAND", "/bin/true")]);
        h.lock = Some(Lock {
            level: 1,
            owner: 0,
            time: 5,
            req_id: 0,
        });
        let full = xml(&h, true);
        assert!(full.contains(
            "<TYPE>api</TYPE><LOCK><LOCKED>1</LOCKED><OWNER>0</OWNER><TIME>5</TIME>\
             <REQ_ID>0</REQ_ID></LOCK><TEMPLATE><CALL>one.vm.allocate</CALL>"
        ));
        assert!(full.ends_with("</TEMPLATE><HOOKLOG/></HOOK>"));
        xsd::check("locked api hook", &full);
    }

    #[test]
    fn hooklog_document() {
        let h = sample();
        let mut w = XmlWriter::new();
        write_hooklog(&mut w, h.log.iter().rev());
        let log = w.finish();
        assert!(log.starts_with(
            "<HOOKLOG><HOOK_EXECUTION_RECORD><HOOK_ID>2</HOOK_ID><EXECUTION_ID>1</EXECUTION_ID>"
        ));
        assert!(log.ends_with("</HOOK_EXECUTION_RECORD></HOOKLOG>"));
        // No schema has HOOKLOG as its root; it is the element hook.xsd defines inside HOOK.
        xsd::check(
            "hooklog inside a hook",
            &format!(
                "<HOOK><ID>2</ID><NAME>x</NAME><TYPE>api</TYPE><TEMPLATE><COMMAND>c</COMMAND></TEMPLATE>{log}</HOOK>"
            ),
        );
        let mut w = XmlWriter::new();
        write_hooklog(&mut w, []);
        assert_eq!(w.finish(), "<HOOKLOG/>");
    }

    #[test]
    fn hook_type_names() {
        assert_eq!(HookType::parse("STATE"), Some(HookType::State));
        assert_eq!(HookType::parse(" api "), Some(HookType::Api));
        assert_eq!(HookType::parse("cron"), None);
        assert_eq!(HookType::Api.name(), "api");
    }

    #[test]
    fn call_info_success_and_failure() {
        let params = vec![
            Value::String("NAME=\"a<b\"".into()),
            Value::Bool(true),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
        ];
        let ok = CallInfo::new(
            &params,
            Ok(&Value::Int(7)),
            Some("<VM><ID>7</ID></VM>".into()),
        );
        let x = ok.to_xml();
        assert_eq!(
            x,
            "<CALL_INFO><RESULT>1</RESULT><PARAMETERS>\
             <PARAMETER><POSITION>1</POSITION><TYPE>IN</TYPE><VALUE>****</VALUE></PARAMETER>\
             <PARAMETER><POSITION>2</POSITION><TYPE>IN</TYPE><VALUE>NAME=&quot;a&lt;b&quot;</VALUE></PARAMETER>\
             <PARAMETER><POSITION>3</POSITION><TYPE>IN</TYPE><VALUE>1</VALUE></PARAMETER>\
             <PARAMETER><POSITION>4</POSITION><TYPE>IN</TYPE><VALUE>1,2</VALUE></PARAMETER>\
             <PARAMETER><POSITION>1</POSITION><TYPE>OUT</TYPE><VALUE>true</VALUE></PARAMETER>\
             <PARAMETER><POSITION>2</POSITION><TYPE>OUT</TYPE><VALUE>7</VALUE></PARAMETER>\
             <PARAMETER><POSITION>3</POSITION><TYPE>OUT</TYPE><VALUE>0</VALUE></PARAMETER>\
             </PARAMETERS><EXTRA><VM><ID>7</ID></VM></EXTRA></CALL_INFO>"
        );
        xsd::check("call info", &x);

        let failed = CallInfo::new(&params[..1], Err(("[one.vm.allocate] bad", 8192)), None);
        let x = failed.to_xml();
        assert!(x.starts_with("<CALL_INFO><RESULT>0</RESULT>"));
        assert!(x.contains(
            "<PARAMETER><POSITION>1</POSITION><TYPE>OUT</TYPE><VALUE>false</VALUE></PARAMETER>\
             <PARAMETER><POSITION>2</POSITION><TYPE>OUT</TYPE><VALUE>[one.vm.allocate] bad</VALUE></PARAMETER>\
             <PARAMETER><POSITION>3</POSITION><TYPE>OUT</TYPE><VALUE>8192</VALUE></PARAMETER>\
             <PARAMETER><POSITION>4</POSITION><TYPE>OUT</TYPE><VALUE>-1</VALUE></PARAMETER>"
        ));
        assert!(x.ends_with("</PARAMETERS><EXTRA/></CALL_INFO>"));
        xsd::check("failed call info", &x);
    }

    #[test]
    fn serde_round_trip_and_old_rows() {
        let h = sample();
        let json = serde_json::to_string(&h).unwrap();
        let back: Hook = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        // A row written before logs existed still loads.
        let minimal = r#"{"id":1,"name":"n","hook_type":"Api","template":{"attrs":[]}}"#;
        let h: Hook = serde_json::from_str(minimal).unwrap();
        assert!(h.log.is_empty() && h.lock.is_none() && h.next_execution_id == 0);
    }
}
