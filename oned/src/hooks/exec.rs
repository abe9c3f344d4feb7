//! Running one hook command: no shell, bounded output, a timeout that kills the whole
//! process group.

use one_proto::objects::hook::ExecutionResult;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The code recorded when the command could not run, was killed or timed out (OpenNebula's).
pub const FAILED_CODE: i32 = 255;

/// What to run.
pub struct RunSpec<'a> {
    /// Directory relative COMMANDs are found in.
    pub dir: &'a Path,
    /// COMMAND: a program, absolute or relative to `dir`, optionally followed by fixed words.
    pub command: &'a str,
    /// The expanded ARGUMENTS.
    pub arguments: &'a str,
    /// ARGUMENTS_STDIN=YES: the arguments go to stdin instead of the command line.
    pub stdin: bool,
    /// None: no limit.
    pub timeout: Option<Duration>,
    /// Bytes of stdout and of stderr kept each.
    pub max_output: usize,
    /// Extra environment variables.
    pub env: &'a [(String, String)],
}

impl RunSpec<'_> {
    /// The command's words: the program path first.
    fn argv(&self) -> Vec<String> {
        let mut words = self.command.split_whitespace();
        let Some(prog) = words.next() else {
            return Vec::new();
        };
        let prog = if prog.starts_with('/') {
            prog.to_string()
        } else {
            self.dir.join(prog).to_string_lossy().into_owned()
        };
        let mut argv = vec![prog];
        argv.extend(words.map(str::to_string));
        if !self.stdin {
            argv.extend(self.arguments.split_whitespace().map(str::to_string));
        }
        argv
    }

    /// The command line as recorded in EXECUTION_RESULT/COMMAND.
    pub fn command_line(&self) -> String {
        self.argv().join(" ")
    }
}

fn failed(command: String, stderr: String) -> ExecutionResult {
    ExecutionResult {
        command,
        stdout: String::new(),
        stderr,
        code: FAILED_CODE,
    }
}

/// Runs the command and waits for it (or for the timeout); never fails: what went wrong is in
/// the result's stderr and code.
pub async fn run(spec: &RunSpec<'_>) -> ExecutionResult {
    let argv = spec.argv();
    let line = argv.join(" ");
    let Some((prog, args)) = argv.split_first() else {
        return failed(line, "Internal error: empty COMMAND".into());
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills what the command started too.
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in spec.env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(line, format!("Internal error: cannot run {prog}: {e}")),
    };
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        let data = spec.arguments.as_bytes().to_vec();
        // A command that does not read its input must not block us.
        tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
            let _ = stdin.shutdown().await;
        });
    }
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return failed(line, "Internal error: no output pipes".into());
    };
    let max = spec.max_output;
    let work = async {
        let (o, e, status) =
            tokio::join!(read_bounded(out, max), read_bounded(err, max), child.wait());
        (o, e, status)
    };
    let finished = match spec.timeout {
        Some(t) => tokio::time::timeout(t, work).await.ok(),
        None => Some(work.await),
    };
    match finished {
        Some((stdout, stderr, status)) => ExecutionResult {
            command: line,
            stdout,
            stderr,
            // Killed by a signal: no exit code; OpenNebula records 255.
            code: status.ok().and_then(|s| s.code()).unwrap_or(FAILED_CODE),
        },
        None => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) with a negative pid signals the process group we created.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            let _ = child.wait().await;
            failed(line.clone(), format!("Timeout executing {line}"))
        }
    }
}

/// Reads a stream to its end, keeping the first `max` bytes (the rest is counted, so the
/// writer never blocks on a full pipe).
async fn read_bounded(mut r: impl AsyncRead + Unpin, max: usize) -> String {
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                dropped += n - room;
            }
        }
    }
    let mut s = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        s.push_str(&format!("\n[{dropped} more bytes not kept]"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(dir: &'a Path, command: &'a str, arguments: &'a str) -> RunSpec<'a> {
        RunSpec {
            dir,
            command,
            arguments,
            stdin: false,
            timeout: Some(Duration::from_secs(10)),
            max_output: 1024,
            env: &[],
        }
    }

    #[tokio::test]
    async fn arguments_on_the_command_line_or_stdin() {
        let dir = Path::new("/nonexistent");
        let r = run(&spec(dir, "/bin/echo fixed", "a  b")).await;
        assert_eq!((r.code, r.stdout.as_str()), (0, "fixed a b\n"));
        assert_eq!(r.command, "/bin/echo fixed a b");

        let mut s = spec(dir, "/bin/cat", "PFg+ -m");
        s.stdin = true;
        let r = run(&s).await;
        assert_eq!(
            (r.code, r.stdout.as_str(), r.command.as_str()),
            (0, "PFg+ -m", "/bin/cat")
        );
    }

    /// A script in a fresh directory.
    fn script(name: &str, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("oned-hook-exec-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[tokio::test]
    async fn relative_commands_codes_env_and_missing_programs() {
        let dir = script("rc.sh", "echo \"$HOOK_TEST $*\" >&2; exit 3");
        let env = [("HOOK_TEST".to_string(), "42".to_string())];
        let mut s = spec(&dir, "rc.sh", "x y");
        s.env = &env;
        let r = run(&s).await;
        assert_eq!(r.command, format!("{}/rc.sh x y", dir.display()));
        assert_eq!((r.code, r.stderr.as_str()), (3, "42 x y\n"));
        let r = run(&spec(Path::new("/nonexistent"), "hook.sh", "x")).await;
        assert_eq!(r.code, FAILED_CODE);
        assert!(
            r.stderr
                .starts_with("Internal error: cannot run /nonexistent/hook.sh")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn output_is_bounded_and_timeouts_kill_the_group() {
        let mut s = spec(Path::new("/"), "/bin/sh -c yes", "");
        s.timeout = Some(Duration::from_millis(300));
        s.max_output = 10;
        let r = run(&s).await;
        assert_eq!(r.code, FAILED_CODE);
        assert_eq!(r.stderr, "Timeout executing /bin/sh -c yes");

        s.command = "/usr/bin/head -c 5000 /dev/zero";
        s.timeout = None;
        let r = run(&s).await;
        assert_eq!(r.code, 0);
        assert!(
            r.stdout.ends_with("\n[4990 more bytes not kept]"),
            "{:?}",
            r.stdout
        );

        // A child that keeps the pipes open after its parent is killed with it.
        let dir = script("bg.sh", "sleep 30 &\nwait");
        let started = std::time::Instant::now();
        let mut s = spec(&dir, "bg.sh", "");
        s.timeout = Some(Duration::from_millis(200));
        let r = run(&s).await;
        assert_eq!(r.code, FAILED_CODE);
        assert!(started.elapsed() < Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(dir);
    }
}
