//! one-cli: OpenNebula's command-line tools (`onevm`, `onehost`, `oneimage`, `onetemplate`,
//! `onevnet`, `onedatastore`, `oneuser`, `onegroup`, `onecluster`, `oneacl`, `onehook`, `onesecgroup`) over
//! [`oca`]. Each command is a small binary calling [`main`] with its [`Tool`]; this library
//! holds the verbs (one module per command under `cmd/`), their clap definitions (which also
//! give `--help`, shell completions and man pages, see `one-cli-gen`), and the output
//! machinery OpenNebula's CLI has: tables ([`table`]), `show` layouts ([`show`]), `-x/-j/-y`
//! documents, id lists and names ([`resolve`]).
//!
//! Errors go to stderr as OpenNebula prints them and the exit status is 255 (OpenNebula's
//! -1); usage errors are clap's (a short usage, status 2).

pub mod args;
pub mod cmd;
pub mod error;
pub mod fmt;
pub mod input;
pub mod resolve;
pub mod show;
pub mod table;

use args::ConnOpts;
use clap::CommandFactory;
use error::{CliError, CliResult, FAILURE};
use std::future::Future;
use std::io::Write;

/// The commands this crate provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Vm,
    Host,
    Image,
    Template,
    Vnet,
    Datastore,
    User,
    Group,
    Cluster,
    Acl,
    Hook,
    SecGroup,
}

impl Tool {
    pub const ALL: [Tool; 12] = [
        Tool::Vm,
        Tool::Host,
        Tool::Image,
        Tool::Template,
        Tool::Vnet,
        Tool::Datastore,
        Tool::User,
        Tool::Group,
        Tool::Cluster,
        Tool::Acl,
        Tool::Hook,
        Tool::SecGroup,
    ];

    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Vm => "onevm",
            Tool::Host => "onehost",
            Tool::Image => "oneimage",
            Tool::Template => "onetemplate",
            Tool::Vnet => "onevnet",
            Tool::Datastore => "onedatastore",
            Tool::User => "oneuser",
            Tool::Group => "onegroup",
            Tool::Cluster => "onecluster",
            Tool::Acl => "oneacl",
            Tool::Hook => "onehook",
            Tool::SecGroup => "onesecgroup",
        }
    }

    /// The command's clap definition (for completions and man pages).
    pub fn command(self) -> clap::Command {
        match self {
            Tool::Vm => cmd::vm::Cli::command(),
            Tool::Host => cmd::host::Cli::command(),
            Tool::Image => cmd::image::Cli::command(),
            Tool::Template => cmd::template::Cli::command(),
            Tool::Vnet => cmd::vnet::Cli::command(),
            Tool::Datastore => cmd::datastore::Cli::command(),
            Tool::User => cmd::user::Cli::command(),
            Tool::Group => cmd::group::Cli::command(),
            Tool::Cluster => cmd::cluster::Cli::command(),
            Tool::Acl => cmd::acl::Cli::command(),
            Tool::Hook => cmd::hook::Cli::command(),
            Tool::SecGroup => cmd::secgroup::Cli::command(),
        }
    }
}

/// What a command's verbs get: the client and the global options.
pub struct Ctx {
    pub client: oca::Client,
    pub conn: ConnOpts,
}

impl Ctx {
    /// The client the options and the environment describe: `--endpoint`, else
    /// `ONE_XMLRPC`, `~/.one/one_endpoint`, the default; `--user` (with `--password`, or
    /// asked for), else `ONE_AUTH` / `~/.one/one_auth`.
    ///
    /// Without `needs_session` (a verb that logs in by itself), missing credentials are not
    /// an error: the client then has an empty session.
    pub fn new(conn: &ConnOpts, needs_session: bool) -> CliResult<Ctx> {
        let discovery = oca::Discovery::from_process();
        let endpoint = match &conn.endpoint {
            Some(e) => e.clone(),
            None => discovery.endpoint()?,
        };
        let session = match &conn.user {
            Some(user) => {
                let password = match &conn.password {
                    Some(p) => p.clone(),
                    None => ask_password()?,
                };
                format!("{user}:{password}")
            }
            None => match discovery.session() {
                Ok(s) => s,
                Err(_) if !needs_session => String::new(),
                Err(e) => return Err(e.into()),
            },
        };
        Ok(Ctx {
            client: oca::Client::with_timeout(endpoint, session, discovery.call_timeout()?)?,
            conn: conn.clone(),
        })
    }

    /// Prints `KIND ID: what` when `--verbose`.
    pub fn verbose(&self, out: &mut dyn Write, rname: &str, id: i64, what: &str) -> CliResult<()> {
        if self.conn.verbose {
            writeln!(out, "{rname} {id}: {what}")?;
        }
        Ok(())
    }
}

/// Reads a password from the terminal without echo (or a line of stdin when it is not one).
pub fn ask_password() -> CliResult<String> {
    let mut err = std::io::stderr();
    let _ = write!(err, "Password: ");
    let _ = err.flush();
    // SAFETY: termios calls on fd 0 with a struct we own; echo is restored below.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0 {
            let mut quiet = t;
            quiet.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &quiet);
            Some(t)
        } else {
            None
        }
    };
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: restores the attributes read above.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
        let _ = writeln!(err);
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    // SAFETY: isatty only inspects fd 1.
    unsafe { libc::isatty(1) == 1 }
}

/// Colours and bold headers: on a terminal, unless `NO_COLOR` is set.
pub fn use_color() -> bool {
    stdout_is_tty() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Runs `f` for each id, printing each failure on stderr as it comes and going on with the
/// next, as OpenNebula's CLI does; the status is the last failure's.
pub async fn each<F, Fut>(ids: &[i64], mut f: F) -> i32
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = CliResult<()>>,
{
    let mut code = 0;
    for id in ids {
        if let Err(e) = f(*id).await {
            report(&e);
            code = FAILURE;
        }
    }
    code
}

/// Prints an error on stderr.
pub fn report(e: &CliError) {
    let _ = writeln!(std::io::stderr(), "{e}");
}

/// The trait each command's clap struct implements.
pub trait Command: clap::Parser {
    fn conn(&self) -> &ConnOpts;
    /// Whether the verb needs the credentials of the auth file (`oneuser login USER` does
    /// not: it authenticates with the user's password).
    fn needs_session(&self) -> bool {
        true
    }
    /// Runs the verb; returns the exit status (errors of single-object verbs are returned).
    fn run(self, ctx: Ctx, out: &mut dyn Write) -> impl Future<Output = CliResult<i32>>;
}

fn run<C: Command>(tool: Tool) -> i32 {
    let matches = tool.command().get_matches();
    let cli = match C::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            report(&CliError::msg(format!("cannot start: {e}")));
            return FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = runtime.block_on(async {
        let ctx = Ctx::new(cli.conn(), cli.needs_session())?;
        cli.run(ctx, &mut out).await
    });
    let flushed = out.flush();
    match (result, flushed) {
        (_, Err(e)) | (Err(CliError::Io(e)), _) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // `onevm list | head`: the reader went away; that is not a failure.
            0
        }
        (Ok(code), Ok(())) => code,
        (Ok(_), Err(e)) => {
            report(&CliError::Io(e));
            FAILURE
        }
        (Err(e), _) => {
            report(&e);
            FAILURE
        }
    }
}

/// The entry point of every command binary.
pub fn main(tool: Tool) -> ! {
    let code = match tool {
        Tool::Vm => run::<cmd::vm::Cli>(tool),
        Tool::Host => run::<cmd::host::Cli>(tool),
        Tool::Image => run::<cmd::image::Cli>(tool),
        Tool::Template => run::<cmd::template::Cli>(tool),
        Tool::Vnet => run::<cmd::vnet::Cli>(tool),
        Tool::Datastore => run::<cmd::datastore::Cli>(tool),
        Tool::User => run::<cmd::user::Cli>(tool),
        Tool::Group => run::<cmd::group::Cli>(tool),
        Tool::Cluster => run::<cmd::cluster::Cli>(tool),
        Tool::Acl => run::<cmd::acl::Cli>(tool),
        Tool::Hook => run::<cmd::hook::Cli>(tool),
        Tool::SecGroup => run::<cmd::secgroup::Cli>(tool),
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::Tool;

    #[test]
    fn clap_definitions_are_consistent() {
        for tool in Tool::ALL {
            tool.command().debug_assert();
        }
    }
}
