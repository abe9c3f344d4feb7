//! `oneuser`: users, passwords, login tokens and quotas.

use super::quota::{Measure, sections, vm_column};
use super::{new_template, newest_first, print_document, print_id, print_list};
use crate::args::{ConnOpts, FormatOpts, ListOpts};
use crate::error::{CliError, CliResult};
use crate::fmt;
use crate::resolve::{self, Kind};
use crate::show::{kv20, section, template_str};
use crate::table::{Col, Table};
use crate::{Ctx, ask_password, each};
use clap::{Args, Parser, Subcommand};
use oca::{Client, TokenLife, User};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "oneuser", version, about = "Manages OpenNebula users")]
#[command(
    after_help = "User lists: an id, a name, ids and names separated by commas, \
    or ranges such as 1,8..15."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(subcommand)]
    pub verb: Verb,
}

/// Options of `login` and `token-create`.
#[derive(Args, Debug, Clone, Default)]
pub struct LoginOpts {
    /// Token duration in seconds (default 36000; -1: no expiration)
    #[arg(long, default_value_t = 36000, allow_negative_numbers = true)]
    pub time: i64,
    /// Overwrite the auth file if it exists
    #[arg(long)]
    pub force: bool,
    /// Effective group (id or name) of the token
    #[arg(long)]
    pub group: Option<String>,
    /// Read the password from standard input
    #[arg(long = "stdin_password")]
    pub stdin_password: bool,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Creates a new user (prints `ID: N`)
    Create {
        name: String,
        password: Option<String>,
        /// Authentication driver (default core)
        #[arg(long)]
        driver: Option<String>,
        /// Comma-separated groups (ids or names); the first is the primary one
        #[arg(long, value_delimiter = ',')]
        group: Vec<String>,
    },
    /// Deletes the given users
    Delete { users: String },
    /// Updates the user template (opens $EDITOR without FILE)
    Update {
        user: String,
        file: Option<PathBuf>,
        /// Append new attributes to the current template
        #[arg(short, long)]
        append: bool,
    },
    /// Changes the user's password (asks for it when not given)
    Passwd {
        user: String,
        password: Option<String>,
    },
    /// Changes the primary group of the given users
    Chgrp { users: String, group: String },
    /// Adds a secondary group to the given users
    Addgroup { users: String, group: String },
    /// Removes a secondary group from the given users
    Delgroup { users: String, group: String },
    /// Changes the authentication driver (and password)
    Chauth {
        user: String,
        driver: Option<String>,
        password: Option<String>,
    },
    /// Enables the given users
    Enable { users: String },
    /// Disables the given users
    Disable { users: String },
    /// Sets the user's quotas (opens $EDITOR on the current ones without FILE)
    Quota { user: String, file: Option<PathBuf> },
    /// Sets the default user quotas (opens $EDITOR without FILE)
    Defaultquota { file: Option<PathBuf> },
    /// Creates a login token and stores it in the auth file ($ONE_AUTH or ~/.one/one_auth)
    Login {
        /// The user (default: the one in the auth file)
        user: Option<String>,
        #[command(flatten)]
        opts: LoginOpts,
    },
    /// Creates a login token (and stores it, as login)
    #[command(name = "token-create")]
    TokenCreate {
        user: Option<String>,
        #[command(flatten)]
        opts: LoginOpts,
    },
    /// Writes a token of the user to a file and prints the export line to use it
    #[command(name = "token-set")]
    TokenSet {
        user: Option<String>,
        /// The token (or its first characters)
        #[arg(long)]
        token: Option<String>,
        /// The token of this effective group (id or name)
        #[arg(long)]
        group: Option<String>,
        /// The token for all the user's groups
        #[arg(long)]
        global: bool,
    },
    /// Deletes a login token (by its first characters)
    #[command(name = "token-delete")]
    TokenDelete {
        /// The user, then the token; or only the token (the auth file's user)
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
    },
    /// Deletes every login token of a user
    #[command(name = "token-delete-all")]
    TokenDeleteAll { user: String },
    /// Lists users
    List {
        #[command(flatten)]
        opts: ListOpts,
    },
    /// Shows information for the given user (default: the current one)
    Show {
        user: Option<String>,
        #[command(flatten)]
        format: FormatOpts,
        /// Accepted for compatibility (attributes are never encrypted)
        #[arg(long)]
        decrypt: bool,
    },
}

impl crate::Command for Cli {
    fn conn(&self) -> &ConnOpts {
        &self.conn
    }

    fn needs_session(&self) -> bool {
        !matches!(
            &self.verb,
            Verb::Login { user: Some(_), .. } | Verb::TokenCreate { user: Some(_), .. }
        )
    }

    async fn run(self, ctx: Ctx, out: &mut dyn Write) -> CliResult<i32> {
        run(self.verb, &ctx, out).await
    }
}

/// The auth file OpenNebula's clients read: `$ONE_AUTH`, else `~/.one/one_auth`.
fn auth_file() -> CliResult<PathBuf> {
    if let Some(p) = std::env::var_os("ONE_AUTH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| CliError::msg("HOME is not set"))?;
    Ok(Path::new(&home).join(".one/one_auth"))
}

/// Writes `text` to `path` with mode 0600 (creating its directory).
fn write_private(path: &Path, text: &str) -> CliResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// `one.user.login` for `user`, authenticated by its password, then the auth file, as
/// OpenNebula's `oneuser login` does (an existing file is replaced only with --force).
async fn login(
    ctx: &Ctx,
    out: &mut dyn Write,
    user: Option<String>,
    opts: &LoginOpts,
) -> CliResult<i32> {
    let (username, client) = match user {
        Some(u) => {
            let password = if opts.stdin_password {
                let mut s = String::new();
                std::io::stdin().read_line(&mut s)?;
                s.trim().to_string()
            } else if let Some(p) = &ctx.conn.password {
                p.clone()
            } else {
                ask_password()?
            };
            let client = ctx.client.with_session(format!("{u}:{password}"));
            (u, client)
        }
        None => {
            let me = ctx.client.user().me().await?;
            (me.name, ctx.client.clone())
        }
    };
    let egid = match &opts.group {
        Some(g) => resolve::id(&ctx.client, Kind::Group, g).await?,
        None => -1,
    };
    let life = match opts.time {
        -1 => TokenLife::Max,
        0 => TokenLife::Revoke,
        s => TokenLife::Seconds(s),
    };
    let token = client.user().login(&username, "", life, egid).await?;
    let info = format!("Authentication Token is:\n{username}:{token}");
    let path = auth_file()?;
    if path.exists() && !opts.force {
        writeln!(
            out,
            "File {} exists, use --force to overwrite.\n{info}",
            path.display()
        )?;
        return Ok(0);
    }
    write_private(&path, &format!("{username}:{token}"))?;
    writeln!(out, "{info}")?;
    Ok(0)
}

/// The client acting as `user` (asking for its password), or the current one.
fn client_for(ctx: &Ctx, user: &Option<String>) -> CliResult<Client> {
    match user {
        Some(u) if u.bytes().all(|b| b.is_ascii_digit()) => Err(CliError::msg(
            "The argument should be the username, not the ID.",
        )),
        Some(u) => {
            let password = match &ctx.conn.password {
                Some(p) => p.clone(),
                None => ask_password()?,
            };
            Ok(ctx.client.with_session(format!("{u}:{password}")))
        }
        None => Ok(ctx.client.clone()),
    }
}

/// The tokens matching a prefix and/or a group, valid ones first.
fn find_tokens<'a>(
    user: &'a User,
    prefix: Option<&str>,
    group: Option<i64>,
    include_expired: bool,
) -> Vec<&'a oca::LoginToken> {
    let now = fmt::now();
    let mut v: Vec<&oca::LoginToken> = user
        .login_tokens
        .iter()
        .filter(|t| prefix.is_none_or(|p| t.token.starts_with(p)))
        .filter(|t| group.is_none_or(|g| t.egid == g))
        .filter(|t| include_expired || t.expiration_time == -1 || t.expiration_time > now)
        .collect();
    v.sort_by_key(|t| std::cmp::Reverse(t.expiration_time));
    v
}

async fn quota_text(file: Option<&Path>, current: String) -> CliResult<String> {
    new_template(file, false, async move { Ok(current) }).await
}

pub async fn run(verb: Verb, ctx: &Ctx, out: &mut dyn Write) -> CliResult<i32> {
    let c = &ctx.client;
    let ids = |l: String| async move { resolve::ids(c, Kind::User, &l).await };
    let one = |l: String| async move { resolve::id(c, Kind::User, &l).await };
    match verb {
        Verb::Create {
            name,
            password,
            driver,
            group,
        } => {
            let password = match password {
                Some(p) => p,
                None if driver.as_deref().is_some_and(|d| d != "core") => String::new(),
                None => return Err(CliError::msg("A password is needed for core users")),
            };
            let mut groups = Vec::new();
            for g in &group {
                groups.push(resolve::id(c, Kind::Group, g).await?);
            }
            let id = c
                .user()
                .allocate(&name, &password, driver.as_deref().unwrap_or(""), &groups)
                .await?;
            print_id(out, id)?;
            Ok(0)
        }
        Verb::Delete { users } => {
            let l = ids(users).await?;
            Ok(each(&l, |id| async move { Ok(c.user().delete(id).await?) }).await)
        }
        Verb::Update { user, file, append } => {
            let id = one(user).await?;
            let text = new_template(file.as_deref(), append, async {
                Ok(template_str(&c.user().info(id).await?.template, &[], true))
            })
            .await?;
            c.user()
                .update(id, &text, super::update_mode(append))
                .await?;
            Ok(0)
        }
        Verb::Passwd { user, password } => {
            let id = one(user).await?;
            let password = match password {
                Some(p) => p,
                None => ask_password()?,
            };
            c.user().passwd(id, &password).await?;
            Ok(0)
        }
        Verb::Chgrp { users, group } => {
            let l = ids(users).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(&l, |id| async move { Ok(c.user().chgrp(id, gid).await?) }).await)
        }
        Verb::Addgroup { users, group } => {
            let l = ids(users).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.user().addgroup(id, gid).await?) },
            )
            .await)
        }
        Verb::Delgroup { users, group } => {
            let l = ids(users).await?;
            let gid = resolve::id(c, Kind::Group, &group).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.user().delgroup(id, gid).await?) },
            )
            .await)
        }
        Verb::Chauth {
            user,
            driver,
            password,
        } => {
            let id = one(user).await?;
            c.user()
                .chauth(
                    id,
                    driver.as_deref().unwrap_or("core"),
                    password.as_deref().unwrap_or(""),
                )
                .await?;
            Ok(0)
        }
        Verb::Enable { users } => {
            let l = ids(users).await?;
            Ok(each(&l, |id| async move { Ok(c.user().enable(id, true).await?) }).await)
        }
        Verb::Disable { users } => {
            let l = ids(users).await?;
            Ok(each(
                &l,
                |id| async move { Ok(c.user().enable(id, false).await?) },
            )
            .await)
        }
        Verb::Quota { user, file } => {
            let id = one(user).await?;
            let current = c.user().info(id).await?.quotas.to_template();
            let text = quota_text(file.as_deref(), current).await?;
            c.user().quota(id, &text).await?;
            Ok(0)
        }
        Verb::Defaultquota { file } => {
            let current = c.user().default_quotas().await?.to_template();
            let text = quota_text(file.as_deref(), current).await?;
            c.user().set_default_quotas(&text).await?;
            Ok(0)
        }
        Verb::Login { user, opts } | Verb::TokenCreate { user, opts } => {
            login(ctx, out, user, &opts).await
        }
        Verb::TokenSet {
            user,
            token,
            group,
            global,
        } => {
            let client = client_for(ctx, &user)?;
            let me = client.user().me().await?;
            let group = match (&token, &group, global) {
                (Some(_), _, _) => None,
                (None, Some(g), _) => Some(resolve::id(c, Kind::Group, g).await?),
                (None, None, true) => Some(-1),
                (None, None, false) => {
                    return Err(CliError::msg(
                        "One of these options must be supplied:\n\
                         [--token <token>] [--group <id|group>] [--global]",
                    ));
                }
            };
            let found = find_tokens(&me, token.as_deref(), group, false);
            let Some(first) = found.first() else {
                return Err(CliError::msg("No valid tokens found."));
            };
            if token.is_some() && found.len() > 1 {
                return Err(CliError::msg(format!(
                    "More than one token starting with '{}' found.",
                    token.unwrap_or_default()
                )));
            }
            let auth = format!("{}:{}", me.name, first.token);
            let home = std::env::var_os("HOME").ok_or_else(|| CliError::msg("HOME is not set"))?;
            // The file is named after the token, so several can be kept side by side.
            let tag: String = first.token.chars().take(16).collect();
            let path = Path::new(&home).join(format!(".one/{}-{tag}.token", me.name));
            write_private(&path, &auth)?;
            let mut line = format!("export ONE_AUTH={}", path.display());
            if first.egid != -1 {
                line.push_str(&format!("; export ONE_EGID={}", first.egid));
            }
            writeln!(out, "{line}")?;
            Ok(0)
        }
        Verb::TokenDelete { args } => {
            let (user, prefix) = match args.as_slice() {
                [t] => (None, t.clone()),
                [u, t] => (Some(u.clone()), t.clone()),
                _ => return Err(CliError::msg("token-delete [USER] TOKEN")),
            };
            let client = client_for(ctx, &user)?;
            let me = client.user().me().await?;
            let found = find_tokens(&me, Some(&prefix), None, true);
            let token = match found.as_slice() {
                [one] => one.token.clone(),
                [] => return Err(CliError::msg("No tokens found.")),
                _ => {
                    return Err(CliError::msg(format!(
                        "More than one token starting with '{prefix}' found."
                    )));
                }
            };
            client
                .user()
                .login(&me.name, &token, TokenLife::Revoke, -1)
                .await?;
            writeln!(out, "Token removed.")?;
            Ok(0)
        }
        Verb::TokenDeleteAll { user } => {
            c.user().login(&user, "", TokenLife::Revoke, -1).await?;
            Ok(0)
        }
        Verb::List { opts } => {
            let table = list_table(&opts);
            print_list(out, &opts, &table, c.user().list_xml(), async {
                let mut v = c.user().list().await?;
                newest_first(&mut v);
                Ok(v)
            })
            .await
        }
        Verb::Show { user, format, .. } => {
            let id = match user {
                Some(u) => one(u).await?,
                None => -1,
            };
            if print_document(out, &format, c.user().info_xml(id)).await? {
                return Ok(0);
            }
            let user = c.user().info(id).await?;
            show(ctx, out, &user).await?;
            Ok(0)
        }
    }
}

/// `oneuser list`'s columns (OpenNebula 7's oneuser.yaml).
pub fn list_table(opts: &ListOpts) -> Table<'_, User> {
    let numeric = opts.numeric;
    let quota = |key: &'static str, m: Measure| {
        move |u: &User| vm_column(&u.quotas, u.default_quotas.as_ref(), u.id, key, m)
    };
    Table {
        cols: vec![
            Col::new("ID", "ONE identifier for the User", 4, |u: &User| {
                u.id.to_string()
            })
            .adjust(),
            Col::new("NAME", "Name of the User", 10, |u: &User| u.name.clone())
                .left()
                .expand(),
            Col::new("ENABLED", "User is enabled", 4, |u: &User| {
                if u.enabled { "yes" } else { "no" }.to_string()
            })
            .left(),
            Col::new("GROUP", "Group of the User", 8, move |u: &User| {
                if numeric {
                    u.gid.to_string()
                } else {
                    u.gname.clone()
                }
            })
            .left(),
            Col::new("AUTH", "Auth driver of the User", 8, |u: &User| {
                u.auth_driver.clone()
            })
            .left(),
            Col::new("VMS", "Number of VMS", 9, quota("VMS", Measure::Count)),
            Col::new(
                "MEMORY",
                "Total memory allocated to user VMs",
                15,
                quota("MEMORY", Measure::Memory),
            ),
            Col::new(
                "CPU",
                "Total CPU allocated to user VMs",
                10,
                quota("CPU", Measure::Cpu),
            ),
            Col::new(
                "PCI",
                "Total PCIs allocated to user VMs",
                9,
                quota("PCI_DEV", Measure::Count),
            ),
            Col::new("PASSWORD", "Password of the User", 50, |u: &User| {
                u.password.clone()
            }),
        ],
        default: vec![
            "ID", "NAME", "ENABLED", "GROUP", "AUTH", "VMS", "MEMORY", "CPU", "PCI",
        ],
        stat: "STAT",
    }
}

/// `oneuser show`'s layout.
pub async fn show(ctx: &Ctx, out: &mut dyn Write, u: &User) -> CliResult<()> {
    const W: usize = 16;
    section(out, &format!("USER {} INFORMATION", u.id), true)?;
    kv20(out, W, "ID", &u.id.to_string())?;
    kv20(out, W, "NAME", &u.name)?;
    kv20(out, W, "GROUP", &u.gname)?;
    if u.groups.len() > 1 {
        let g: Vec<String> = u.groups.iter().map(i64::to_string).collect();
        kv20(out, W, "SECONDARY GROUPS", &g.join(","))?;
    }
    kv20(out, W, "PASSWORD", &u.password)?;
    kv20(out, W, "AUTH_DRIVER", &u.auth_driver)?;
    kv20(out, W, "ENABLED", fmt::yes_no(u.enabled))?;
    writeln!(out)?;
    section(out, "TOKENS", false)?;
    if !u.login_tokens.is_empty() {
        let groups = ctx.client.group().list().await.unwrap_or_default();
        let now = fmt::now();
        let gid = u.gid;
        Table {
            cols: vec![
                Col::new("ID", "", 7, |t: &oca::LoginToken| t.token.clone()),
                Col::new("EGID", "", 5, move |t: &oca::LoginToken| {
                    if t.egid == -1 {
                        format!("*{gid}")
                    } else {
                        t.egid.to_string()
                    }
                })
                .left(),
                Col::new("EGROUP", "", 10, move |t: &oca::LoginToken| {
                    let g = if t.egid == -1 { gid } else { t.egid };
                    groups
                        .iter()
                        .find(|x| x.id == g)
                        .map_or_else(|| "-".to_string(), |x| x.name.clone())
                })
                .left(),
                Col::new("EXPIRATION", "", 20, move |t: &oca::LoginToken| {
                    match t.expiration_time {
                        -1 => "forever".into(),
                        e if e <= now => "expired".into(),
                        e => fmt::strftime(e, "%Y-%m-%d %H:%M:%S %z"),
                    }
                })
                .left(),
            ],
            default: vec!["ID", "EGID", "EGROUP", "EXPIRATION"],
            stat: "",
        }
        .print(&u.login_tokens, &ListOpts::default(), out)?;
    }
    writeln!(out)?;
    section(out, "USER TEMPLATE", false)?;
    writeln!(out, "{}", template_str(&u.template, &[], true))?;
    let defaults = match &u.default_quotas {
        Some(d) => Some(d.clone()),
        None => ctx.client.user().default_quotas().await.ok(),
    };
    sections(out, &u.quotas, defaults.as_ref(), u.id)?;
    Ok(())
}
