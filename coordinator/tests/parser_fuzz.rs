//! Always-run companion of `make fuzz`: replays the committed fuzz corpora and the regressions
//! found by fuzzing through both YAML parsers, then property tests random and mutated YAML, and
//! random bytes, against them. Nothing may panic; errors name the file, and the line where the
//! YAML parser knows one.
//!
//! Inputs go in as bytes, as the fuzz targets take them: text that is not UTF-8 is an error
//! result (what the parsers' callers report when they read such a file), never skipped.
//!
//! `fuzz/regressions/<target>/` holds the regressions of each fuzz target (`manifest`,
//! `job_file`); `fuzz/regressions/EXPECTED` says what each must give: `ok`, or a fragment of the
//! error. The replay fails when a target has no regressions, when an input is not listed or a
//! listed input is missing, and when an input gives anything else.
//!
//! Time is not asserted here (that belongs in benchmarks); inputs are bounded by size instead:
//! none may exceed libFuzzer's `-max_len` in `make fuzz`.

use ausweep_coordinator::manifest;
use ausweep_proto::JobSpec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FILE: &str = "fuzzed.yaml";
/// The fuzz targets.
const TARGETS: [&str; 2] = ["manifest", "job_file"];
/// The largest input replayed: `make fuzz`'s `-max_len`.
const MAX_INPUT_BYTES: usize = 65_536;
/// The fewest regressions each fuzz target must have.
const MIN_REGRESSIONS: usize = 3;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files in `dir`, sorted; panics when it cannot be read.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The line the YAML parser reports for a syntax error, if the text is not YAML. Text whose
/// aliases expand past the parsers' bound is not built into a value (an alias bomb would
/// exhaust memory); the parsers refuse it before parsing.
fn syntax_error_line(text: &str) -> Option<usize> {
    if ausweep_proto::yaml::check_bounded(text).is_err() {
        return None;
    }
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Err(e) => e.location().map(|l| l.line()),
        Ok(_) => None,
    }
}

/// What each parser gave for one input: `Ok`, or its error as text.
#[derive(Debug, Clone, PartialEq)]
struct Verdict {
    manifest: Result<(), String>,
    job_file: Result<(), String>,
}

impl Verdict {
    fn of(&self, target: &str) -> &Result<(), String> {
        match target {
            "manifest" => &self.manifest,
            "job_file" => &self.job_file,
            t => panic!("no fuzz target {t}"),
        }
    }
}

/// Runs one input through both parsers as the fuzz targets do (bytes, read as UTF-8 text) and
/// checks the errors' shape. Bytes that are not UTF-8 are refused as such by both; their lossy
/// decoding goes through both parsers too, which must not panic on it.
fn check_bytes(bytes: &[u8]) -> Result<Verdict, TestCaseError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => check(text),
        Err(e) => {
            check(&String::from_utf8_lossy(bytes))?;
            let refused = Err(format!("{FILE}: not UTF-8 text: {e}"));
            Ok(Verdict {
                manifest: refused.clone(),
                job_file: refused,
            })
        }
    }
}

/// Runs one text through both parsers and checks the errors' shape.
fn check(text: &str) -> Result<Verdict, TestCaseError> {
    let syntax = if text.len() <= manifest::MAX_MANIFEST_BYTES {
        syntax_error_line(text)
    } else {
        None
    };
    let manifest = match manifest::parse(text, FILE) {
        Ok(p) => {
            prop_assert_eq!(
                manifest::from_canonical(&p.canonical).ok(),
                Some(p.manifest.clone())
            );
            prop_assert!(ausweep_coordinator::plan::expand(&p.sweep_id, &p.manifest).is_ok());
            Ok(())
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
            Err(e.to_string())
        }
    };
    let job_file = match JobSpec::from_yaml(text, FILE) {
        Ok(spec) => {
            let json =
                serde_json::to_string(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: JobSpec =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(back.validate("json").is_ok());
            Ok(())
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
            Err(msg)
        }
    };
    Ok(Verdict { manifest, job_file })
}

/// Replays one file; panics naming it when it is too large or a check fails.
fn replay(f: &Path) -> Verdict {
    let bytes = read(f);
    assert!(
        bytes.len() <= MAX_INPUT_BYTES,
        "{}: {} bytes, more than the fuzz targets' {MAX_INPUT_BYTES}",
        f.display(),
        bytes.len()
    );
    check_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
}

/// `fuzz/regressions/EXPECTED`: `<target>/<file>` → `ok` or a fragment of the error (control
/// characters written as Rust escapes, e.g. `\0`).
fn expected() -> BTreeMap<String, String> {
    let p = fuzz_dir().join("regressions/EXPECTED");
    let text = String::from_utf8(read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut m = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (file, want) = line.split_once(char::is_whitespace).unwrap_or_else(|| {
            panic!("{}:{}: `<target>/<file> <expectation>`", p.display(), i + 1)
        });
        assert!(
            m.insert(file.to_string(), want.trim().to_string())
                .is_none(),
            "{}:{}: {file} listed twice",
            p.display(),
            i + 1
        );
    }
    m
}

#[test]
fn fuzz_corpora_replay_cleanly() {
    for target in TARGETS {
        let files = files_in(&fuzz_dir().join("corpus").join(target));
        assert!(!files.is_empty(), "no corpus for the {target} target");
        for f in &files {
            replay(f);
        }
    }
}

#[test]
fn fuzz_regressions_replay_as_expected() {
    let mut want = expected();
    let mut wrong = Vec::new();
    for target in TARGETS {
        let mut not_utf8 = 0;
        let dir = fuzz_dir().join("regressions").join(target);
        let files = files_in(&dir);
        assert!(
            files.len() >= MIN_REGRESSIONS,
            "{}: {} regressions of the {target} target, at least {MIN_REGRESSIONS} expected",
            dir.display(),
            files.len()
        );
        for f in &files {
            let name = format!(
                "{target}/{}",
                f.file_name().unwrap_or_default().to_string_lossy()
            );
            let Some(w) = want.remove(&name) else {
                panic!("{name} is not listed in fuzz/regressions/EXPECTED");
            };
            not_utf8 += usize::from(std::str::from_utf8(&read(f)).is_err());
            let got = replay(f).of(target).clone();
            let good = match (&got, w.as_str()) {
                (Ok(()), "ok") => true,
                (Err(e), w) => w != "ok" && e.escape_debug().to_string().contains(w),
                _ => false,
            };
            if !good {
                wrong.push(format!("{name}: expected {w:?}, got {got:?}"));
            }
        }
        assert!(
            not_utf8 > 0,
            "{}: no regression of the {target} target is text that is not UTF-8",
            dir.display()
        );
    }
    assert!(
        want.is_empty(),
        "listed in fuzz/regressions/EXPECTED but missing: {:?}",
        want.keys()
    );
    assert!(
        wrong.is_empty(),
        "regressions gave something else:\n{}",
        wrong.join("\n")
    );
}

/// The corpus files, as text (a corpus file that is not UTF-8 goes in decoded lossily).
fn seeds() -> Vec<String> {
    let mut v = Vec::new();
    for target in TARGETS {
        for f in files_in(&fuzz_dir().join("corpus").join(target)) {
            v.push(String::from_utf8_lossy(&read(&f)).into_owned());
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
        prop_assert!(!seeds.is_empty(), "no corpus under {}", fuzz_dir().display());
        let text = mutate(&seeds[seed.index(seeds.len())], &ops);
        check(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(&text)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_bytes(&bytes)?;
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
