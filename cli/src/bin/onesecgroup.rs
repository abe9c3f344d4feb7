//! `onesecgroup`: see `onesecgroup --help` and docs/cli.md.

fn main() {
    one_cli::main(one_cli::Tool::SecGroup);
}
