//! A test that cannot run for want of a tool says so in `cargo test`'s own
//! output, and fails under `CI=true`. Checked on the browser test (its own
//! harness, `tests/browser.rs`) with its browser hidden, by running it as a
//! user would, through cargo.

use std::path::PathBuf;
use std::process::Command;

/// Run `cargo test --test browser` with this test's profile and target
/// directory, the browser pointed at a path that does not exist, and `CI`
/// as given: (success, stdout and stderr).
fn browser_test_without_a_browser(ci: Option<&str>) -> (bool, String) {
    // Tests run from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("<target>/<profile>");
    let target_dir: PathBuf = profile_dir.parent().expect("<target>").into();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["test", "--quiet", "--test", "browser", "--profile", profile])
        // The same features as this build: the inner cargo rebuilds the
        // binary in the shared target directory, and a build without them
        // would replace the one the other test files run.
        .args(same_features())
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CHROMIUM", "/nonexistent/chromium")
        .env_remove("CI");
    if let Some(ci) = ci {
        cargo.env("CI", ci);
    }
    let output = cargo.output().expect("run cargo test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `--features ...` naming the cargo features this test was built with.
fn same_features() -> Vec<String> {
    let enabled: Vec<&str> = [
        ("redis", cfg!(feature = "redis")),
        ("tls", cfg!(feature = "tls")),
        ("deflate", cfg!(feature = "deflate")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if enabled.is_empty() {
        Vec::new()
    } else {
        vec!["--features".to_owned(), enabled.join(",")]
    }
}

#[test]
fn a_browser_test_that_cannot_run_is_reported_as_not_run() {
    let (ok, output) = browser_test_without_a_browser(None);
    assert!(ok, "a missing browser is no failure off CI:\n{output}");
    assert!(
        output.contains("ignored (not run: missing the browser (/nonexistent/chromium)"),
        "the test's line says it did not run and why:\n{output}"
    );
    // With the feature `tls` the browser test runs a second time, over TLS.
    let trials = if cfg!(feature = "tls") { 2 } else { 1 };
    assert!(
        output.contains(&format!("0 passed; 0 failed; {trials} ignored")),
        "the summary does not count it as passed:\n{output}"
    );
}

#[test]
fn a_browser_test_that_cannot_run_fails_on_ci() {
    let (ok, output) = browser_test_without_a_browser(Some("true"));
    assert!(!ok, "CI=true: a missing browser fails:\n{output}");
    assert!(output.contains("CI must have every tool"), "{output}");
}
