//! The server process runs with glibc's per-thread malloc cache (tcache)
//! turned off, because with one thread per connection that cache is what an
//! idle connection's heap mostly is.
//!
//! glibc gives each thread that calls `malloc` a cache of freed chunks (up
//! to 7 per size class, up to 1 KiB each) so that the thread can reuse them
//! without taking its arena's lock. A connection thread frees its request
//! head, its handshake's strings and its first messages' buffers, and they
//! stay in its cache, unused, for as long as the connection stays idle:
//! measured with `loadgen idle` and `loadgen chat-idle` at 1,000
//! connections (docs/benchmarks.md, "glibc's per-thread cache"), 1.6 KiB
//! of RSS per idle `/echo` connection (3.5 KiB after a 1 KiB echo), 2.9 KiB
//! per idle `/ws` session and 3.6 KiB per connection with compression
//! negotiated. Freed chunks go
//! back to the arena instead, where any thread reuses them; throughput did
//! not move measurably (the same page).
//!
//! glibc reads the setting (`GLIBC_TUNABLES=glibc.malloc.tcache_count=0`)
//! only when a program starts, and `mallopt` has no such parameter, so the
//! binary execs itself once, with the setting added, before it serves
//! (same process id, arguments and descriptors). An operator who set
//! `glibc.malloc.tcache_count` in `GLIBC_TUNABLES` keeps their value (glibc's
//! own default is 7). Other C libraries (musl) have no such cache and
//! ignore the variable. Only the binary calls this; a program that embeds the
//! library decides for itself.

use std::ffi::OsString;

/// The glibc tunable that empties every thread's cache.
pub const TCACHE_OFF: &str = "glibc.malloc.tcache_count=0";

/// Set in the re-executed process, so that it never execs again (a C
/// library that drops `GLIBC_TUNABLES`, as glibc does for setuid programs,
/// would otherwise loop).
const MARKER: &str = "SOCKETBOX_MALLOC_TUNED";

/// The `GLIBC_TUNABLES` value to restart with, given the current one;
/// `None` when the current one already sets the thread cache's size.
/// Tunables are `name=value` pairs separated by `:`.
pub fn tunables_with_tcache_off(current: Option<&str>) -> Option<String> {
    let current = current.unwrap_or("");
    let sets_tcache_count = current
        .split(':')
        .any(|pair| pair.split('=').next() == Some("glibc.malloc.tcache_count"));
    if sets_tcache_count {
        return None;
    }
    Some(if current.is_empty() {
        TCACHE_OFF.to_string()
    } else {
        format!("{current}:{TCACHE_OFF}")
    })
}

/// Exec this binary again with glibc's thread cache off, unless that was
/// done already or the operator chose a size for it. Returns only when no
/// exec was needed (`Ok`) or the exec failed (`Err`; then the process goes
/// on as it is, only with idle connections a little larger).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn restart_without_thread_cache() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;

    if std::env::var_os(MARKER).is_some() {
        return Ok(());
    }
    let current = std::env::var_os("GLIBC_TUNABLES");
    let current = current.as_ref().map(|value| value.to_string_lossy());
    let Some(tunables) = tunables_with_tcache_off(current.as_deref()) else {
        return Ok(());
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("socketbox"));
    let error = std::process::Command::new(std::env::current_exe()?)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(MARKER, "1")
        .exec();
    Err(error)
}

/// Elsewhere there is nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn restart_without_thread_cache() -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_tunable_when_none_is_set() {
        assert_eq!(tunables_with_tcache_off(None).as_deref(), Some(TCACHE_OFF));
        assert_eq!(
            tunables_with_tcache_off(Some("")).as_deref(),
            Some(TCACHE_OFF)
        );
    }

    #[test]
    fn keeps_the_operators_other_tunables() {
        assert_eq!(
            tunables_with_tcache_off(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0")
        );
    }

    #[test]
    fn leaves_a_chosen_cache_size_alone() {
        assert_eq!(
            tunables_with_tcache_off(Some("glibc.malloc.tcache_count=7")),
            None
        );
        assert_eq!(
            tunables_with_tcache_off(Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=3")),
            None
        );
        // A different tunable whose name merely starts the same is not it.
        assert!(tunables_with_tcache_off(Some("glibc.malloc.tcache_count_x=1")).is_some());
    }
}
