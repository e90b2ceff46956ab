//! The `ringmq` command: `serve` runs the broker; `pub` and `sub` are the
//! command-line producer and consumer.

mod cli;

use clap::{Parser, Subcommand};
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
    /// Operator commands: list queues, connections and shards; purge and
    /// delete queues; close connections.
    Ctl(cli::ctl::CtlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Command::Serve(a) => cli::serve::run(*a),
        Command::Pub(a) => cli::publish::run(a),
        Command::Sub(a) => cli::subscribe::run(a),
        Command::Ctl(a) => cli::ctl::run(a),
    }
}
