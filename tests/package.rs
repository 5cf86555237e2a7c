//! The package's metadata tells the truth: the license Cargo.toml names is
//! the one in `LICENSE`, and `rust-version` names a toolchain no newer than
//! the one running these tests (so CI, on stable, proves it).

use std::process::Command;

#[test]
fn the_license_file_matches_cargo_toml() {
    assert_eq!(env!("CARGO_PKG_LICENSE"), "MIT");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/LICENSE"))
        .expect("a LICENSE file beside Cargo.toml");
    assert!(text.starts_with("MIT License\n"), "{text}");
    assert!(
        text.contains("Copyright (c) 2026 SocketBox contributors"),
        "{text}"
    );
    assert!(text.contains("Permission is hereby granted, free of charge"));
}

fn version(text: &str) -> Vec<u32> {
    text.split('.')
        .map(|n| n.parse().expect("a number"))
        .collect()
}

#[test]
fn rust_version_is_set_and_proven_by_this_toolchain() {
    let declared = env!("CARGO_PKG_RUST_VERSION");
    assert!(!declared.is_empty(), "Cargo.toml needs a rust-version");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(rustc)
        .arg("--version")
        .output()
        .expect("run rustc");
    let running = String::from_utf8_lossy(&output.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let running = running
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('-').next())
        .expect("a version");
    assert!(
        version(running) >= version(declared),
        "rust-version {declared} is newer than the toolchain testing it ({running})"
    );
}
