//! The `socketbox` binary: parse the command line, then serve or mint a token.

use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socketbox::cli::{self, Command};
use socketbox::server::Server;

/// std cannot catch signals; `signal-hook` runs a thread that receives
/// SIGINT and SIGTERM and starts the graceful shutdown, after which
/// `Server::run` returns and the process exits 0. With TLS, SIGHUP re-reads
/// the certificate and key (a failed reload keeps the old pair).
fn stop_on_signals(server: &Server, tls: bool) -> std::io::Result<()> {
    let handle = server.shutdown_handle()?;
    let mut wanted = vec![SIGINT, SIGTERM];
    if tls {
        wanted.push(SIGHUP);
    }
    let mut signals = Signals::new(wanted)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    match handle.reload_tls() {
                        Ok(_) => eprintln!("socketbox: SIGHUP: TLS certificate and key reloaded"),
                        Err(e) => eprintln!(
                            "socketbox: SIGHUP: keeping the old TLS certificate and key: {e}"
                        ),
                    }
                    continue;
                }
                eprintln!("socketbox: signal {signal}: closing connections");
                handle.shutdown();
                return;
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
            if let Err(e) = socketbox::malloc::restart_without_thread_cache() {
                eprintln!(
                    "socketbox: could not restart with glibc's per-thread malloc cache off \
                     ({e}); serving anyway, with idle connections 1.6 to 3.6 KiB larger"
                );
            }
            let tls = config.server.tls_cert.is_some();
            let server = match socketbox::apps::standard_server(*config) {
                Ok(server) => server,
                Err(e) => {
                    eprintln!("socketbox: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match server.local_addr() {
                Ok(addr) => println!("listening on {addr}"),
                Err(e) => eprintln!("socketbox: {e}"),
            }
            if let Err(e) = stop_on_signals(&server, tls) {
                eprintln!("socketbox: cannot handle signals: {e}");
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
