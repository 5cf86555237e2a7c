//! The browser end-to-end test (`tests/browser/e2e.mjs`: headless Chromium
//! driven by playwright-core) run as part of `cargo test`, against the
//! binary cargo just built.
//!
//! It needs Debian's `chromium`, `node`, and `npm ci` in `tests/browser`.
//! Where one is missing the test does not run, and says so where a reader of
//! `cargo test` looks: its line reads `ignored, not run: ...` and the
//! summary counts it as ignored, not passed. libtest can only ignore a test
//! at compile time, so this file has its own harness (libtest-mimic, which
//! takes libtest's arguments and prints its format). Under `CI=true` a
//! missing tool fails the test instead: `.ci/run` installs them all.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    #[allow(unused_mut)]
    let mut trials = vec![Trial::ignorable_test(
        "demo_page_and_seed_client_in_headless_chromium",
        demo_page_and_seed_client_in_headless_chromium,
    )];
    #[cfg(feature = "tls")]
    trials.push(Trial::ignorable_test(
        "demo_page_and_seed_client_over_https_in_headless_chromium",
        || run_e2e(&tls::certificates()?),
    ));
    libtest_mimic::run(&args, trials).exit_code()
}

fn demo_page_and_seed_client_in_headless_chromium() -> Result<Completion, Failed> {
    run_e2e(&[])
}

/// Run `tests/browser/e2e.mjs` against the binary with `env` set.
fn run_e2e(env: &[(&str, PathBuf)]) -> Result<Completion, Failed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let missing = missing_tools(&dir);
    if !missing.is_empty() {
        let what = format!(
            "not run: missing {}; install chromium and run `npm ci` in tests/browser \
             (see tests/browser/README.md)",
            missing.join(", ")
        );
        if on_ci() {
            return Err(format!("CI must have every tool the browser test needs: {what}").into());
        }
        return Ok(Completion::ignored_with(what));
    }
    let status = Command::new("node")
        .arg("e2e.mjs")
        .current_dir(&dir)
        .env("SOCKETBOX_BIN", env!("CARGO_BIN_EXE_socketbox"))
        // A --features deflate build: the server runs with --deflate and
        // the test asserts that Chromium negotiated permessage-deflate.
        .env(
            "SOCKETBOX_DEFLATE",
            if cfg!(feature = "deflate") { "1" } else { "" },
        )
        .envs(env.iter().map(|(name, value)| (name, value)))
        .status()
        .map_err(|e| format!("cannot run node: {e}"))?;
    if !status.success() {
        return Err("the browser end-to-end test failed: see its output above".into());
    }
    Ok(Completion::Completed)
}

/// What the test needs and cannot find.
fn missing_tools(dir: &Path) -> Vec<String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let mut missing = Vec::new();
    if !chromium.exists() {
        missing.push(format!("the browser ({})", chromium.display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".to_owned());
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        missing.push("tests/browser/node_modules (npm ci)".to_owned());
    }
    missing
}

/// Whether this is a CI run (`CI` set, and not to `false` or `0`).
fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"))
}

/// The whole browser test again over https:// and wss:// (feature `tls`):
/// a certificate for 127.0.0.1 made with the `openssl` command.
#[cfg(feature = "tls")]
mod tls {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use libtest_mimic::Failed;

    fn openssl(dir: &Path, args: &[&str]) -> Result<(), Failed> {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run openssl (needed to make a test certificate): {e}"))?;
        if !out.status.success() {
            return Err(
                format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into(),
            );
        }
        Ok(())
    }

    /// A self-signed certificate and its key, for the environment of e2e.mjs.
    pub fn certificates() -> Result<Vec<(&'static str, PathBuf)>, Failed> {
        let dir =
            std::env::temp_dir().join(format!("socketbox-browser-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
        )?;
        Ok(vec![
            ("SOCKETBOX_TLS_CERT", dir.join("cert.pem")),
            ("SOCKETBOX_TLS_KEY", dir.join("key.pem")),
        ])
    }
}
