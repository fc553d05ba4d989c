//! Always-run companion of `make fuzz`: replays the committed fuzz corpora (and the crash
//! regressions found by fuzzing) through both YAML parsers, then property tests random and
//! mutated YAML against them. Nothing may panic; errors name the file, and the line where the
//! YAML parser knows one.

use ausweep_coordinator::manifest;
use ausweep_proto::JobSpec;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const FILE: &str = "fuzzed.yaml";

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The line the YAML parser reports for a syntax error, if the text is not YAML.
fn syntax_error_line(text: &str) -> Option<usize> {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Err(e) => e.location().map(|l| l.line()),
        Ok(_) => None,
    }
}

/// Runs one input through both parsers and checks the errors' shape.
fn check(text: &str) -> Result<(), TestCaseError> {
    let syntax = if text.len() <= manifest::MAX_MANIFEST_BYTES {
        syntax_error_line(text)
    } else {
        None
    };
    match manifest::parse(text, FILE) {
        Ok(p) => {
            prop_assert_eq!(
                manifest::from_canonical(&p.canonical).ok(),
                Some(p.manifest.clone())
            );
            prop_assert!(ausweep_coordinator::plan::expand(&p.sweep_id, &p.manifest).is_ok());
        }
        Err(e) => {
            prop_assert_eq!(&e.file, FILE);
            prop_assert!(e.to_string().starts_with(&format!("{FILE}:")), "{}", e);
            if syntax.is_some() {
                prop_assert!(
                    e.line.is_some(),
                    "a YAML syntax error without a line: {}",
                    e
                );
            }
        }
    }
    match JobSpec::from_yaml(text, FILE) {
        Ok(spec) => {
            let json =
                serde_json::to_string(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: JobSpec =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(back.validate("json").is_ok());
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with(&format!("{FILE}: ")), "{}", msg);
            if syntax.is_some() {
                prop_assert!(
                    msg.contains("line "),
                    "a YAML syntax error without a line: {}",
                    msg
                );
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_corpora_and_regressions_replay_cleanly() {
    let mut n = 0;
    for sub in ["corpus/manifest", "corpus/job_file", "regressions"] {
        for f in files_in(&fuzz_dir().join(sub)) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            if let Ok(text) = std::str::from_utf8(&bytes) {
                if let Err(e) = check(text) {
                    panic!("{}: {e}", f.display());
                }
                n += 1;
            }
        }
    }
    assert!(
        n >= 20,
        "only {n} corpus files under {}",
        fuzz_dir().display()
    );
}

fn seeds() -> Vec<String> {
    let mut v = Vec::new();
    for sub in ["corpus/manifest", "corpus/job_file"] {
        for f in files_in(&fuzz_dir().join(sub)) {
            if let Ok(t) = std::fs::read_to_string(f) {
                v.push(t);
            }
        }
    }
    v
}

/// YAML fragments a mutation may splice in: structure, aliases, tags, odd scalars.
const SNIPPETS: &[&str] = &[
    ":",
    "- ",
    "  ",
    "\n",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!kfold ",
    "!",
    "? ",
    "|\n",
    ">-\n",
    "'",
    "\"",
    "#",
    "---\n",
    "...\n",
    "~",
    "null",
    ".nan",
    "-.inf",
    "1e309",
    "-1",
    "0x10",
    "18446744073709551616",
    "4294967296",
    "true",
    "<<: *a\n",
    "\t",
    "\u{feff}",
    "\u{0}",
    "grid:\n  train.lr: [0.1, 0.2]\n",
    "grid:\n  seed: []\n",
    "stages: []\n",
    "run_folds: [0]\n",
    "folds: !kfold {k: 0}\n",
    "backbone_lr: -0.0\n",
    "epochs: 4294967295\n",
    "init_checkpoint: ../x\n",
];

#[derive(Debug, Clone)]
enum Op {
    Delete(usize, usize),
    Insert(usize, usize),
    DupLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
    Truncate(usize),
}

fn mutate(text: &str, ops: &[Op]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for op in ops {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *op {
            Op::Delete(i, n) => {
                let a = at(i, s.len());
                let b = (a + n % 40).min(s.len());
                s.drain(a..b);
            }
            Op::Insert(i, k) => {
                let a = at(i, s.len());
                let snip: Vec<char> = SNIPPETS[k % SNIPPETS.len()].chars().collect();
                s.splice(a..a, snip);
            }
            Op::DupLine(i) | Op::SwapLines(i, _) | Op::Indent(i, _) => {
                let text: String = s.iter().collect();
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                if lines.is_empty() {
                    continue;
                }
                let a = i % lines.len();
                match *op {
                    Op::DupLine(_) => {
                        let l = lines[a].clone();
                        lines.insert(a, l);
                    }
                    Op::SwapLines(_, j) => {
                        let b = j % lines.len();
                        lines.swap(a, b);
                    }
                    Op::Indent(_, d) => {
                        let pad = " ".repeat(d % 5);
                        lines[a] = format!("{pad}{}", lines[a]);
                    }
                    _ => {}
                }
                s = (lines.join("\n") + "\n").chars().collect();
            }
            Op::Truncate(i) => {
                let a = at(i, s.len());
                s.truncate(a);
            }
        }
    }
    s.into_iter().collect()
}

fn op() -> impl Strategy<Value = Op> {
    let u = any::<usize>();
    prop_oneof![
        1 => (u, 0usize..40).prop_map(|(i, n)| Op::Delete(i, n)),
        3 => (u, any::<usize>()).prop_map(|(i, k)| Op::Insert(i, k)),
        1 => u.prop_map(Op::DupLine),
        1 => (u, any::<usize>()).prop_map(|(i, j)| Op::SwapLines(i, j)),
        1 => (u, any::<usize>()).prop_map(|(i, d)| Op::Indent(i, d)),
        1 => u.prop_map(Op::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_files_never_panic(seed in any::<prop::sample::Index>(), ops in prop::collection::vec(op(), 1..8)) {
        let seeds = seeds();
        prop_assume!(!seeds.is_empty());
        let text = mutate(&seeds[seed.index(seeds.len())], &ops);
        check(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(&text)?;
    }

    #[test]
    fn yaml_shaped_noise_never_panics(parts in prop::collection::vec(prop_oneof![
        prop::sample::select(SNIPPETS).prop_map(str::to_string),
        "[a-z_.]{1,12}: ".prop_map(String::from),
        "[ -~]{0,12}".prop_map(String::from),
    ], 0..60)) {
        check(&parts.concat())?;
    }
}
