//! Readings from /proc: a process's resident set, threads and descriptors,
//! the system-wide figures that show what threads and sockets cost the
//! kernel, and the limits a run of many connections runs into.

use std::fs;

/// One reading of a process and of the system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// The server's VmRSS, KiB.
    pub rss_kib: u64,
    /// The server's thread count.
    pub threads: u64,
    /// The server's open file descriptors.
    pub fds: u64,
    /// The load generator's own VmRSS, KiB.
    pub self_rss_kib: u64,
    /// MemAvailable, KiB.
    pub mem_available_kib: u64,
    /// KernelStack (every thread has one), KiB.
    pub kernel_stack_kib: u64,
    /// PageTables, KiB.
    pub page_tables_kib: u64,
    /// SUnreclaim (slab: sockets, task structs...), KiB.
    pub slab_unreclaim_kib: u64,
    /// Threads on the whole system (/proc/loadavg), to tell when other
    /// processes came or went during a reading.
    pub system_threads: u64,
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(':'))
        .and_then(|line| line[name.len() + 1..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Read the server `pid` (0: none) and the system.
pub fn sample(pid: u32) -> Sample {
    let status = if pid == 0 {
        String::new()
    } else {
        fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
    };
    let own = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Sample {
        rss_kib: field(&status, "VmRSS").unwrap_or(0),
        threads: field(&status, "Threads").unwrap_or(0),
        fds: if pid == 0 {
            0
        } else {
            fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
        },
        self_rss_kib: field(&own, "VmRSS").unwrap_or(0),
        mem_available_kib: field(&meminfo, "MemAvailable").unwrap_or(0),
        kernel_stack_kib: field(&meminfo, "KernelStack").unwrap_or(0),
        page_tables_kib: field(&meminfo, "PageTables").unwrap_or(0),
        slab_unreclaim_kib: field(&meminfo, "SUnreclaim").unwrap_or(0),
        system_threads: fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| {
                l.split_whitespace()
                    .nth(3)
                    .and_then(|f| f.split('/').nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0),
    }
}

/// The soft limit on open files of process `pid` (0: this process).
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let path = if pid == 0 {
        "/proc/self/limits".to_owned()
    } else {
        format!("/proc/{pid}/limits")
    };
    fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A number alone in a file, like `/proc/sys/kernel/pid_max`.
pub fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// This process's peak resident set (VmHWM), KiB.
pub fn own_peak_rss_kib() -> u64 {
    let own = fs::read_to_string("/proc/self/status").unwrap_or_default();
    field(&own, "VmHWM").unwrap_or(0)
}

/// The largest resident size among the process's mappings that look like
/// connection-thread stacks: `size_kib` as asked for, or up to 32 KiB more
/// (glibc raises a stack to its minimum plus the static TLS), in KiB, and
/// how many such mappings there are. glibc gives back the unused part of a
/// stack when its thread exits, so only live threads tell their high-water
/// mark.
pub fn stack_high_water(pid: u32, size_kib: u64) -> (u64, usize) {
    let Ok(smaps) = fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return (0, 0);
    };
    let debug = std::env::var_os("LOADGEN_DEBUG").is_some();
    let mut best = 0;
    let mut count = 0;
    // (start, end, perms, anonymous) of the mapping before the current one.
    let mut previous: Option<(u64, u64, String)> = None;
    let mut in_match = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = words.next().unwrap_or("").to_owned();
                let anonymous = words.nth(3).is_none();
                let size_kib_here = (end - start) / 1024;
                // A thread stack: anonymous, read-write, right above its
                // 4 KiB guard page.
                let guarded = previous
                    .as_ref()
                    .is_some_and(|(s, e, p)| *e == start && e - s == 4096 && p == "---p");
                in_match = anonymous
                    && perms == "rw-p"
                    && guarded
                    && (size_kib..size_kib + 16).contains(&size_kib_here);
                if in_match {
                    count += 1;
                }
                previous = Some((start, end, perms));
                continue;
            }
        }
        if in_match {
            if let Some(v) = line.strip_prefix("Rss:") {
                let rss: u64 = v
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                best = best.max(rss);
                if debug {
                    eprintln!("stack mapping: Rss {rss} KiB");
                }
            }
        }
    }
    (best, count)
}

/// CPU time process `pid` has used, user plus system, in seconds: fields 14
/// and 15 of `/proc/PID/stat`, in clock ticks of 1/100 s (the `USER_HZ`
/// Linux exports on every architecture this runs on).
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// The same for this process.
pub fn own_cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat")
}

fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = fs::read_to_string(path).unwrap_or_default();
    // The command name may hold spaces and parentheses: count fields after
    // its closing parenthesis, where field 3 (the state) comes first.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}
