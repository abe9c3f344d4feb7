//! The hook manager: runs the COMMAND of every hook whose trigger an event matches, and
//! records each execution in the hook (HOOKLOG).
//!
//! OpenNebula publishes events on ZeroMQ to a separate `onehem-server`; here oned runs hooks
//! itself. Events come over the [`EventBus`](crate::events::EventBus) (state changes from the
//! store, API calls from the server, retries from `one.hook.retry`). One manager task matches
//! them against the hooks and queues a job per matching hook; every hook has a worker task
//! that runs its jobs one after the other, in event order, while different hooks run
//! concurrently (at most [`MAX_CONCURRENT`] commands at once).

pub mod exec;
pub mod spec;

use crate::config::Config;
use crate::daemon::Oned;
use crate::doc::Document;
use crate::events::{ApiEvent, Event, StateObject};
use crate::store::Stored;
use base64::Engine;
use one_proto::ApiError;
use one_proto::objects::hook::{CallInfo, ExecutionResult, Hook, HookExecution};
use one_proto::xml::XmlWriter;
use one_proto::xmlrpc::Value;
use spec::{Trigger, expand_arguments, is_yes};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Hook commands running at once, across hooks (OpenNebula's hook manager runs 10).
pub const MAX_CONCURRENT: usize = 8;
/// Bytes of stdout, and of stderr, kept per execution.
pub const MAX_OUTPUT: usize = 16 * 1024;

pub struct Hooks {
    /// Serializes recomputing what the event bus watches, so the last writer saw the latest hooks.
    refresh: Mutex<()>,
    slots: Arc<Semaphore>,
}

impl Hooks {
    pub fn new(_cfg: &Config) -> Hooks {
        Hooks {
            refresh: Mutex::new(()),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }
}

/// Starts the hook manager; called once oned is built.
pub fn start(oned: &Arc<Oned>) {
    let Some(rx) = oned.store.events.connect() else {
        tracing::warn!("hook manager already started");
        return;
    };
    refresh(oned);
    let dir = hooks_dir(oned);
    // Where an administrator puts hook scripts, as OpenNebula's remotes/hooks.
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the hooks directory");
    }
    let weak = Arc::downgrade(oned);
    tokio::spawn(manage(weak, rx));
    tracing::info!(dir = %dir.display(), "hook manager started");
}

/// Recomputes which resources and calls hooks watch; call after any change to hooks.
pub fn refresh(oned: &Oned) {
    let _one_at_a_time = oned.hooks.refresh.lock().unwrap_or_else(|e| e.into_inner());
    let mut mask = 0u8;
    let mut calls = HashSet::new();
    for hook in oned.store.read().hooks.iter() {
        match Trigger::of(hook) {
            Some(Trigger::State { resource, .. }) => mask |= resource.bit(),
            Some(Trigger::Api { call }) => {
                calls.insert(call);
            }
            None => {}
        }
    }
    oned.store.events.set_watch(mask, calls);
}

/// Where relative COMMANDs are found: `hooks.dir` (relative to the data directory), or
/// `<data_dir>/hooks`.
pub fn hooks_dir(oned: &Oned) -> PathBuf {
    let dir = &oned.config.hooks.dir;
    if dir.as_os_str().is_empty() {
        oned.data_dir.root.join("hooks")
    } else {
        oned.data_dir.root.join(dir)
    }
}

/// What an API event needs from before the call, taken only when an API hook watches the
/// method (see `server.rs`).
pub struct ApiCapture {
    method: &'static str,
    params: Vec<Value>,
    /// The document of the object a `delete` removes, read before it is gone.
    extra: Option<String>,
}

impl ApiCapture {
    pub fn new(oned: &Oned, method: &'static str, params: &[Value]) -> Option<ApiCapture> {
        if !oned.store.events.watches_api(method) {
            return None;
        }
        let extra = match (method.rsplit_once('.'), params.first()) {
            (Some((prefix, "delete")), Some(Value::Int(id))) => object_xml(oned, prefix, *id),
            _ => None,
        };
        Some(ApiCapture {
            method,
            params: params.to_vec(),
            extra,
        })
    }

    /// Sends the event once the handler answered.
    pub fn emit(self, oned: &Oned, uid: i64, outcome: &Result<Value, ApiError>) {
        let extra = match (self.method.rsplit_once('.'), outcome) {
            (Some((prefix, "allocate")), Ok(Value::Int(id))) => object_xml(oned, prefix, *id),
            _ => self.extra,
        };
        oned.store.events.send(Event::Api(Box::new(ApiEvent {
            method: self.method,
            uid,
            params: self.params,
            outcome: outcome.clone(),
            extra,
        })));
    }
}

/// The info document of object `id` of the kind a method prefix names (`one.vm` → VM).
fn object_xml(oned: &Oned, prefix: &str, id: i64) -> Option<String> {
    use one_proto::objects::{
        cluster::Cluster, datastore::Datastore, group::Group, host::Host, image::Image, user::User,
        vm::Vm, vmtemplate::VmTemplate, vnet::Vnet,
    };
    fn doc<T: Stored + Document>(oned: &Oned, id: i64) -> Option<String> {
        oned.store.get::<T>(id).map(|o| o.to_xml())
    }
    match prefix {
        "one.vm" => oned.store.get::<Vm>(id).map(|vm| vm_xml(&vm)),
        "one.host" => doc::<Host>(oned, id),
        "one.image" => doc::<Image>(oned, id),
        "one.vn" => doc::<Vnet>(oned, id),
        "one.template" => doc::<VmTemplate>(oned, id),
        "one.user" => doc::<User>(oned, id),
        "one.group" => doc::<Group>(oned, id),
        "one.cluster" => doc::<Cluster>(oned, id),
        "one.datastore" => doc::<Datastore>(oned, id),
        "one.hook" => doc::<Hook>(oned, id),
        _ => None,
    }
}

/// The VM as `one.vm.info` shows it (every HISTORY record).
fn vm_xml(vm: &one_proto::objects::vm::Vm) -> String {
    let mut w = XmlWriter::new();
    vm.write_xml(&mut w);
    w.finish()
}

/// The object's document, as its `info` call returns it.
fn state_object_xml(obj: &StateObject) -> String {
    match obj {
        StateObject::Vm(o) => vm_xml(o),
        StateObject::Host(o) => o.to_xml(),
        StateObject::Image(o) => o.to_xml(),
        StateObject::Vnet(o) => o.to_xml(),
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One execution to run.
#[derive(Debug)]
struct Job {
    hook_id: i64,
    arguments: String,
    remote_host: Option<String>,
    retry: bool,
}

/// The jobs an event makes: one per matching hook (in hook id order).
fn jobs_for(oned: &Oned, ev: Event) -> Vec<Job> {
    let state = oned.store.read();
    match ev {
        Event::State(obj) => {
            let mut doc: Option<String> = None;
            let mut jobs = Vec::new();
            for hook in state.hooks.iter() {
                if !Trigger::of(hook).is_some_and(|t| t.matches_state(&obj)) {
                    continue;
                }
                let args = hook.template.get("ARGUMENTS").unwrap_or("");
                let arguments = expand_arguments(args, |a| {
                    (a == "$TEMPLATE").then(|| {
                        doc.get_or_insert_with(|| b64(&state_object_xml(&obj)))
                            .clone()
                    })
                });
                tracing::debug!(
                    hook = hook.id,
                    resource = obj.resource().name(),
                    id = obj.id(),
                    state = obj.state_name(),
                    "state hook triggered"
                );
                jobs.push(Job {
                    hook_id: hook.id,
                    arguments,
                    remote_host: obj.remote_host(),
                    retry: false,
                });
            }
            jobs
        }
        Event::Api(ev) => {
            let mut info: Option<String> = None;
            let mut jobs = Vec::new();
            for hook in state.hooks.iter() {
                if !Trigger::of(hook).is_some_and(|t| t.matches_api(ev.method)) {
                    continue;
                }
                let args = hook.template.get("ARGUMENTS").unwrap_or("");
                let arguments = expand_arguments(args, |a| {
                    (a == "$API").then(|| {
                        info.get_or_insert_with(|| b64(&call_info(&ev).to_xml()))
                            .clone()
                    })
                });
                tracing::debug!(
                    hook = hook.id,
                    method = ev.method,
                    uid = ev.uid,
                    "api hook triggered"
                );
                jobs.push(Job {
                    hook_id: hook.id,
                    arguments,
                    remote_host: None,
                    retry: false,
                });
            }
            jobs
        }
        Event::Retry {
            hook_id,
            execution_id,
        } => {
            let record = state
                .hooks
                .get(hook_id)
                .and_then(|h| h.log.iter().find(|r| r.execution_id == execution_id));
            match record {
                Some(r) => vec![Job {
                    hook_id,
                    arguments: r.arguments.clone(),
                    remote_host: r.remote_host.clone(),
                    retry: true,
                }],
                None => Vec::new(),
            }
        }
    }
}

/// The CALL_INFO document of an API event.
pub fn call_info(ev: &ApiEvent) -> CallInfo {
    let outcome = match &ev.outcome {
        Ok(v) => Ok(v),
        Err(e) => Err((e.message.as_str(), e.code.code())),
    };
    CallInfo::new(&ev.params, outcome, ev.extra.clone())
}

async fn manage(oned: Weak<Oned>, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut workers: HashMap<i64, mpsc::UnboundedSender<Job>> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        let Some(o) = oned.upgrade() else { break };
        for job in jobs_for(&o, ev) {
            let hook_id = job.hook_id;
            let tx = workers.entry(hook_id).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(work(oned.clone(), rx));
                tx
            });
            if tx.send(job).is_err() {
                tracing::error!(hook = hook_id, "hook worker gone; execution dropped");
                workers.remove(&hook_id);
            }
        }
        // Workers of deleted hooks end once their queue is empty.
        if !workers.is_empty() {
            let state = o.store.read();
            workers.retain(|id, _| state.hooks.get(*id).is_some());
        }
    }
}

/// Runs one hook's jobs in order.
async fn work(oned: Weak<Oned>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        let Some(o) = oned.upgrade() else { break };
        run_job(&o, job).await;
    }
}

/// The environment hook commands get: where this oned listens and its credentials, so a
/// hook can call back with any OpenNebula client.
fn hook_env(oned: &Oned) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let root = &oned.data_dir.root;
    if let Ok(endpoint) = std::fs::read_to_string(root.join("one_endpoint")) {
        env.push(("ONE_XMLRPC".into(), endpoint.trim().to_string()));
    }
    let auth = root.join("one_auth");
    if std::env::var_os("ONE_AUTH").is_none() && auth.exists() {
        env.push(("ONE_AUTH".into(), auth.to_string_lossy().into_owned()));
    }
    env
}

async fn run_job(oned: &Oned, job: Job) {
    // The hook as it is now (a deleted hook runs nothing).
    let Some(hook) = oned.store.get::<Hook>(job.hook_id) else {
        return;
    };
    let t = &hook.template;
    let dir = hooks_dir(oned);
    let timeout = match t.get("TIMEOUT").and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None if oned.config.hooks.timeout_seconds == 0 => None,
        None => Some(Duration::from_secs(oned.config.hooks.timeout_seconds)),
    };
    let env = hook_env(oned);
    let run = exec::RunSpec {
        dir: &dir,
        command: t.get("COMMAND").unwrap_or(""),
        arguments: &job.arguments,
        stdin: is_yes(t.get("ARGUMENTS_STDIN")),
        timeout,
        max_output: MAX_OUTPUT,
        env: &env,
    };
    let result = if is_yes(t.get("REMOTE")) {
        // Running on the hypervisor needs the node agent; say so instead of pretending.
        let host = job.remote_host.as_deref().unwrap_or("");
        ExecutionResult {
            command: run.command_line(),
            stdout: String::new(),
            stderr: format!(
                "REMOTE=YES hooks run on the hypervisor through the node agent, which this oned \
                 does not have yet: the command was not run (host {host:?})."
            ),
            code: exec::FAILED_CODE,
        }
    } else {
        let _slot = oned.hooks.slots.acquire().await;
        exec::run(&run).await
    };
    if result.code == 0 {
        tracing::info!(hook = hook.id, name = %hook.name, retry = job.retry, "hook executed");
    } else {
        tracing::warn!(hook = hook.id, name = %hook.name, code = result.code, stderr = %result.stderr, "hook failed");
    }
    record(oned, job, result).await;
}

/// Appends an execution record to the hook, dropping the oldest beyond the retention.
async fn record(oned: &Oned, job: Job, result: ExecutionResult) {
    let mut tx = oned.store.begin().await;
    let Some(mut hook) = tx.get::<Hook>(job.hook_id) else {
        return;
    };
    let execution_id = hook.next_execution_id;
    hook.next_execution_id += 1;
    hook.log.push(HookExecution {
        hook_id: hook.id,
        execution_id,
        timestamp: crate::auth::now_secs(),
        arguments: job.arguments,
        result,
        remote_host: job.remote_host.filter(|h| !h.is_empty()),
        retry: job.retry,
    });
    trim_log(&mut hook, oned.config.hooks.log_retention);
    tx.put(hook);
    if let Err(e) = tx.commit().await {
        tracing::error!(hook = job.hook_id, error = %e, "cannot store the hook execution record");
    }
}

/// Keeps the newest `retention` records.
fn trim_log(hook: &mut Hook, retention: usize) {
    if hook.log.len() > retention {
        let extra = hook.log.len() - retention;
        hook.log.drain(..extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::objects::hook::HookType;
    use one_proto::template::Template;

    fn hook_with_log(n: i64) -> Hook {
        Hook {
            id: 1,
            name: "h".into(),
            hook_type: HookType::Api,
            lock: None,
            template: Template::new(),
            log: (0..n)
                .map(|i| HookExecution {
                    hook_id: 1,
                    execution_id: i,
                    ..Default::default()
                })
                .collect(),
            next_execution_id: n,
        }
    }

    #[test]
    fn retention_keeps_the_newest() {
        let mut h = hook_with_log(25);
        trim_log(&mut h, 20);
        let ids: Vec<i64> = h.log.iter().map(|r| r.execution_id).collect();
        assert_eq!(ids, (5..25).collect::<Vec<_>>());
        trim_log(&mut h, 0);
        assert!(h.log.is_empty());
        let mut h = hook_with_log(3);
        trim_log(&mut h, 20);
        assert_eq!(h.log.len(), 3);
    }

    #[test]
    fn call_info_of_an_event() {
        let ev = ApiEvent {
            method: "one.vm.allocate",
            uid: 0,
            params: vec![Value::String("CPU=1".into())],
            outcome: Err(ApiError::new(
                one_proto::ErrorCode::Internal,
                "[one.vm.allocate] no".to_string(),
            )),
            extra: None,
        };
        let x = call_info(&ev).to_xml();
        assert!(x.starts_with("<CALL_INFO><RESULT>0</RESULT>"));
        assert!(x.contains("<POSITION>2</POSITION><TYPE>IN</TYPE><VALUE>CPU=1</VALUE>"));
        assert!(x.contains("<POSITION>3</POSITION><TYPE>OUT</TYPE><VALUE>8192</VALUE>"));
    }
}
