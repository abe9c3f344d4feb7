//! One module per command; this one holds what their verbs share.

pub mod acl;
pub mod cluster;
pub mod datastore;
pub mod group;
pub mod hook;
pub mod host;
pub mod image;
pub mod quota;
pub mod secgroup;
pub mod template;
pub mod user;
pub mod vm;
pub mod vnet;

use crate::args::{FormatOpts, ListOpts};
use crate::error::{CliError, CliResult};
use crate::resolve::{self, Kind};
use crate::table::Table;
use crate::{Ctx, input};
use oca::{Chmod, Object, PoolFilter, UpdateMode};
use std::io::Write;
use std::path::Path;

/// Lists newest first, as OpenNebula's CLI shows them with oned's default order
/// (`API_LIST_ORDER=DESC`); sorted here so the output never depends on the server's order.
pub fn newest_first<T: Object>(items: &mut [T]) {
    items.sort_by_key(|o| std::cmp::Reverse(o.id()));
}

/// Prints a list: the document with `-x/-j/-y`, the columns with `--describe`, else the
/// table of `items` (fetched only when needed).
pub async fn print_list<'a, T, X, I>(
    out: &mut dyn Write,
    opts: &ListOpts,
    table: &Table<'a, T>,
    xml: X,
    items: I,
) -> CliResult<i32>
where
    X: std::future::Future<Output = Result<String, oca::OcaError>>,
    I: std::future::Future<Output = CliResult<Vec<T>>>,
{
    if opts.describe {
        table.describe(out)?;
        return Ok(0);
    }
    if opts.format.any() {
        crate::show::document(out, &xml.await?, &opts.format)?;
        return Ok(0);
    }
    let items = items.await?;
    table.print(&items, opts, out)?;
    Ok(0)
}

/// Prints an object document as `-x/-j/-y` ask; false when none was asked.
pub async fn print_document<X>(out: &mut dyn Write, f: &FormatOpts, xml: X) -> CliResult<bool>
where
    X: std::future::Future<Output = Result<String, oca::OcaError>>,
{
    if !f.any() {
        return Ok(false);
    }
    crate::show::document(out, &xml.await?, f)?;
    Ok(true)
}

/// `ID: n`, as OpenNebula prints a new object's id.
pub fn print_id(out: &mut dyn Write, id: i64) -> CliResult<()> {
    writeln!(out, "ID: {id}")?;
    Ok(())
}

/// The filter flag argument of `list`: `a`/`all`, `m`/`mine`, `g`/`group`,
/// `G`/`primary group`, a uid or a user name.
pub async fn filter_flag(ctx: &Ctx, arg: Option<&str>) -> CliResult<PoolFilter> {
    Ok(match arg {
        None | Some("a") | Some("all") => PoolFilter::All,
        Some("m") | Some("mine") => PoolFilter::Mine,
        Some("g") | Some("group") => PoolFilter::MineAndGroups,
        Some("G") | Some("primary group") => PoolFilter::PrimaryGroup,
        Some(user) => PoolFilter::User(resolve::id(&ctx.client, Kind::User, user).await?),
    })
}

/// `chmod`'s mode: octal (`640`) or `u=rw,g=r,o=` as OpenNebula's CLI takes it.
pub fn parse_chmod(s: &str) -> CliResult<Chmod> {
    if let Some(c) = Chmod::parse_octal(s) {
        return Ok(c);
    }
    let mut mode = 0u32;
    for part in s.split(',') {
        let Some((who, perms)) = part.split_once('=') else {
            continue;
        };
        let rwx = perms.matches('r').count() as u32 * 4
            + perms.matches('w').count() as u32 * 2
            + perms.matches('x').count() as u32;
        mode += match who {
            "u" => rwx * 64,
            "g" => rwx * 8,
            _ => rwx,
        };
    }
    if mode == 0 || mode > 0o777 {
        return Err(CliError::msg("Error in permissions format"));
    }
    Ok(Chmod::octal(mode))
}

/// The new template of `update`: the file, else standard input, else `$EDITOR` on the
/// current template (or on nothing with `--append`).
pub async fn new_template<C>(file: Option<&Path>, append: bool, current: C) -> CliResult<String>
where
    C: std::future::Future<Output = CliResult<String>>,
{
    if let Some(t) = input::file_or_stdin(file)? {
        return Ok(t);
    }
    if append {
        return input::editor("");
    }
    input::editor(&current.await?)
}

pub fn update_mode(append: bool) -> UpdateMode {
    if append {
        UpdateMode::Merge
    } else {
        UpdateMode::Replace
    }
}

/// A size as OpenNebula's CLI takes it: MB by default, `G`/`GB`, `T`/`TB`, `M`/`MB`.
pub fn size_in_mb(s: &str) -> CliResult<u64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("tb").or_else(|| t.strip_suffix('t')) {
        (n, 1024.0 * 1024.0)
    } else if let Some(n) = t.strip_suffix("gb").or_else(|| t.strip_suffix('g')) {
        (n, 1024.0)
    } else if let Some(n) = t.strip_suffix("mb").or_else(|| t.strip_suffix('m')) {
        (n, 1.0)
    } else {
        (t.as_str(), 1.0)
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0 && v.is_finite())
        .map(|v| (v * mult).ceil() as u64)
        .ok_or_else(|| CliError::msg("Size value malformed"))
}

/// The user column of lists: the name, or the id with `--numeric`.
pub fn owner_name(numeric: bool, id: i64, name: &str) -> String {
    if numeric {
        id.to_string()
    } else {
        name.to_owned()
    }
}

/// OpenNebula's `clusters_str`: ids joined by `,`, `-` for none.
pub fn clusters_str(ids: &[i64]) -> String {
    if ids.is_empty() {
        "-".into()
    } else {
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_forms() {
        assert_eq!(parse_chmod("640").unwrap(), Chmod::octal(0o640));
        assert_eq!(parse_chmod("u=rw,g=r").unwrap(), Chmod::octal(0o640));
        assert!(parse_chmod("nonsense").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size_in_mb("1024").unwrap(), 1024);
        assert_eq!(size_in_mb("2G").unwrap(), 2048);
        assert_eq!(size_in_mb("1.5gb").unwrap(), 1536);
        assert_eq!(size_in_mb("1T").unwrap(), 1_048_576);
        assert!(size_in_mb("big").is_err());
    }
}
