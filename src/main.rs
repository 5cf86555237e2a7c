//! The `socketbox` binary: parse the command line, then serve or mint a token.

use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socketbox::cli::{self, Command};
use socketbox::server::Server;

/// std cannot catch signals; `signal-hook` runs a thread that receives
/// SIGINT and SIGTERM and starts the graceful shutdown, after which
/// `Server::run` returns and the process exits 0.
fn stop_on_signals(server: &Server) -> std::io::Result<()> {
    let handle = server.shutdown_handle()?;
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                eprintln!("socketbox: signal {signal}: closing connections");
                handle.shutdown();
            }
        })?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(args.iter().map(String::as_str)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("socketbox: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => print!("{}", cli::HELP),
        Command::Version => println!("socketbox {}", env!("CARGO_PKG_VERSION")),
        Command::Token {
            secret,
            id,
            ttl_secs,
        } => {
            let now = socketbox::apps::chat::unix_millis() / 1000;
            println!(
                "{}",
                socketbox::apps::chat::token::mint(&secret, &id, now.saturating_add(ttl_secs))
            );
        }
        Command::Serve(config) => {
            let server = match socketbox::apps::standard_server(*config) {
                Ok(server) => server,
                Err(e) => {
                    eprintln!("socketbox: cannot listen: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match server.local_addr() {
                Ok(addr) => println!("listening on {addr}"),
                Err(e) => eprintln!("socketbox: {e}"),
            }
            if let Err(e) = stop_on_signals(&server) {
                eprintln!("socketbox: cannot handle SIGINT/SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
            if let Err(e) = server.run() {
                eprintln!("socketbox: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
