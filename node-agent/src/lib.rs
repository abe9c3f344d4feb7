//! `one-node-agent`: the program oned runs on each hypervisor host (docs/node-agent.md).
//!
//! It speaks `one_proto::agent` on stdin/stdout ([`session`]), carries out driver
//! operations through an [`driver::AgentDriver`] (the `simulated` one here; libvirt is its own
//! module), and pushes monitoring read from /proc and sysfs ([`host`], [`probe`]) and the
//! onboarding checks ([`checks`]).

pub mod capabilities;
pub mod checks;
pub mod driver;
pub mod frontend;
pub mod host;
pub mod libvirt;
pub mod outbox;
pub mod probe;
pub mod session;
pub mod simulated;
pub mod sparse;
pub mod stream;
pub mod transfer;

pub use session::{Options, Outcome, Role, SessionError};

/// Exit codes, so that whoever started the agent (oned, through SSH) can tell why it ended.
/// A clean end: stdin closed, a Shutdown request, SIGTERM / SIGINT.
pub const EXIT_OK: i32 = 0;
/// The agent could not start (runtime, arguments that parse but make no sense).
pub const EXIT_ERROR: i32 = 1;
/// Bad command line (clap's code).
pub const EXIT_USAGE: i32 = 2;
/// oned refused the agent's Hello (another protocol or build): oned installs its own build.
pub const EXIT_REFUSED: i32 = 3;
/// The session was lost: no Welcome in time, keepalive timeout, broken framing, output closed.
pub const EXIT_SESSION_LOST: i32 = 4;
/// The agent refused oned's Welcome (another protocol version, an unusable configuration).
pub const EXIT_BAD_WELCOME: i32 = 5;

/// Runs the session on stdin / stdout; SIGTERM and SIGINT end it as a Shutdown request
/// does (requests in flight are finished and answered).
pub async fn run_stdio(opts: Options) -> Result<Outcome, SessionError> {
    let stop = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                tracing::warn!("no signal handling");
                std::future::pending::<()>().await
            }
        }
    };
    session::run(tokio::io::stdin(), tokio::io::stdout(), opts, stop).await
}
