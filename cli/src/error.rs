//! What a command can fail with, printed on stderr as OpenNebula's CLI prints it.

use oca::OcaError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server (or the client library) refused: OpenNebula's message as is,
    /// `[one.vm.info] Error getting virtual machine [42].`
    #[error(transparent)]
    Oca(#[from] OcaError),
    /// The command's own complaint (`VM named x not found.`).
    #[error("{0}")]
    Msg(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub fn msg(s: impl Into<String>) -> CliError {
        CliError::Msg(s.into())
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// The exit status of a failed command: OpenNebula's CLI exits with -1.
pub const FAILURE: i32 = 255;
