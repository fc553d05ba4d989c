//! Every path the README, CONTRIBUTING.md and docs/ name exists: relative link targets, and every
//! word that starts with one of the repository's top-level folders (in prose, inline code and
//! code blocks alike). A page that moves or a file that is renamed leaves no stale pointer.

use std::path::{Path, PathBuf};

/// The repository's top-level folders: a word starting with one of these is a path.
const ROOTS: [&str; 18] = [
    "proto/",
    "coordinator/",
    "admin/",
    "agent/",
    "trainer/",
    "vision/",
    "weights/",
    "data/",
    "fsutil/",
    "metrics/",
    "src/",
    "tests/",
    "testkit/",
    "fuzz/",
    "docs/",
    "experiments/",
    "scripts/",
    ".ci/",
];

/// Paths the docs name that a command creates (they are not in the repository).
const GENERATED: [&str; 1] = ["fuzz/artifacts"];

/// The pages checked.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut v = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// The words of `line` that name repository paths (trailing punctuation off).
fn named_paths(line: &str) -> Vec<&str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
        .map(|w| w.trim_end_matches(['.', ',', ';', ':']))
        .filter(|w| ROOTS.iter().any(|r| w.starts_with(r)))
        // Placeholders such as checkpoints/epoch-NNNN are patterns, not paths.
        .filter(|w| !w.contains("NNNN"))
        .collect()
}

/// The targets of relative Markdown links in `line` (`[text](target)` without a scheme or a
/// bare anchor), anchors dropped.
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let t = rest[..end].split('#').next().unwrap_or("");
        if !t.is_empty() && !t.contains("://") && !t.starts_with("mailto:") {
            out.push(t);
        }
        rest = &rest[end..];
    }
    out
}

/// `file:line: what` for every named path that does not exist.
fn missing(root: &Path) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    for page in pages(root) {
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{page:?}: {e}"));
        let rel = page
            .strip_prefix(root)
            .unwrap_or(&page)
            .display()
            .to_string();
        let dir = page.parent().unwrap_or(root);
        for (n, line) in text.lines().enumerate() {
            for p in named_paths(line) {
                let p = p.trim_end_matches('/');
                checked += 1;
                if !root.join(p).exists() && !GENERATED.contains(&p) {
                    bad.push(format!("{rel}:{}: `{p}` does not exist", n + 1));
                }
            }
            for t in link_targets(line) {
                checked += 1;
                if !dir.join(t).exists() {
                    bad.push(format!("{rel}:{}: link to `{t}` leads nowhere", n + 1));
                }
            }
        }
    }
    (checked, bad)
}

#[test]
fn paths_and_links_are_found_as_the_policy_says() {
    assert_eq!(
        named_paths("see `docs/cluster.md`, then experiments/paper.yaml: and target/demo."),
        ["docs/cluster.md", "experiments/paper.yaml"]
    );
    assert_eq!(
        named_paths("out/checkpoints/epoch-NNNN.json src/x"),
        ["src/x"]
    );
    assert_eq!(
        link_targets(
            "[a](docs/a.md#top) [b](https://x.org/y) [c](#anchor) [d](../CONTRIBUTING.md)"
        ),
        ["docs/a.md", "../CONTRIBUTING.md"]
    );
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (checked, bad) = missing(root);
    assert!(
        bad.is_empty(),
        "{} of {checked} named paths and links do not exist:\n{}",
        bad.len(),
        bad.join("\n")
    );
    // The scan found what the pages name (a broken scan would pass on nothing).
    assert!(checked >= 150, "only {checked} paths found");
}
