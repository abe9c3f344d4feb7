//! `one-cli-gen`: shell completions and man pages for every command, from the same clap
//! definitions the commands parse with.
//!
//!     one-cli-gen completions bash|zsh|fish DIR
//!     one-cli-gen man DIR

use clap_complete::Shell;
use one_cli::Tool;
use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: one-cli-gen completions bash|zsh|fish DIR\n       one-cli-gen man DIR");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["completions", shell, dir] => {
            let shell = match *shell {
                "bash" => Shell::Bash,
                "zsh" => Shell::Zsh,
                "fish" => Shell::Fish,
                _ => return usage(),
            };
            completions(shell, PathBuf::from(dir))
        }
        ["man", dir] => man(PathBuf::from(dir)),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("one-cli-gen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn completions(shell: Shell, dir: PathBuf) -> std::io::Result<()> {
    std::fs::create_dir_all(&dir)?;
    for tool in Tool::ALL {
        let mut cmd = tool.command();
        clap_complete::generate_to(shell, &mut cmd, tool.name(), &dir)?;
    }
    Ok(())
}

/// One page per command (`onevm.1`) and one per verb (`onevm-show.1`).
fn man(dir: PathBuf) -> std::io::Result<()> {
    std::fs::create_dir_all(&dir)?;
    for tool in Tool::ALL {
        let cmd = tool.command();
        clap_mangen::generate_to(cmd, &dir)?;
    }
    Ok(())
}
