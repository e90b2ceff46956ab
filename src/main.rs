//! The `ringmq` command: `serve` runs the broker; `pub` and `sub` are the
//! command-line producer and consumer.

mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ringmq", version, about = "A thread-per-core message broker")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(Box<cli::serve::ServeArgs>),
    /// Publish messages to a queue.
    Pub(cli::publish::PubArgs),
    /// Receive messages from a queue, acking each.
    Sub(cli::subscribe::SubArgs),
    /// Operator commands: list queues, connections, consumers and shards;
    /// declare, bind, peek at, purge and delete queues; close connections.
    Ctl(cli::ctl::CtlArgs),
    /// Prints a shell completion script: `ringmq completions bash >
    /// /etc/bash_completion.d/ringmq` (or zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Prints the manual page (roff): `ringmq man | man -l -`; `ringmq man
    /// ctl` for a subcommand's page.
    Man { subcommand: Vec<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Command::Serve(a) => cli::serve::run(*a),
        Command::Pub(a) => cli::publish::run(a),
        Command::Sub(a) => cli::subscribe::run(a),
        Command::Ctl(a) => cli::ctl::run(a),
        Command::Completions { shell } => {
            cli::docgen::completions(&mut Cli::command(), shell, &mut std::io::stdout().lock());
            ExitCode::SUCCESS
        }
        Command::Man { subcommand } => cli::docgen::man_to_stdout(Cli::command(), &subcommand),
    }
}
