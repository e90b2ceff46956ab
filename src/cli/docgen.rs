//! `ringmq completions SHELL` and `ringmq man [SUBCOMMAND...]`: shell
//! completions (clap_complete) and manual pages (clap_mangen, roff),
//! generated from the same command-line definitions the binary parses, so
//! they never drift from it.

use clap::Command;
use std::io::Write;
use std::process::ExitCode;

/// Writes `shell`'s completion script for `cmd` to `out`.
pub fn completions(cmd: &mut Command, shell: clap_complete::Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, out);
}

/// Writes the manual page of `cmd`, or of its subcommand at `path`
/// (`["ctl", "get"]`), to `out`.
pub fn man(cmd: Command, path: &[String], out: &mut dyn Write) -> Result<(), String> {
    // Subcommand pages are named as man(1) expects: ringmq-ctl-get.
    let mut cmd = cmd;
    cmd.build();
    let mut name = cmd.get_name().to_string();
    for p in path {
        let sub = cmd.find_subcommand(p).ok_or_else(|| format!("no subcommand {p:?} in {name}"))?.clone();
        name = format!("{name}-{}", sub.get_name());
        cmd = sub;
    }
    clap_mangen::Man::new(cmd).title(name).render(out).map_err(|e| format!("writing the page: {e}"))
}

/// Runs `man` to standard output, with an exit code.
pub fn man_to_stdout(cmd: Command, path: &[String]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match man(cmd, path, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmq man: {e}");
            ExitCode::from(2)
        }
    }
}
