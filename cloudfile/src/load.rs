//! Loading a cloud file: read the documents, merge them, apply the chosen environment and the
//! variables, read the objects strictly, check references and order them. No call to the
//! cloud happens here: a file that is wrong is refused before any.

use crate::decode;
use crate::error::{Diag, Diags};
use crate::model::{CloudFile, Desired, Kind, ObjKey};
use crate::source::{self, Format, Key, Node, Pos, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// How to read a cloud file.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The environment whose overrides apply (`environments.<name>`).
    pub env: Option<String>,
    /// Variables given on the command line; they win over the file's.
    pub vars: Vec<(String, String)>,
    /// The user applying the file (owned objects written without `owner/` are theirs).
    pub applier: String,
}

/// Loads the cloud file at `path` (a file, or a directory of them).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<CloudFile, Diags> {
    let docs = source::load_documents(path)?;
    build(source::merge_documents(docs)?, opts)
}

/// Loads a cloud file from text (`name` is how errors call it).
pub fn load_str(
    name: &str,
    text: &str,
    format: Format,
    opts: &LoadOptions,
) -> Result<CloudFile, Diags> {
    build(source::parse(name, text, format)?, opts)
}

fn build(mut root: Node, opts: &LoadOptions) -> Result<CloudFile, Diags> {
    let mut diags = Diags::default();
    apply_environment(&mut root, opts.env.as_deref(), &mut diags);
    let vars = variables(&root, &opts.vars, &mut diags);
    if let Value::Map(entries) = &mut root.value {
        for (k, v) in entries.iter_mut() {
            if k.name != "variables" && k.name != "environments" {
                source::interpolate(v, &vars, &mut diags);
            }
        }
    }
    let (name, objects, external) = decode::decode(&root, &opts.applier, &mut diags);
    let objects = check_and_order(objects, &external, &mut diags);
    diags.into_result(CloudFile {
        name,
        applier: opts.applier.clone(),
        objects,
        external: external.into_iter().map(|(k, _)| k).collect(),
    })
}

fn apply_environment(root: &mut Node, env: Option<&str>, diags: &mut Diags) {
    let envs = root.get("environments").cloned();
    let Some(env) = env else {
        return;
    };
    let available: Vec<String> = envs
        .as_ref()
        .and_then(|e| e.as_map())
        .map(|m| m.iter().map(|(k, _)| k.name.clone()).collect())
        .unwrap_or_default();
    let Some(over) = envs.as_ref().and_then(|e| e.get(env)).cloned() else {
        let pos = envs
            .as_ref()
            .map_or_else(|| root.pos.clone(), |e| e.pos.clone());
        diags.push(Diag::new(
            &pos,
            if available.is_empty() {
                format!("no environment {env:?}: the file declares no environments")
            } else {
                format!(
                    "no environment {env:?}; the file declares: {}",
                    available.join(", ")
                )
            },
        ));
        return;
    };
    if let Value::Null = over.value {
        return;
    }
    let Some(entries) = over.as_map() else {
        diags.push(Diag::new(
            &over.pos,
            format!(
                "environment {env} must be a mapping of overrides, not {}",
                over.what()
            ),
        ));
        return;
    };
    for (k, _) in entries {
        if k.name == "cloud" || k.name == "environments" {
            diags.push(Diag::new(
                &k.pos,
                format!("an environment cannot change {}", k.name),
            ));
        }
    }
    source::deep_merge(root, over);
}

fn variables(root: &Node, cli: &[(String, String)], diags: &mut Diags) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    if let Some(node) = root.get("variables") {
        match &node.value {
            Value::Map(entries) => {
                for (Key { name, pos }, v) in entries {
                    if !valid_var(name) {
                        diags.push(Diag::new(
                            pos,
                            format!("variable name {name:?} must be letters, digits and _"),
                        ));
                        continue;
                    }
                    match &v.value {
                        Value::Scalar(s) => {
                            vars.insert(name.clone(), s.clone());
                        }
                        Value::Null => {
                            vars.insert(name.clone(), String::new());
                        }
                        _ => diags.push(Diag::new(
                            &v.pos,
                            format!("variable {name} must be a single value, not {}", v.what()),
                        )),
                    }
                }
            }
            Value::Null => {}
            _ => diags.push(Diag::new(
                &node.pos,
                format!("variables must be a mapping, not {}", node.what()),
            )),
        }
    }
    for (k, v) in cli {
        if !valid_var(k) {
            diags.push(Diag::new(
                &Pos::synthetic("--var"),
                format!("variable name {k:?} must be letters, digits and _"),
            ));
        }
        vars.insert(k.clone(), v.clone());
    }
    vars
}

fn valid_var(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Refuses duplicates and references to undeclared objects, and orders the objects so that
/// every object comes after what it refers to (a cycle is an error naming it).
fn check_and_order(
    objects: Vec<Desired>,
    external: &[(ObjKey, Pos)],
    diags: &mut Diags,
) -> Vec<Desired> {
    let mut index: HashMap<ObjKey, usize> = HashMap::new();
    let mut kept: Vec<Desired> = Vec::with_capacity(objects.len());
    for d in objects {
        if let Some(&i) = index.get(&d.key) {
            let what = if d.key.kind == Kind::Host {
                let group = |x: &Desired| match &x.spec {
                    crate::model::Spec::Host(h) => h.host_group.clone(),
                    _ => String::new(),
                };
                format!(
                    "host {} is listed twice (host groups {} and {}; also at {})",
                    d.key.name,
                    group(&kept[i]),
                    group(&d),
                    kept[i].pos
                )
            } else {
                format!("{} is declared twice (also at {})", d.key, kept[i].pos)
            };
            diags.push(Diag::new(&d.pos, what));
            continue;
        }
        index.insert(d.key.clone(), kept.len());
        kept.push(d);
    }
    let builtins: BTreeSet<ObjKey> = decode::builtins().into_iter().collect();
    let mut known_external: BTreeSet<&ObjKey> = builtins.iter().collect();
    for (k, pos) in external {
        if let Some(&i) = index.get(k) {
            diags.push(Diag::new(
                pos,
                format!(
                    "{k} is both external and declared (at {}): external is for objects the file does not manage",
                    kept[i].pos
                ),
            ));
        }
        known_external.insert(k);
    }
    for d in &kept {
        for dep in &d.deps {
            if dep.key == d.key || index.contains_key(&dep.key) || known_external.contains(&dep.key)
            {
                continue;
            }
            diags.push(Diag::new(
                &dep.pos,
                format!(
                    "{} refers to {}, which the file does not declare (declare it, or list it under external: {}: if it exists already)",
                    d.key,
                    dep.key,
                    dep.key.kind.section()
                ),
            ));
        }
    }
    order(kept, &index, diags)
}

/// Kahn's algorithm; among the objects ready at a time, the one of the earliest kind, then
/// by name, goes first, so the order does not depend on the file's layout.
fn order(objects: Vec<Desired>, index: &HashMap<ObjKey, usize>, diags: &mut Diags) -> Vec<Desired> {
    let n = objects.len();
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    for (i, d) in objects.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for dep in &d.deps {
            if let Some(&j) = index.get(&dep.key)
                && j != i
                && seen.insert(j)
            {
                after[j].push(i);
                pending[i] += 1;
            }
        }
    }
    let rank = |i: usize| {
        let k = &objects[i].key;
        (k.kind, k.owner.clone(), k.name.clone(), i)
    };
    let mut ready: BTreeSet<_> = (0..n).filter(|i| pending[*i] == 0).map(rank).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(first) = ready.pop_first() {
        let i = first.3;
        out.push(i);
        for &j in &after[i] {
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.insert(rank(j));
            }
        }
    }
    if out.len() < n {
        report_cycle(&objects, index, &pending, diags);
        // Keep the others in some order so that later checks still see them.
        out.extend((0..n).filter(|i| pending[*i] > 0));
    }
    let mut slots: Vec<Option<Desired>> = objects.into_iter().map(Some).collect();
    out.into_iter().filter_map(|i| slots[i].take()).collect()
}

fn report_cycle(
    objects: &[Desired],
    index: &HashMap<ObjKey, usize>,
    pending: &[usize],
    diags: &mut Diags,
) {
    // Walk dependencies among the objects left until one repeats: that is a cycle.
    let Some(start) = (0..objects.len()).find(|i| pending[*i] > 0) else {
        return;
    };
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = objects[at]
            .deps
            .iter()
            .filter_map(|d| index.get(&d.key).copied())
            .find(|j| *j != at && pending[*j] > 0);
        let Some(next) = next else {
            return;
        };
        if let Some(p) = path.iter().position(|x| *x == next) {
            let cycle: Vec<String> = path[p..]
                .iter()
                .chain(std::iter::once(&next))
                .map(|i| objects[*i].key.to_string())
                .collect();
            let first = &objects[path[p]];
            diags.push(Diag::new(
                &first.pos,
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
            return;
        }
        path.push(next);
        at = next;
    }
}
