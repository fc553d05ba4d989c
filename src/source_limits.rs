//! No source file over 600 lines (its final `#[cfg(test)]` module aside) and no function over
//! 120 without a reason written at its top (CONTRIBUTING.md, "Habits"): a file's reason is a
//! `Long file:` line among its first lines; a function's is a `Long function:` comment among the lines just above its signature
//! (its doc comment or attributes) or the first lines of its body.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 120;

/// Every `.rs` file of the repository outside build output.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            if !(name == "target" || name.starts_with('.')) {
                sources(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// A function's name and its first line (0-based) if `line` starts one with a body.
fn fn_start(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start();
    let indent = line.len() - t.len();
    let mut rest = t;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let name = rest.strip_prefix("fn ")?;
    let name = name
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()?;
    (!line.trim_end().ends_with(';')).then_some((indent, name))
}

/// Functions over the limit without a reason: (first line, length, name).
fn long_functions(lines: &[&str]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, name)) = fn_start(line) else {
            continue;
        };
        // The body ends at the first later line that closes at the signature's indent.
        let close = " ".repeat(indent) + "}";
        let Some(end) = (i + 1..lines.len()).find(|&j| {
            lines[j].starts_with(&close)
                && lines[j][indent + 1..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == ' ' || c == ')')
        }) else {
            continue;
        };
        let len = end - i + 1;
        let reason = lines[i.saturating_sub(8)..(i + 4).min(end)]
            .iter()
            .any(|l| l.contains("Long function:"));
        if len > MAX_FN_LINES && !reason {
            out.push((i + 1, len, name.to_string()));
        }
    }
    out
}

#[test]
fn no_file_or_function_is_over_the_limits_without_a_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(root, &mut files);
    files.sort();
    assert!(files.len() > 100, "found only {} source files", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("a source file");
        let lines: Vec<&str> = text.lines().collect();
        let rel = f.strip_prefix(root).unwrap_or(f).display().to_string();
        // Tests beside the code (a final `#[cfg(test)]` module) do not count.
        let code = lines
            .iter()
            .position(|l| *l == "#[cfg(test)]")
            .unwrap_or(lines.len());
        if code > MAX_FILE_LINES && !lines.iter().take(12).any(|l| l.contains("Long file:")) {
            bad.push(format!("{rel}: {code} lines (limit {MAX_FILE_LINES})"));
        }
        for (at, len, name) in long_functions(&lines) {
            bad.push(format!(
                "{rel}:{at}: fn {name} is {len} lines (limit {MAX_FN_LINES})"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} over the limits without a reason (`Long file:` / `Long function:`):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn a_long_function_is_found_and_a_reason_excuses_it() {
    let body: Vec<String> = (0..130).map(|i| format!("    let x{i} = {i};")).collect();
    let text = format!("pub fn big() {{\n{}\n}}\n", body.join("\n"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(long_functions(&lines), [(1, 132, "big".to_string())]);
    let excused = format!("// Long function: a table.\n{text}");
    let lines: Vec<&str> = excused.lines().collect();
    assert!(long_functions(&lines).is_empty());
    let short = "fn small() {\n    1;\n}\n";
    assert!(long_functions(&short.lines().collect::<Vec<_>>()).is_empty());
}
