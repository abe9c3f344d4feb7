//! Objects named by id or by name, and id lists (`1,2,5`, `10..20`, `web-1,web-2`), as
//! OpenNebula's CLI reads them.

use crate::error::{CliError, CliResult};
use oca::{Client, Object, PoolFilter, PoolRange, VmQuery};

/// The kinds of objects a command can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Vm,
    Host,
    Image,
    Template,
    Vnet,
    Datastore,
    User,
    Group,
    Cluster,
    Hook,
    SecGroup,
}

impl Kind {
    /// The name OpenNebula's CLI uses in messages (`VM named x not found.`).
    pub fn rname(self) -> &'static str {
        match self {
            Kind::Vm => "VM",
            Kind::Host => "HOST",
            Kind::Image => "IMAGE",
            Kind::Template => "VMTEMPLATE",
            Kind::Vnet => "VNET",
            Kind::Datastore => "DATASTORE",
            Kind::User => "USER",
            Kind::Group => "GROUP",
            Kind::Cluster => "CLUSTER",
            Kind::Hook => "HOOK",
            Kind::SecGroup => "SECURITY_GROUP",
        }
    }
}

fn pairs<T: Object>(v: Vec<T>) -> Vec<(i64, String)> {
    v.into_iter()
        .map(|o| (o.id(), o.name().to_owned()))
        .collect()
}

/// Every object of `kind` the user can see, as (id, name).
async fn names(client: &Client, kind: Kind) -> CliResult<Vec<(i64, String)>> {
    let all = PoolFilter::All;
    let r = PoolRange::default();
    Ok(match kind {
        Kind::Vm => pairs(client.vm().list(&VmQuery::default()).await?),
        Kind::Host => pairs(client.host().list().await?),
        Kind::Image => pairs(client.image().list(all, r).await?),
        Kind::Template => pairs(client.template().list(all, r).await?),
        Kind::Vnet => pairs(client.vnet().list(all, r).await?),
        Kind::Datastore => pairs(client.datastore().list().await?),
        Kind::User => pairs(client.user().list().await?),
        Kind::Group => pairs(client.group().list().await?),
        Kind::Cluster => pairs(client.cluster().list().await?),
        Kind::Hook => pairs(client.hook().list().await?),
        Kind::SecGroup => pairs(client.secgroup().list(all, r).await?),
    })
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn find(pool: &[(i64, String)], name: &str, kind: Kind) -> CliResult<i64> {
    let mut found = pool.iter().filter(|(_, n)| n == name);
    match (found.next(), found.next()) {
        (Some((id, _)), None) => Ok(*id),
        (None, _) => Err(CliError::msg(format!(
            "{} named {name} not found.",
            kind.rname()
        ))),
        (Some(_), Some(_)) => Err(CliError::msg(format!(
            "There are multiple {}s with name {name}.",
            kind.rname()
        ))),
    }
}

/// An object named by id or by name.
pub async fn id(client: &Client, kind: Kind, arg: &str) -> CliResult<i64> {
    let arg = arg.trim();
    if is_id(arg) {
        return arg
            .parse()
            .map_err(|_| CliError::msg(format!("Argument '{arg}' is not a valid ID")));
    }
    let pool = names(client, kind).await?;
    find(&pool, arg, kind)
}

/// `1,8..15`: ids and ranges, when `arg` is written that way.
pub fn range(arg: &str) -> Option<Vec<i64>> {
    let arg: String = arg.chars().filter(|c| *c != ' ').collect();
    if arg.is_empty() {
        return None;
    }
    let mut ids: Vec<i64> = Vec::new();
    for part in arg.split(',') {
        if is_id(part) {
            ids.push(part.parse().ok()?);
        } else {
            let (a, b) = part.split_once("..")?;
            if !is_id(a) || !is_id(b) {
                return None;
            }
            let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
            // A range of more than a million ids is a typo, not a request.
            if b.saturating_sub(a) > 1_000_000 {
                return None;
            }
            ids.extend(a..=b);
        }
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|i| seen.insert(*i));
    Some(ids)
}

/// A list of objects: a range (`1,8..15`) or comma-separated names and ids.
pub async fn ids(client: &Client, kind: Kind, arg: &str) -> CliResult<Vec<i64>> {
    if let Some(ids) = range(arg) {
        return Ok(ids);
    }
    let mut pool: Option<Vec<(i64, String)>> = None;
    let mut out = Vec::new();
    for part in arg.split(',') {
        let part = part.trim();
        if is_id(part) {
            out.push(
                part.parse()
                    .map_err(|_| CliError::msg(format!("Argument '{part}' is not a valid ID")))?,
            );
            continue;
        }
        if pool.is_none() {
            pool = Some(names(client, kind).await?);
        }
        out.push(find(pool.as_deref().expect("just set"), part, kind)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range("1,8..10"), Some(vec![1, 8, 9, 10]));
        assert_eq!(range("5"), Some(vec![5]));
        assert_eq!(range("3,3,1..3"), Some(vec![3, 1, 2]));
        assert_eq!(range("web-1"), None);
        assert_eq!(range("1..x"), None);
        assert_eq!(range(""), None);
        assert_eq!(range("0..99999999"), None);
    }

    #[test]
    fn names_are_unique() {
        let pool = vec![(1, "a".to_string()), (2, "b".into()), (3, "b".into())];
        assert_eq!(find(&pool, "a", Kind::Vm).unwrap(), 1);
        assert_eq!(
            find(&pool, "b", Kind::Vm).unwrap_err().to_string(),
            "There are multiple VMs with name b."
        );
        assert_eq!(
            find(&pool, "c", Kind::Host).unwrap_err().to_string(),
            "HOST named c not found."
        );
    }
}
