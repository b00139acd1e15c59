//! The repository's docs stand on their own: every relative link in every
//! markdown file resolves to a file or folder inside the repository (and an
//! `#anchor` to a heading of the file it names), and the replication lab's
//! doc names every test of the campaign that encodes its table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use faultline_testdata::repo_root;

/// Folders that hold no docs of the project (build output, fetched data).
const SKIPPED_DIRS: &[&str] = &[
    "target",
    ".git",
    ".testdata",
    "store",
    "node_modules",
    "corpus",
    "artifacts",
];
/// Most markdown files searched: far more than the repository has.
const MAX_FILES: usize = 10_000;

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() && !SKIPPED_DIRS.contains(&name.as_str()) {
            markdown_files(&path, out);
        } else if kind.is_file() && name.ends_with(".md") {
            assert!(out.len() < MAX_FILES, "more than {MAX_FILES} markdown files");
            out.push(path);
        }
    }
}

/// The text outside fenced code blocks, line by line.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The targets of `[text](target)` links on a line, outside inline code.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'`' => in_code = !in_code,
            b']' if !in_code && bytes.get(i + 1) == Some(&b'(') => {
                if let Some(end) = line[i + 2..].find(')') {
                    out.push(line[i + 2..i + 2 + end].trim().to_owned());
                    i += 2 + end;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the headings of a markdown file define (a repeated heading
/// gets `-1`, `-2`, ... as on GitHub).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(heading.trim_start_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// Why `target`, linked from `file`, does not resolve, if it does not.
fn broken(root: &Path, file: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else {
        file.parent().unwrap().join(path)
    };
    let Ok(real) = resolved.canonicalize() else {
        return Some(format!("{} does not exist", resolved.display()));
    };
    if !real.starts_with(root) {
        return Some(format!("{} is outside the repository", real.display()));
    }
    match anchor {
        Some(a) if real.extension().is_some_and(|e| e == "md") => {
            let text = std::fs::read_to_string(&real).unwrap();
            (!anchors(&text).contains(a)).then(|| format!("no heading #{a} in {}", real.display()))
        }
        _ => None,
    }
}

#[test]
fn every_relative_link_in_the_docs_resolves_inside_the_repository() {
    let root = repo_root().canonicalize().unwrap();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    for must in [
        "README.md",
        "server/README.md",
        "ci/campaigns/README.md",
        "docs/HISTORY_FORMAT.md",
    ] {
        assert!(files.contains(&root.join(must)), "{must} is searched");
    }
    let mut bad = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in prose_lines(&text) {
            for target in link_targets(line) {
                checked += 1;
                if let Some(why) = broken(&root, file, &target) {
                    bad.push(format!(
                        "{}: ({target}): {why}",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
    assert!(checked > 20, "only {checked} links found: the search is broken");
}

#[test]
fn the_checker_finds_what_it_must() {
    assert_eq!(
        link_targets("see [a](b.md) and `[c](d)` and [e](f#g)"),
        vec!["b.md", "f#g"]
    );
    assert_eq!(slug(" `faultline run` "), "faultline-run");
    assert_eq!(
        slug("Where nodes run: proxies, namespaces, VMs"),
        "where-nodes-run-proxies-namespaces-vms"
    );
    let a = anchors("# A\n```\n# not a heading\n```\n## A\n");
    assert_eq!(a, BTreeSet::from(["a".to_owned(), "a-1".to_owned()]));
    let root = repo_root().canonicalize().unwrap();
    let readme = root.join("README.md");
    assert!(broken(&root, &readme, "docs/NOPE.md").is_some());
    assert!(broken(&root, &readme, "../../etc/passwd").is_some());
    assert!(broken(&root, &readme, "#no-such-heading-here").is_some());
    assert!(broken(&root, &readme, "docs/HISTORY_FORMAT.md#events").is_none());
}

#[test]
fn the_lab_doc_names_every_test_of_the_lab_campaign() {
    let root = repo_root();
    let lab = std::fs::read_to_string(root.join("ci/campaigns/lab.toml")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/REPLICATION_LAB.md")).unwrap();
    let names: Vec<&str> = lab
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    assert!(names.len() > 20, "{} tests read from lab.toml", names.len());
    let missing: Vec<&&str> = names.iter().filter(|n| !doc.contains(&format!("`{n}`"))).collect();
    assert!(missing.is_empty(), "docs/REPLICATION_LAB.md does not name {missing:?}");
}
