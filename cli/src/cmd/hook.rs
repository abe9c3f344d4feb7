//! `onehook`: hooks and their execution log.

use super::{new_template, newest_first, print_document, print_list, update_mode};
use crate::args::{ConnOpts, FormatOpts, ListOpts, LockOpts};
use crate::error::{CliError, CliResult};
use crate::fmt;
use crate::input;
use crate::resolve::{self, Kind};
use crate::show::{kv20, section, template_str};
use crate::table::{Col, Table};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::{Hook, HookExecution};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "onehook", version, about = "Manages OpenNebula hooks")]
#[command(
    after_help = "Hook lists: an id, a name, ids and names separated by commas, \
    or ranges such as 1,8..15."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Creates a new hook from a template file (prints `ID: N`)
    Create { file: Option<PathBuf> },
    /// Deletes the given hooks
    Delete { hooks: String },
    /// Updates the hook template (opens $EDITOR without FILE)
    Update {
        hook: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Renames the hook
    Rename { hook: String, name: String },
    /// Locks hooks (default: --use)
    Lock {
        hooks: String,
        #[command(flatten)]
        level: LockOpts,
    },
    /// Unlocks hooks
    Unlock { hooks: String },
    /// Runs an execution of the hook again
    Retry { hook: String, execution: i64 },
    /// Lists hooks
    List {
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given hook
    Show {
        hook: String,
        #[command(flatten)]
        format: FormatOpts,
        /// Show this execution record
        #[arg(short, long)]
        execution: Option<i64>,
        /// Accepted for compatibility (attributes are never encrypted)
        #[arg(long)]
        decrypt: bool,
    },
    /// Shows the execution log of every hook (oneadmin group)
    Log {
        /// Only this hook
        #[arg(long)]
        hook: Option<String>,
        /// Only failed (-1) or succeeded (1) executions
        #[arg(long, allow_negative_numbers = true)]
        rc: Option<i64>,
    },
}

impl crate::Command for Cli {
    fn conn(&self) -> &ConnOpts {
        &self.conn
    }

    async fn run(self, ctx: Ctx, out: &mut dyn Write) -> CliResult<i32> {
        run(self.verb, &ctx, out).await
    }
}

pub async fn run(verb: Verb, ctx: &Ctx, out: &mut dyn Write) -> CliResult<i32> {
    let c = &ctx.client;
    let ids = |l: String| async move { resolve::ids(c, Kind::Hook, &l).await };
    let one = |l: String| async move { resolve::id(c, Kind::Hook, &l).await };
    match verb {
        Verb::Create { file } => {
            let Some(text) = input::file_or_stdin(file.as_deref())? else {
                return Err(CliError::msg(
                    "A template file (or standard input) is needed",
                ));
            };
            let id = c.hook().allocate(&text).await?;
            super::print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { hooks } => {
            let l = ids(hooks).await?;
            Ok(each(&l, |id| async move { Ok(c.hook().delete(id).await?) }).await)
        }
        Verb::Update { hook, file, append } => {
            let id = one(hook).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(&c.hook().info(id).await?.template, &[], true))
            })
            .await?;
            c.hook().update(id, &text, update_mode(append)).await?;
            Ok(0)
        }
        Verb::Rename { hook, name } => {
            let id = one(hook).await?;
            c.hook().rename(id, &name).await?;
            Ok(0)
        }
        Verb::Lock { hooks, level } => {
            let l = ids(hooks).await?;
            let level = level.level();
            Ok(each(&l, |id| async move { Ok(c.hook().lock(id, level).await?) }).await)
        }
        Verb::Unlock { hooks } => {
            let l = ids(hooks).await?;
            Ok(each(&l, |id| async move { Ok(c.hook().unlock(id).await?) }).await)
        }
        Verb::Retry { hook, execution } => {
            let id = one(hook).await?;
            c.hook().retry(id, execution).await?;
            Ok(0)
        }
        Verb::List { opts } => {
            let table = list_table(&opts);
            print_list(out, &opts, &table, c.hook().list_xml(), async {
                let mut v = c.hook().list().await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show {
            hook,
            format,
            execution,
            ..
        } => {
            let id = one(hook).await?;
            if print_document(out, &format, c.hook().info_xml(id)).await? {
                return Ok(0);
            }
            let h = c.hook().info(id).await?;
            show(out, &h, execution)?;
            Ok(0)
        }
        Verb::Log { hook, rc } => {
            let hook_id = match hook {
                Some(h) => one(h).await?,
                None => -1,
            };
            let mut log = c.hook().log(-1, -1, hook_id, rc.unwrap_or(0)).await?;
            log.sort_by_key(|e| (e.hook_id, e.execution_id));
            executions(out, &log, true)?;
            Ok(0)
        }
    }
}

/// `onehook list`'s columns (OpenNebula 7's onehook.yaml).
pub fn list_table(_opts: &ListOpts) -> Table<'_, Hook> {
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for the Hook", 4, |h: &Hook| {
                h.id.to_string()
            })
            .adjust(),
            Col::new("NAME", "Name of the Hook", 19, |h: &Hook| h.name.clone())
                .left()
                .expand(),
            Col::new("TYPE", "Type of the Hook", 8, |h: &Hook| {
                h.hook_type.clone()
            }),
        ],
        default: vec!["ID", "NAME", "TYPE"],
        stat: "STAT",
    }
}

fn executions(out: &mut dyn Write, log: &[HookExecution], with_hook: bool) -> CliResult<()> {
    let mut cols = Vec::new();
    let mut default = Vec::new();
    if with_hook {
        cols.push(
            Col::new("HOOK", "Hook ID", 4, |e: &HookExecution| {
                e.hook_id.to_string()
            })
            .adjust(),
        );
        default.push("HOOK");
    }
    cols.extend([
        Col::new("ID", "Execution ID", 2, |e: &HookExecution| {
            e.execution_id.to_string()
        })
        .adjust(),
        Col::new("TIMESTAMP", "Timestamp", 15, |e: &HookExecution| {
            fmt::time_short(e.timestamp)
        }),
        Col::new("RC", "Return code", 2, |e: &HookExecution| {
            e.code.to_string()
        })
        .adjust(),
        Col::new("EXECUTION", "Return code", 9, |e: &HookExecution| {
            if e.code == 0 { "SUCCESS" } else { "ERROR" }.to_string()
        })
        .adjust(),
    ]);
    default.extend(["ID", "TIMESTAMP", "RC", "EXECUTION"]);
    Table {
        cols,
        default,
        stat: "EXECUTION",
    }
    .print(log, &ListOpts::default(), out)
}

fn decode(b64: &str) -> String {
    one_proto_base64(b64).unwrap_or_else(|| b64.to_string())
}

/// Standard base64 without padding checks; `None` when the text is not base64.
fn one_proto_base64(s: &str) -> Option<String> {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for b in s.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=') {
        let v = ABC.iter().position(|c| *c == b)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `onehook show`'s layout.
pub fn show(out: &mut dyn Write, h: &Hook, execution: Option<i64>) -> CliResult<()> {
    const W: usize = 18;
    section(out, &format!("HOOK {} INFORMATION", h.id), true)?;
    kv20(out, W, "ID", &h.id.to_string())?;
    kv20(out, W, "NAME", &h.name)?;
    kv20(out, W, "TYPE", &h.hook_type)?;
    kv20(out, W, "LOCK", h.lock.map_or("None", |l| l.level_name()))?;
    writeln!(out)?;
    if let Some(exec) = execution {
        let Some(e) = h.log.iter().find(|e| e.execution_id == exec) else {
            writeln!(out, "Cannot find execution record {exec}")?;
            return Ok(());
        };
        section(out, "HOOK EXECUTION RECORD", true)?;
        kv20(out, W, "EXECUTION ID", &e.execution_id.to_string())?;
        kv20(out, W, "TIMESTAMP", &fmt::time(e.timestamp))?;
        kv20(out, W, "COMMAND", &e.command)?;
        kv20(out, W, "ARGUMENTS", &e.arguments)?;
        kv20(out, W, "EXIT CODE", &e.code.to_string())?;
        writeln!(out)?;
        section(out, "EXECUTION STDOUT", true)?;
        if !e.stdout.is_empty() {
            writeln!(out, "{}", decode(&e.stdout))?;
        }
        writeln!(out)?;
        section(out, "EXECUTION STDERR", true)?;
        if !e.stderr.is_empty() {
            writeln!(out, "{}", decode(&e.stderr))?;
        }
        writeln!(out)?;
        return Ok(());
    }
    section(out, "HOOK TEMPLATE", false)?;
    writeln!(out, "{}", template_str(&h.template, &[], true))?;
    if !h.log.is_empty() {
        writeln!(out)?;
        section(out, "EXECUTION LOG", false)?;
        executions(out, &h.log, false)?;
    }
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(
            super::one_proto_base64("aGVsbG8K").as_deref(),
            Some("hello\n")
        );
        assert_eq!(super::one_proto_base64("not base64!"), None);
    }
}
