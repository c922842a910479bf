//! `steer`: train, export and evaluate steerable reward models.
//!
//! [`args`] holds the command line, [`commands`] what each command does, and [`print`] what it prints.
#![forbid(unsafe_code)]

mod args;
mod commands;
mod print;

use std::process::ExitCode;

use clap::Parser;

/// The error and its causes joined by ": ", leaving out a cause whose message is already in the text: the library
/// errors name their cause (an OS or runtime error) in their own message, and `{:#}` would print it again.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

fn main() -> ExitCode {
    match commands::run(args::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
