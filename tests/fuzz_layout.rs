//! Fuzzing locally leaves the repository clean. libFuzzer writes what it
//! finds into the first corpus directory it is given, so the committed
//! seeds (`fuzz/seeds/<target>/`) come second and the first is a working
//! corpus git ignores (`fuzz/corpus/<target>/`), in every documented
//! command and in `.ci/fuzz-smoke`. (Running the fuzzer itself needs
//! cargo-fuzz and minutes; `.ci/fuzz-smoke` does that on CI.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fuzz targets: `fuzz/fuzz_targets/<name>.rs`.
fn targets() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("fuzz/fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    assert!(!names.is_empty());
    names
}

/// Whether git ignores `path` (relative to the repository); `None` when
/// this is not a git checkout.
fn ignored_by_git(path: &str) -> Option<bool> {
    let status = Command::new("git")
        .args(["check-ignore", "--quiet", "--no-index", path])
        .current_dir(root())
        .status()
        .ok()?;
    match status.code() {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => None,
    }
}

#[test]
fn the_working_corpus_is_ignored_and_the_seeds_are_not() {
    for target in targets() {
        let seeds: PathBuf = root().join("fuzz/seeds").join(&target);
        let count = std::fs::read_dir(&seeds)
            .unwrap_or_else(|e| panic!("{}: {e}", seeds.display()))
            .count();
        assert!(count > 0, "{target} has no seeds");
        let found = format!("fuzz/corpus/{target}/0123456789abcdef");
        let seed = format!("fuzz/seeds/{target}/seed-new");
        match (ignored_by_git(&found), ignored_by_git(&seed)) {
            (Some(found_ignored), Some(seed_ignored)) => {
                assert!(found_ignored, "git must ignore {found}");
                assert!(!seed_ignored, "git must track {seed}");
            }
            _ => {
                common::not_run("the_working_corpus_is_ignored: git, or a git checkout");
                return;
            }
        }
    }
}

/// The `cargo fuzz run` commands of the shell blocks in a Markdown file,
/// continuation lines joined.
fn documented_runs(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file))
        .expect(file)
        .replace("\\\n", " ");
    let mut in_shell = false;
    let mut runs = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_shell = line == "```sh";
            continue;
        }
        let line = line.trim_start();
        if in_shell
            && (line.starts_with("cargo fuzz run ") || line.starts_with("cargo +nightly fuzz run "))
        {
            runs.push(line.to_owned());
        }
    }
    runs
}

#[test]
fn every_documented_run_writes_to_the_working_corpus_and_reads_the_seeds() {
    let mut seen = 0;
    for file in ["README.md", "docs/fuzzing.md"] {
        for run in documented_runs(file) {
            let words: Vec<&str> = run.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "run").unwrap();
            let target = words[at + 1];
            let dirs: Vec<&str> = words[at + 2..]
                .iter()
                .copied()
                .take_while(|w| *w != "--" && *w != "#")
                .filter(|w| !w.starts_with('-') && *w != "none")
                .collect();
            assert_eq!(
                dirs,
                [
                    format!("fuzz/corpus/{target}"),
                    format!("fuzz/seeds/{target}")
                ],
                "{file}: {run}"
            );
            // libFuzzer refuses a corpus directory that does not exist, and
            // a fresh checkout has no working corpus yet.
            assert!(run.contains("-create_missing_dirs=1"), "{file}: {run}");
            seen += 1;
        }
    }
    assert!(seen >= 4, "the documented runs were found: {seen}");
    let smoke = std::fs::read_to_string(root().join(".ci/fuzz-smoke")).unwrap();
    assert!(
        smoke.contains(r#""$scratch/$target" "seeds/$target""#),
        ".ci/fuzz-smoke reads the seeds and writes elsewhere"
    );
}
