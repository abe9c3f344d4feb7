//! What a hook's template means: the checks of `one.hook.allocate` / `update` (with
//! OpenNebula's messages), the trigger a hook defines, and argument substitution.

use crate::events::{Resource, StateObject};
use one_proto::objects::hook::{Hook, HookType};
use one_proto::state::{HostState, ImageState, LcmState, VmState, VnetState};
use one_proto::template::Template;

/// When a hook fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The object of `resource` enters `state` (and, for VMs, `lcm_state`).
    State {
        resource: Resource,
        state: String,
        lcm_state: Option<String>,
    },
    /// After every call of `call`, successful or not (CALL_INFO's RESULT tells).
    Api { call: String },
}

impl Trigger {
    /// The trigger of a stored hook (its template was checked by [`check_template`]).
    pub fn of(hook: &Hook) -> Option<Trigger> {
        let t = &hook.template;
        match hook.hook_type {
            HookType::Api => Some(Trigger::Api {
                call: t.get("CALL")?.trim().to_string(),
            }),
            HookType::State => {
                let resource = Resource::parse(t.get("RESOURCE")?)?;
                let state = t.get("STATE")?.trim().to_ascii_uppercase();
                let lcm_state = match resource {
                    Resource::Vm => Some(t.get("LCM_STATE")?.trim().to_ascii_uppercase()),
                    _ => None,
                };
                Some(Trigger::State {
                    resource,
                    state,
                    lcm_state,
                })
            }
        }
    }

    pub fn matches_state(&self, obj: &StateObject) -> bool {
        match self {
            Trigger::State {
                resource,
                state,
                lcm_state,
            } => {
                *resource == obj.resource()
                    && state == obj.state_name()
                    && lcm_state.as_deref() == obj.lcm_state_name()
            }
            Trigger::Api { .. } => false,
        }
    }

    pub fn matches_api(&self, method: &str) -> bool {
        matches!(self, Trigger::Api { call } if call == method)
    }
}

/// Calls API hooks cannot watch: the read-only ones (OpenNebula refuses every `info` call).
pub fn hookable_call(method: &str) -> bool {
    !(method.ends_with(".info") || method.ends_with(".infoextended"))
}

/// YES / TRUE (any case) as OpenNebula reads boolean template values.
pub fn is_yes(v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("true")
    })
}

/// Checks a hook template of type `ty` and puts it in oned's canonical form: COMMAND is
/// required; REMOTE is always written YES or NO; state hooks need RESOURCE and a STATE valid
/// for it (VMs also LCM_STATE, or the legacy ON=...; both are then written); API hooks need a
/// CALL that `call_exists` and that may be hooked. NAME and TYPE are taken out (they are not
/// part of a hook's TEMPLATE). The error is OpenNebula's wording.
pub fn check_template(
    t: &mut Template,
    ty: HookType,
    call_exists: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    t.remove("NAME");
    t.remove("TYPE");
    let command = t.get("COMMAND").map(str::trim).unwrap_or("").to_string();
    if command.is_empty() {
        return Err("No COMMAND in template for Hook.".into());
    }
    t.set("COMMAND", command);
    let remote = is_yes(t.get("REMOTE"));
    t.set("REMOTE", if remote { "YES" } else { "NO" });
    if let Some(timeout) = t.get("TIMEOUT")
        && timeout.trim().parse::<u64>().is_err()
    {
        return Err(format!(
            "Invalid TIMEOUT: {timeout}, it must be a number of seconds."
        ));
    }
    match ty {
        HookType::Api => {
            let call = t.get("CALL").map(str::trim).unwrap_or("").to_string();
            if !call_exists(&call) || !hookable_call(&call) {
                return Err(format!(
                    "API call does not exist or is not supported: {call}"
                ));
            }
            t.set("CALL", call);
        }
        HookType::State => {
            let resource = match t.get("RESOURCE").map(str::trim) {
                None | Some("") => {
                    return Err("RESOURCE attribute is required for STATE hooks.".into());
                }
                Some(r) => {
                    Resource::parse(r).ok_or_else(|| format!("Invalid resource type: {r}"))?
                }
            };
            t.set("RESOURCE", resource.name());
            check_states(t, resource)?;
        }
    }
    Ok(())
}

fn check_states(t: &mut Template, resource: Resource) -> Result<(), String> {
    let state = t
        .get("STATE")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    match resource {
        Resource::Vm => {
            let on: String = t
                .remove("ON")
                .into_iter()
                .find_map(|v| match v {
                    one_proto::AttrValue::Single(s) => Some(s.trim().to_ascii_uppercase()),
                    _ => None,
                })
                .unwrap_or_default();
            use LcmState as L;
            use VmState as V;
            let (vm, lcm) = match on.as_str() {
                "PROLOG" => (V::Active, L::Prolog),
                "RUNNING" => (V::Active, L::Running),
                "SHUTDOWN" => (V::Active, L::Epilog),
                "STOP" => (V::Stopped, L::LcmInit),
                "DONE" => (V::Done, L::LcmInit),
                "UNKNOWN" => (V::Active, L::Unknown),
                // ON=CUSTOM, or (our addition) no ON at all: STATE and LCM_STATE say it.
                "CUSTOM" | "" => {
                    let vm = V::from_name(&state).ok_or_else(|| format!("Wrong STATE: {state}"))?;
                    let lcm_text = t.get("LCM_STATE").map(|s| s.trim().to_string());
                    let lcm = match lcm_text.as_deref() {
                        Some(l) => {
                            L::from_name(l).ok_or_else(|| format!("Wrong LCM_STATE: {l}"))?
                        }
                        // LCM_STATE only means something while ACTIVE.
                        None if vm != V::Active => L::LcmInit,
                        None => return Err("Wrong LCM_STATE: ".into()),
                    };
                    (vm, lcm)
                }
                other => return Err(format!("Unkown state condition: {other}")),
            };
            t.set("STATE", vm.name());
            t.set("LCM_STATE", lcm.name());
        }
        Resource::Host => {
            let s =
                HostState::from_name(&state).ok_or_else(|| format!("Invalid STATE: {state}"))?;
            t.set("STATE", s.name());
        }
        Resource::Image => {
            // oned reads an unknown name as INIT, and refuses INIT.
            let s = ImageState::from_name(&state)
                .filter(|s| *s != ImageState::Init)
                .ok_or_else(|| format!("Invalid or unkown STATE condition: {state}"))?;
            t.set("STATE", s.name());
        }
        Resource::Vnet => {
            let s =
                VnetState::from_name(&state).ok_or_else(|| format!("Invalid STATE: {state}"))?;
            t.set("STATE", s.name());
        }
    }
    if resource != Resource::Vm {
        t.remove("LCM_STATE");
    }
    Ok(())
}

/// Expands ARGUMENTS as OpenNebula's hook manager does: split at blanks, `$TEMPLATE` and `$API`
/// replaced by `subst` (empty when it has nothing), other words kept; joined by one space.
pub fn expand_arguments(args: &str, mut subst: impl FnMut(&str) -> Option<String>) -> String {
    args.split_whitespace()
        .filter_map(|a| match a {
            "$TEMPLATE" | "$API" => subst(a).filter(|s| !s.is_empty()),
            other => Some(other.to_string()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use one_proto::objects::host::{Host, HostShare};
    use std::sync::Arc;

    fn tmpl(text: &str) -> Template {
        Template::parse(text).unwrap()
    }

    fn exists(m: &str) -> bool {
        ["one.vm.allocate", "one.vm.info", "one.host.delete"].contains(&m)
    }

    fn check(text: &str, ty: HookType) -> Result<Template, String> {
        let mut t = tmpl(text);
        check_template(&mut t, ty, &exists).map(|_| t)
    }

    #[test]
    fn api_hooks_need_an_existing_hookable_call() {
        let t = check(
            "NAME=a TYPE=api COMMAND=\" /bin/x \" CALL=one.vm.allocate",
            HookType::Api,
        )
        .unwrap();
        assert_eq!(t.get("NAME"), None, "NAME lives outside the template");
        assert_eq!(t.get("TYPE"), None);
        assert_eq!(t.get("COMMAND"), Some("/bin/x"));
        assert_eq!(t.get("REMOTE"), Some("NO"));
        assert_eq!(
            check("COMMAND=x CALL=one.vm.info", HookType::Api).unwrap_err(),
            "API call does not exist or is not supported: one.vm.info"
        );
        assert_eq!(
            check("COMMAND=x CALL=one.vm.fly", HookType::Api).unwrap_err(),
            "API call does not exist or is not supported: one.vm.fly"
        );
        assert_eq!(
            check("CALL=one.vm.allocate", HookType::Api).unwrap_err(),
            "No COMMAND in template for Hook."
        );
        assert!(
            check("COMMAND=x CALL=one.vm.allocate TIMEOUT=soon", HookType::Api)
                .unwrap_err()
                .starts_with("Invalid TIMEOUT")
        );
    }

    #[test]
    fn state_hooks_need_resource_and_valid_states() {
        let t = check(
            "COMMAND=x RESOURCE=vm STATE=active LCM_STATE=running REMOTE=yes",
            HookType::State,
        )
        .unwrap();
        assert_eq!(
            (
                t.get("RESOURCE"),
                t.get("STATE"),
                t.get("LCM_STATE"),
                t.get("REMOTE")
            ),
            (Some("VM"), Some("ACTIVE"), Some("RUNNING"), Some("YES"))
        );
        // Legacy ON= is turned into STATE/LCM_STATE.
        let t = check("COMMAND=x RESOURCE=VM ON=prolog", HookType::State).unwrap();
        assert_eq!(
            (t.get("STATE"), t.get("LCM_STATE"), t.get("ON")),
            (Some("ACTIVE"), Some("PROLOG"), None)
        );
        let t = check("COMMAND=x RESOURCE=VM STATE=POWEROFF", HookType::State).unwrap();
        assert_eq!(t.get("LCM_STATE"), Some("LCM_INIT"));
        let err = |s| check(s, HookType::State).unwrap_err();
        assert_eq!(
            err("COMMAND=x STATE=ERROR"),
            "RESOURCE attribute is required for STATE hooks."
        );
        assert_eq!(
            err("COMMAND=x RESOURCE=ZONE STATE=X"),
            "Invalid resource type: ZONE"
        );
        assert_eq!(
            err("COMMAND=x RESOURCE=VM STATE=ACTIVE"),
            "Wrong LCM_STATE: "
        );
        assert_eq!(
            err("COMMAND=x RESOURCE=VM STATE=RUNNING LCM_STATE=RUNNING"),
            "Wrong STATE: RUNNING"
        );
        assert_eq!(
            err("COMMAND=x RESOURCE=VM ON=LATER"),
            "Unkown state condition: LATER"
        );
        assert_eq!(
            err("COMMAND=x RESOURCE=HOST STATE=BROKEN"),
            "Invalid STATE: BROKEN"
        );
        assert_eq!(
            err("COMMAND=x RESOURCE=IMAGE STATE=INIT"),
            "Invalid or unkown STATE condition: INIT"
        );
        let t = check(
            "COMMAND=x RESOURCE=vnet STATE=ready LCM_STATE=x",
            HookType::State,
        )
        .unwrap();
        assert_eq!(
            (t.get("RESOURCE"), t.get("STATE"), t.get("LCM_STATE")),
            (Some("NET"), Some("READY"), None)
        );
    }

    fn host(state: HostState) -> StateObject {
        StateObject::Host(Arc::new(Host {
            id: 4,
            name: "h1".into(),
            state,
            prev_state: HostState::Init,
            im_mad: "dummy".into(),
            vm_mad: "dummy".into(),
            cluster_id: 0,
            cluster: "default".into(),
            share: HostShare::default(),
            vms: vec![],
            template: Template::new(),
            monitoring: None,
        }))
    }

    fn hook(ty: HookType, text: &str) -> Hook {
        let mut t = tmpl(text);
        check_template(&mut t, ty, &exists).unwrap();
        Hook {
            id: 0,
            name: "h".into(),
            hook_type: ty,
            lock: None,
            template: t,
            log: vec![],
            next_execution_id: 0,
        }
    }

    #[test]
    fn triggers_match_by_resource_state_and_call() {
        let monitored = Trigger::of(&hook(
            HookType::State,
            "COMMAND=x RESOURCE=HOST STATE=MONITORED",
        ))
        .unwrap();
        assert!(monitored.matches_state(&host(HostState::Monitored)));
        assert!(!monitored.matches_state(&host(HostState::Error)));
        assert!(!monitored.matches_api("one.host.allocate"));
        let mut bad = hook(
            HookType::State,
            "COMMAND=x RESOURCE=VM STATE=ACTIVE LCM_STATE=RUNNING",
        );
        bad.template.remove("LCM_STATE");
        assert!(Trigger::of(&bad).is_none(), "a VM trigger needs LCM_STATE");
        let api = Trigger::of(&hook(HookType::Api, "COMMAND=x CALL=one.vm.allocate")).unwrap();
        assert!(api.matches_api("one.vm.allocate"));
        assert!(!api.matches_api("one.vm.allocatex"));
        assert!(!api.matches_state(&host(HostState::Monitored)));
    }

    #[test]
    fn arguments_substitute_template_and_api() {
        let mut asked = Vec::new();
        let out = expand_arguments("  $TEMPLATE -m   -p 5 $API $ID ", |a| {
            asked.push(a.to_string());
            (a == "$TEMPLATE").then(|| "PFg+".to_string())
        });
        assert_eq!(out, "PFg+ -m -p 5 $ID");
        assert_eq!(asked, ["$TEMPLATE", "$API"]);
        assert_eq!(expand_arguments("", |_| None), "");
        assert!(
            is_yes(Some(" Yes")) && is_yes(Some("TRUE")) && !is_yes(Some("no")) && !is_yes(None)
        );
    }
}
