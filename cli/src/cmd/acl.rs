//! `oneacl`: ACL rules.

use super::print_id;
use crate::args::{ConnOpts, ListOpts};
use crate::error::{CliError, CliResult};
use crate::table::{Col, Table};
use crate::{Ctx, each};
use clap::{Parser, Subcommand};
use oca::AclRule;
use std::io::Write;

#[derive(Parser, Debug)]
#[command(name = "oneacl", version, about = "Manages OpenNebula ACL rules")]
#[command(after_help = "A rule is USER RESOURCE RIGHTS [ZONE], e.g. \
    \"@1 VM+IMAGE/* CREATE\" or \"#5 HOST/%0 USE+MANAGE #0\".")]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Adds a rule: one quoted string or its three or four parts (prints `ID: N`)
    Create {
        #[arg(num_args = 1..=4, required = true)]
        rule: Vec<String>,
    },
    /// Deletes the given rules
    Delete { ids: String },
    /// Lists the rules
    List {
        #[command(flatten)]
        opts: ListOpts,
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
    match verb {
        Verb::Create { rule } => {
            if rule.len() == 2 {
                return Err(CliError::msg(
                    "A rule is USER RESOURCE RIGHTS [ZONE], or those in one string",
                ));
            }
            let id = c.acl().add(&rule.join(" ")).await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { ids } => {
            let Some(list) = crate::resolve::range(&ids) else {
                return Err(CliError::msg(format!("Argument '{ids}' is not a valid ID")));
            };
            Ok(each(&list, |id| async move { Ok(c.acl().delete(id).await?) }).await)
        }
        Verb::List { opts } => {
            let table = list_table(&opts);
            super::print_list(out, &opts, &table, c.acl().list_xml(), async {
                let mut v = c.acl().list().await?;
                // Rules are listed in the order they were added.
                v.sort_by_key(|r| r.id);
                Ok(v)
            })
            .await
        }
    }
}

/// One field of the rule string (`USER RESOURCE RIGHTS ZONE`).
fn field(r: &AclRule, i: usize) -> &str {
    r.string.split_whitespace().nth(i).unwrap_or("")
}

/// The RES_VHNIUTGDCOZSvRMAPtB mask: a letter per resource type in the rule.
fn resource_mask(resource: &str) -> String {
    const TYPES: [(&str, char); 19] = [
        ("VM", 'V'),
        ("HOST", 'H'),
        ("NET", 'N'),
        ("IMAGE", 'I'),
        ("USER", 'U'),
        ("TEMPLATE", 'T'),
        ("GROUP", 'G'),
        ("DATASTORE", 'D'),
        ("CLUSTER", 'C'),
        ("DOCUMENT", 'O'),
        ("ZONE", 'Z'),
        ("SECGROUP", 'S'),
        ("VDC", 'v'),
        ("VROUTER", 'R'),
        ("MARKETPLACE", 'M'),
        ("MARKETPLACEAPP", 'A'),
        ("VMGROUP", 'P'),
        ("VNTEMPLATE", 't'),
        ("BACKUPJOB", 'B'),
    ];
    let types: Vec<&str> = resource
        .split('/')
        .next()
        .unwrap_or("")
        .split('+')
        .collect();
    TYPES
        .iter()
        .map(|(name, c)| if types.contains(name) { *c } else { '-' })
        .collect()
}

/// The OPE_UMAC mask: u(se) m(anage) a(dmin) c(reate).
fn rights_mask(rights: &str) -> String {
    let r: Vec<&str> = rights.split('+').collect();
    [
        ("USE", 'u'),
        ("MANAGE", 'm'),
        ("ADMIN", 'a'),
        ("CREATE", 'c'),
    ]
    .iter()
    .map(|(n, c)| if r.contains(n) { *c } else { '-' })
    .collect()
}

/// `oneacl list`'s columns (OpenNebula 7's oneacl.yaml).
pub fn list_table(_opts: &ListOpts) -> Table<'_, AclRule> {
    Table {
        cols: vec![
            Col::new("ID", "Rule Identifier", 4, |r: &AclRule| r.id.to_string()).adjust(),
            Col::new(
                "USER",
                "To which resource owner the rule applies to",
                8,
                |r: &AclRule| field(r, 0).to_string(),
            ),
            Col::new(
                "RES_VHNIUTGDCOZSvRMAPtB",
                "Resource to which the rule applies",
                23,
                |r: &AclRule| resource_mask(field(r, 1)),
            ),
            Col::new("RID", "Resource ID", 5, |r: &AclRule| {
                field(r, 1).split('/').nth(1).unwrap_or("").to_string()
            }),
            Col::new(
                "OPE_UMAC",
                "Operation to which the rule applies",
                8,
                |r: &AclRule| rights_mask(field(r, 2)),
            ),
            Col::new("ZONE", "Zone ID", 5, |r: &AclRule| field(r, 3).to_string()),
            Col::new("STRING", "ACL rule in string format", 4, |r: &AclRule| {
                r.string.clone()
            })
            .left()
            .adjust(),
        ],
        default: vec![
            "ID",
            "USER",
            "RES_VHNIUTGDCOZSvRMAPtB",
            "RID",
            "OPE_UMAC",
            "ZONE",
        ],
        stat: "STAT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(resource_mask("VM+IMAGE+TEMPLATE/*"), "V--I-T-------------");
        assert_eq!(resource_mask("HOST/#0"), "-H-----------------");
        assert_eq!(rights_mask("USE+MANAGE"), "um--");
        assert_eq!(rights_mask("CREATE"), "---c");
    }
}
