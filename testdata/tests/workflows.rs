//! The GitHub workflows run what the repository has: every `run:` step is
//! valid bash, every script of `ci/` (or `.ci/`) a step names exists and is
//! executable, and every job runs in the Debian release the project is
//! tested on. A small reader of the workflows' YAML, enough for the block
//! and plain scalars they use; a step it cannot read fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use faultline_testdata::repo_root;

/// The image every job runs in: Debian 12, as `ci/setup` expects.
const IMAGE: &str = "image: debian:bookworm";

fn workflows() -> Vec<PathBuf> {
    let dir = repo_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The script of every `run:` key: a plain scalar, or a `|` / `>` block
/// (a folded block's lines joined by spaces).
fn run_steps(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        // The key's own column: after the `- ` of a list item.
        let item = line.trim_start().starts_with("- ");
        let key_at = indent(line) + if item { 2 } else { 0 };
        let rest = line.trim_start().trim_start_matches("- ");
        let Some(value) = rest.strip_prefix("run:") else {
            i += 1;
            continue;
        };
        let value = value.trim();
        if value == "|" || value == ">" {
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > key_at) {
                body.push(lines[i].trim());
                i += 1;
            }
            steps.push(body.join(if value == "|" { "\n" } else { " " }));
        } else {
            steps.push(value.to_owned());
            i += 1;
        }
    }
    steps
}

/// Whether `script` parses as bash (`bash -n`).
fn bash_parses(script: &str) -> Result<(), String> {
    let mut child = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The repository scripts a step names (`ci/x`, `.ci/x`, `python3 ci/x`).
fn scripts_named(step: &str) -> Vec<String> {
    step.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .filter(|w| w.starts_with("ci/") || w.starts_with(".ci/"))
        .filter(|w| !w.contains('$') && !w.contains('*'))
        .map(str::to_owned)
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[test]
fn every_run_step_is_bash_and_names_scripts_that_exist() {
    let root = repo_root();
    let files = workflows();
    assert!(files.len() >= 2, "{files:?}");
    let mut named = 0;
    for file in &files {
        let yaml = std::fs::read_to_string(file).unwrap();
        let steps = run_steps(&yaml);
        assert!(!steps.is_empty(), "{}: no run step read", file.display());
        assert_eq!(
            steps.len(),
            yaml.matches("run:").count(),
            "{}: a run step was not read",
            file.display()
        );
        for step in &steps {
            // `${{ ... }}` is GitHub's, substituted before bash sees it.
            let script = step.replace("${{", "\"${").replace("}}", "}\"");
            bash_parses(&script).unwrap_or_else(|e| panic!("{}: {step:?}: {e}", file.display()));
            for s in scripts_named(step) {
                let path = root.join(s.trim_end_matches('/'));
                if s.ends_with(".toml") || s.contains("/campaigns/") {
                    assert!(path.is_file(), "{}: {s} does not exist", file.display());
                } else {
                    assert!(
                        is_executable(&path),
                        "{}: {s} is not an executable script",
                        file.display()
                    );
                }
                named += 1;
            }
        }
    }
    assert!(named >= 8, "only {named} scripts named: the reader is broken");
}

#[test]
fn every_job_runs_in_debian_12() {
    for file in workflows() {
        let yaml = std::fs::read_to_string(&file).unwrap();
        let jobs = yaml.matches("runs-on:").count();
        assert!(jobs > 0, "{}", file.display());
        assert_eq!(
            yaml.matches(IMAGE).count(),
            jobs,
            "{}: a job outside {IMAGE}",
            file.display()
        );
    }
}

#[test]
fn the_reader_reads_each_kind_of_scalar() {
    let yaml = "steps:\n  - run: ci/a\n  - name: x\n    run: |\n      one\n      two\n  - run: >\n      three\n      four\n    if: always()\n";
    assert_eq!(run_steps(yaml), vec!["ci/a", "one\ntwo", "three four"]);
    assert_eq!(scripts_named("python3 ci/merge-junit out.xml"), vec!["ci/merge-junit"]);
    assert!(bash_parses("if then").is_err());
}
