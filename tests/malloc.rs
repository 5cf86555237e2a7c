//! The binary restarts itself once with glibc's per-thread malloc cache off
//! (`src/malloc.rs`), keeping its process id, and leaves an operator's own
//! choice of that cache alone. Read from the outside, in `/proc`.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::Server;

/// The environment the process `pid` was last exec'd with.
fn environment(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read /proc/PID/environ");
    raw.split(|&b| b == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

#[test]
fn the_server_runs_with_the_thread_cache_off_under_its_own_pid() {
    let server = Server::start(&[]);
    let env = environment(server.pid());
    assert!(
        env.iter()
            .any(|e| e == "GLIBC_TUNABLES=glibc.malloc.tcache_count=0"),
        "the process the harness started (same pid) runs with the tunable: {env:?}"
    );
    // And it serves.
    let mut client = server.ws("/echo");
    client.send_text("after the exec");
    assert_eq!(client.recv_text(), "after the exec");
}

#[test]
fn an_operators_cache_size_and_other_tunables_are_kept() {
    // glibc splits the variable in place as it parses it (a NUL where each
    // `:` was), so the tunables are looked for entry by entry.
    for (given, expected, restarted) in [
        (
            "glibc.malloc.tcache_count=7",
            &["GLIBC_TUNABLES=glibc.malloc.tcache_count=7"][..],
            false,
        ),
        (
            "glibc.malloc.arena_max=4",
            &[
                "GLIBC_TUNABLES=glibc.malloc.arena_max=4",
                "glibc.malloc.tcache_count=0",
            ][..],
            true,
        ),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_socketbox"))
            .args(["--listen", "127.0.0.1:0"])
            .env("GLIBC_TUNABLES", given)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start socketbox");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on "), "{line:?}");
        let env = environment(child.id());
        let _ = child.kill();
        let _ = child.wait();
        for entry in expected {
            assert!(
                env.iter().any(|e| e == entry),
                "GLIBC_TUNABLES={given}: {entry} is missing from {env:?}"
            );
        }
        let tcache_entries = env
            .iter()
            .filter(|e| e.contains("glibc.malloc.tcache_count="))
            .count();
        assert_eq!(tcache_entries, 1, "{env:?}");
        let marked = env.iter().any(|e| e.starts_with("SOCKETBOX_MALLOC_TUNED="));
        assert_eq!(
            marked, restarted,
            "GLIBC_TUNABLES={given}: restarted? {env:?}"
        );
    }
}
