// Long file: test code only: a shell-line splitter and the checks of every documented command it
// feeds.
//! Every `ausweep …` command line in README.md and docs/*.md parses with the real CLI.
//!
//! `every_documented_command_parses` reads the fenced code blocks of README.md and of every
//! docs/*.md, finds each command whose program is `ausweep` and parses its words with `Cli`'s own
//! clap definition (`Cli::command()`, what `Cli::try_parse_from` uses, then
//! `Cli::from_arg_matches`). A failure names the file, the line and the command, with clap's
//! error. The policy, one rule at a time:
//!
//! - **Blocks.** Fenced blocks (```` ``` ```` or `~~~`, indented ones too) without an info string
//!   or tagged `sh`, `bash`, `shell`, `zsh`, `console` or `shell-session`. Blocks tagged otherwise
//!   (`yaml`, `json`, ...) are data, not commands. Inline code in prose is not checked.
//! - **Prompts.** A block with a line starting `$ ` is a transcript: only those lines (prompt
//!   removed) and their `\` continuations are commands; the other lines are output.
//! - **Shell syntax.** Words are split as a POSIX shell does: single and double quotes, backslash
//!   escapes, `\` + newline continues the line (the command's line number is its first word's),
//!   `#` at the start of a word comments to the end of the line. `|`, `||`, `&&`, `;`, `&`, `(`,
//!   `)` and newlines separate commands, and every command of a pipeline or list is checked on
//!   its own (so `ausweep cancel S | ausweep workers`, a list of alternatives, is two commands).
//!   The commands inside `$( … )` are checked too. Redirections (`>`, `>>`, `<`, `2>&1`, `&>`)
//!   and their targets are dropped. Variables (`$SWEEP`, `~`) are not expanded: the word is
//!   passed as written, which clap accepts wherever any string is accepted.
//! - **Program.** Leading `NAME=value` assignments are the command's environment; then `sudo`
//!   (with its options), `env`, `exec`, `nohup`, `time` and `command` are stepped over. The command
//!   is checked when its program's file name is `ausweep` (`ausweep`, `./target/release/ausweep`,
//!   `/opt/ausweep/bin/ausweep`). Other programs (`make`, `sbatch`, `jq`, ...) are not checked.
//! - **Placeholders.** `<…>` closed on the same line is a placeholder (`<64 hex>`), one word
//!   passed as written. Square brackets around words (`[SWEEP]`, `[--devices 0,2]`) mark
//!   optional parts: the brackets are removed and the part is checked as if given. So a
//!   placeholder must be valid where it stands: where clap wants a number, the docs write one.
//! - **Environment.** The test's own environment plays no part: every `env = …` of the CLI is
//!   removed before parsing. A value the docs supply through an environment variable is given
//!   to clap as its flag (`--admin-token=…`) when the line does not pass that flag itself:
//!   a `NAME=value` prefix of the command, or an `export NAME=value` earlier in the same file
//!   (its value as written). A *required* argument whose variable the same file only names (in
//!   prose, e.g. "token from AUSWEEP_ADMIN_TOKEN") is given a stand-in value. That is the one
//!   excuse: a line fails when clap rejects it for any other reason, a required argument missing
//!   that the file does not explain included. `--help` and `--version` count as parsing.
//! - **Builds.** Without the `train` feature (`--no-default-features`) the subcommands that need
//!   libtorch do not exist; their lines are skipped in that build and counted as skipped.
//!
//! Names resolved at run time (`ausweep report paper`, `--model paper:densenet121`) are strings
//! to clap and parse; whether the coordinator knows them is not this test's matter.

use super::Cli;
use clap::{CommandFactory, FromArgMatches};
use std::collections::BTreeMap;
use std::path::Path;

/// One word of a command after shell splitting.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    text: String,
    /// The first character was outside quotes (a `[` there is usage syntax).
    bare_start: bool,
    /// The last character was outside quotes (a `]` there is usage syntax).
    bare_end: bool,
}

/// A simple command: its words and the 1-based line of its first word.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Simple {
    line: usize,
    words: Vec<Word>,
}

/// Splits shell text (starting at line `first_line`) into simple commands, those inside
/// `$( … )` included.
// Long function: a shell-word state machine (quotes, escapes, continuations) that reads best as one
// loop.
fn split_shell(text: &str, first_line: usize) -> Vec<Simple> {
    let cs: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut nested = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let mut cmd_line = first_line;
    // The word being read: (text, bare_start, bare_end, line).
    let mut cur: Option<(String, bool, bool, usize)> = None;
    let mut drop_next = false;
    let mut line = first_line;
    let mut i = 0;

    fn end_word(
        cur: &mut Option<(String, bool, bool, usize)>,
        words: &mut Vec<Word>,
        cmd_line: &mut usize,
        drop_next: &mut bool,
    ) {
        if let Some((text, bare_start, bare_end, l)) = cur.take() {
            if *drop_next {
                *drop_next = false;
            } else {
                if words.is_empty() {
                    *cmd_line = l;
                }
                words.push(Word {
                    text,
                    bare_start,
                    bare_end,
                });
            }
        }
    }
    fn end_cmd(words: &mut Vec<Word>, cmd_line: usize, out: &mut Vec<Simple>) {
        if !words.is_empty() {
            out.push(Simple {
                line: cmd_line,
                words: std::mem::take(words),
            });
        }
    }
    // Appends `s` to the current word (starting one at `line` if none), quoted or not.
    fn push(cur: &mut Option<(String, bool, bool, usize)>, s: &str, bare: bool, line: usize) {
        let w = cur.get_or_insert_with(|| (String::new(), bare, bare, line));
        w.0.push_str(s);
        w.2 = bare;
    }
    // The index just past the `)` closing a `$(` whose content starts at `i`.
    fn subst_end(cs: &[char], mut i: usize) -> usize {
        let mut depth = 1;
        let mut quote: Option<char> = None;
        while i < cs.len() {
            let c = cs[i];
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '\'' | '"' => quote = Some(c),
                    '\\' => i += 1,
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                },
            }
            i += 1;
        }
        cs.len()
    }

    while i < cs.len() {
        let c = cs[i];
        match c {
            '\\' if cs.get(i + 1) == Some(&'\n') => {
                i += 2;
                line += 1;
            }
            '\\' => {
                if let Some(&n) = cs.get(i + 1) {
                    push(&mut cur, &n.to_string(), false, line);
                }
                i += 2;
            }
            '\'' => {
                let start = line;
                let mut s = String::new();
                i += 1;
                while i < cs.len() && cs[i] != '\'' {
                    if cs[i] == '\n' {
                        line += 1;
                    }
                    s.push(cs[i]);
                    i += 1;
                }
                i += 1;
                push(&mut cur, &s, false, start);
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                i += 1;
                while i < cs.len() && cs[i] != '"' {
                    match cs[i] {
                        '\\' if matches!(cs.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            s.push(cs[i + 1]);
                            i += 2;
                        }
                        '\\' if cs.get(i + 1) == Some(&'\n') => {
                            line += 1;
                            i += 2;
                        }
                        '$' if cs.get(i + 1) == Some(&'(') => {
                            let end = subst_end(&cs, i + 2);
                            let inner: String = cs[i + 2..end.saturating_sub(1)].iter().collect();
                            nested.extend(split_shell(&inner, line));
                            line += inner.matches('\n').count();
                            s.push_str(&cs[i..end].iter().collect::<String>());
                            i = end;
                        }
                        ch => {
                            if ch == '\n' {
                                line += 1;
                            }
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                push(&mut cur, &s, false, start);
            }
            '$' if cs.get(i + 1) == Some(&'(') => {
                let end = subst_end(&cs, i + 2);
                let inner: String = cs[i + 2..end.saturating_sub(1)].iter().collect();
                nested.extend(split_shell(&inner, line));
                push(&mut cur, &cs[i..end].iter().collect::<String>(), true, line);
                line += inner.matches('\n').count();
                i = end;
            }
            '`' => {
                let end = cs[i + 1..]
                    .iter()
                    .position(|&x| x == '`')
                    .map_or(cs.len(), |p| i + 2 + p);
                let s: String = cs[i..end].iter().collect();
                line += s.matches('\n').count();
                push(&mut cur, &s, false, line);
                i = end;
            }
            '#' if cur.is_none() => {
                while i < cs.len() && cs[i] != '\n' {
                    i += 1;
                }
            }
            ' ' | '\t' => {
                end_word(&mut cur, &mut words, &mut cmd_line, &mut drop_next);
                i += 1;
            }
            '\n' => {
                end_word(&mut cur, &mut words, &mut cmd_line, &mut drop_next);
                end_cmd(&mut words, cmd_line, &mut out);
                line += 1;
                i += 1;
            }
            '&' if cs.get(i + 1) == Some(&'>') => {
                // `&>` / `&>>`: both streams redirected; the target is dropped.
                end_word(&mut cur, &mut words, &mut cmd_line, &mut drop_next);
                i += 2;
                if cs.get(i) == Some(&'>') {
                    i += 1;
                }
                drop_next = true;
            }
            ';' | '&' | '|' | '(' | ')' => {
                end_word(&mut cur, &mut words, &mut cmd_line, &mut drop_next);
                end_cmd(&mut words, cmd_line, &mut out);
                i += 1;
            }
            '<' | '>' => {
                let rest_of_line: String = cs[i + 1..].iter().take_while(|&&x| x != '\n').collect();
                let placeholder = c == '<'
                    && cs
                        .get(i + 1)
                        .is_some_and(|n| !n.is_whitespace() && !"<(&".contains(*n))
                    && rest_of_line.contains('>');
                if placeholder {
                    let len = rest_of_line.find('>').unwrap_or(0) + 2;
                    push(
                        &mut cur,
                        &cs[i..i + len].iter().collect::<String>(),
                        true,
                        line,
                    );
                    i += len;
                    continue;
                }
                // A redirection: a file descriptor number before it is no word.
                if cur
                    .as_ref()
                    .is_some_and(|w| w.1 && w.0.chars().all(|d| d.is_ascii_digit()))
                {
                    cur = None;
                }
                end_word(&mut cur, &mut words, &mut cmd_line, &mut drop_next);
                i += 1;
                while i < cs.len() && matches!(cs[i], '>' | '<' | '|') {
                    i += 1;
                }
                if cs.get(i) == Some(&'&') {
                    // `>&2`, `2>&1`, `>&-`: a descriptor, no file word.
                    i += 1;
                    while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '-') {
                        i += 1;
                    }
                } else {
                    drop_next = true;
                }
            }
            _ => {
                push(&mut cur, &c.to_string(), true, line);
                i += 1;
            }
        }
    }
    end_word(&mut cur, &mut words, &mut cmd_line, &mut drop_next);
    end_cmd(&mut words, cmd_line, &mut out);
    out.extend(nested);
    out.sort_by_key(|s| s.line);
    out
}

/// The shell text of a document's command blocks, one entry per block: (first line, text).
fn shell_blocks(doc: &str) -> Vec<(usize, String)> {
    const SHELL: &[&str] = &["", "sh", "bash", "shell", "zsh", "console", "shell-session"];
    let lines: Vec<&str> = doc.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let Some(fence_char) = ['`', '~']
            .into_iter()
            .find(|&f| t.starts_with(&f.to_string().repeat(3)))
        else {
            i += 1;
            continue;
        };
        let fence_len = t.chars().take_while(|&c| c == fence_char).count();
        let info = t[fence_len..].split_whitespace().next().unwrap_or("");
        let info = info
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_lowercase();
        let start = i + 1;
        let mut end = start;
        while end < lines.len() {
            let t = lines[end].trim();
            if t.len() >= fence_len && t.chars().all(|c| c == fence_char) {
                break;
            }
            end += 1;
        }
        if SHELL.contains(&info.as_str()) {
            let body = &lines[start..end.min(lines.len())];
            let transcript = body.iter().any(|l| l.trim_start().starts_with("$ "));
            let mut text = String::new();
            let mut continued = false;
            for l in body {
                let t = l.trim_start();
                let kept = if !transcript {
                    Some(*l)
                } else if let Some(cmd) = t.strip_prefix("$ ") {
                    Some(cmd)
                } else if continued {
                    Some(*l)
                } else {
                    None
                };
                continued = kept.is_some_and(|k| k.trim_end().ends_with('\\'));
                text.push_str(kept.unwrap_or(""));
                text.push('\n');
            }
            // Line numbers are 1-based: the block's first line is `start + 1`.
            blocks.push((start + 1, text));
        }
        i = end + 1;
    }
    blocks
}

/// A command of the docs to check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DocCommand {
    line: usize,
    /// `ausweep` (as named) and its arguments, as the docs write them.
    words: Vec<String>,
    /// `NAME=value` prefixes and the file's `export`s before it, later ones winning.
    env: BTreeMap<String, String>,
}

fn is_assignment(w: &Word) -> bool {
    let Some((name, _)) = w.text.split_once('=') else {
        return false;
    };
    w.bare_start
        && !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Moves leading `NAME=value` words of `w` into `env`.
fn assignments(w: &mut &[Word], env: &mut BTreeMap<String, String>) {
    while let Some(a) = w.first().filter(|a| is_assignment(a)) {
        let (k, v) = a.text.split_once('=').unwrap_or_default();
        env.insert(k.to_string(), v.to_string());
        *w = &w[1..];
    }
}

/// The `ausweep` commands of a document.
fn doc_commands(doc: &str) -> Vec<DocCommand> {
    let mut exported = BTreeMap::new();
    let mut found = Vec::new();
    for (first, text) in shell_blocks(doc) {
        for s in split_shell(&text, first) {
            let mut env = exported.clone();
            let mut w: &[Word] = &s.words;
            assignments(&mut w, &mut env);
            if w.first().is_some_and(|p| p.text == "export") {
                for a in w[1..].iter().filter(|a| is_assignment(a)) {
                    let (k, v) = a.text.split_once('=').unwrap_or_default();
                    exported.insert(k.to_string(), v.to_string());
                }
                continue;
            }
            loop {
                match w.first().map(|p| p.text.as_str()) {
                    Some("sudo") => {
                        w = &w[1..];
                        while let Some(o) = w.first().filter(|o| o.text.starts_with('-')) {
                            let takes_value =
                                ["-u", "-g", "-U", "-C", "-D", "-h", "-p", "-r", "-t"]
                                    .contains(&o.text.as_str());
                            w = &w[(if takes_value { 2 } else { 1 }).min(w.len())..];
                        }
                    }
                    Some("env") => {
                        w = &w[1..];
                        while let Some(o) = w.first().filter(|o| o.text.starts_with('-')) {
                            let takes_value = ["-u", "-C", "-S"].contains(&o.text.as_str());
                            w = &w[(if takes_value { 2 } else { 1 }).min(w.len())..];
                        }
                    }
                    Some("exec" | "nohup" | "time" | "command") => w = &w[1..],
                    _ => break,
                }
                assignments(&mut w, &mut env);
            }
            let Some(program) = w.first() else { continue };
            if program.text.rsplit('/').next() != Some("ausweep") {
                continue;
            }
            let mut words = vec![program.text.clone()];
            for a in &w[1..] {
                let mut t = a.text.as_str();
                if a.bare_start {
                    t = t.strip_prefix('[').unwrap_or(t);
                }
                if a.bare_end {
                    t = t.strip_suffix(']').unwrap_or(t);
                }
                if !t.is_empty() {
                    words.push(t.to_string());
                }
            }
            found.push(DocCommand {
                line: s.line,
                words,
                env,
            });
        }
    }
    found
}

/// `cmd` and its subcommands with no environment lookups.
fn without_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| a.env(None::<&'static str>))
        .mut_subcommands(without_env)
}

/// The value the docs stand in for a required argument whose variable they only name.
const STAND_IN: &str = "value-from-the-environment";

/// Parses one documented command with `P` (the binary's `Cli`). `doc` is the whole file (for
/// variables it names in prose).
fn check<P: CommandFactory + FromArgMatches>(c: &DocCommand, doc: &str) -> Result<(), String> {
    let full = P::command();
    // The subcommand the words select, and where its arguments begin.
    let mut sub = &full;
    let mut at = 1;
    while let Some(s) = c.words.get(at).and_then(|w| sub.find_subcommand(w)) {
        sub = s;
        at += 1;
    }
    let given = |long: &str| {
        c.words.iter().take_while(|w| *w != "--").any(|w| {
            w.strip_prefix("--")
                .is_some_and(|f| f == long || f.starts_with(&format!("{long}=")))
        })
    };
    let mut words = c.words.clone();
    let mut supplied = Vec::new();
    for a in sub.get_arguments() {
        let (Some(var), Some(long)) = (a.get_env(), a.get_long()) else {
            continue;
        };
        let var = var.to_string_lossy().to_string();
        // The line passes the flag itself: by its name, an alias or a short form.
        let mut longs = vec![long];
        longs.extend(a.get_all_aliases().unwrap_or_default());
        let mut shorts: Vec<char> = a.get_short().into_iter().collect();
        shorts.extend(a.get_all_short_aliases().unwrap_or_default());
        if longs.iter().any(|l| given(l))
            || shorts
                .iter()
                .any(|s| c.words.iter().any(|w| w.starts_with(&format!("-{s}"))))
        {
            continue;
        }
        let value = match c.env.get(&var) {
            Some(v) => v.clone(),
            None if a.is_required_set() && doc.contains(&var) => STAND_IN.to_string(),
            None => continue,
        };
        let flag = if a.get_action().takes_values() {
            format!("--{long}={value}")
        } else if ["", "0", "false", "no", "off"].contains(&value.to_lowercase().as_str()) {
            continue;
        } else {
            format!("--{long}")
        };
        supplied.push(format!("{flag} from ${var}"));
        words.insert(at, flag);
    }
    let parsed = without_env(P::command())
        .try_get_matches_from(&words)
        .and_then(|m| P::from_arg_matches(&m));
    match parsed {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => {
            let mut msg = format!("{:?}: {}", e.kind(), e.render().to_string().trim());
            if !supplied.is_empty() {
                msg.push_str(&format!("\n(given: {})", supplied.join(", ")));
            }
            Err(msg)
        }
    }
}

/// Whether this build has the command's subcommand: without the `train` feature the subcommands
/// that need libtorch are absent.
fn in_this_build(words: &[String]) -> bool {
    const TRAIN_ONLY: &[&str] = &[
        "demo", "train", "predict", "weights", "dataset", "worker", "bench",
    ];
    cfg!(feature = "train")
        || !words
            .get(1)
            .is_some_and(|w| TRAIN_ONLY.contains(&w.as_str()))
}

#[test]
fn every_documented_command_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    assert!(files.len() > 5, "found only {files:?}");
    let (mut checked, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap_or(f).display().to_string();
        let doc = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{rel}: {e}"));
        for c in doc_commands(&doc) {
            if !in_this_build(&c.words) {
                skipped += 1;
                continue;
            }
            checked += 1;
            if let Err(e) = check::<Cli>(&c, &doc) {
                let e = e.replace('\n', "\n    ");
                failures.push(format!("{rel}:{}: `{}`\n    {e}", c.line, shown(&c.words)));
            }
        }
    }
    eprintln!("documented ausweep commands: {checked} checked, {skipped} skipped in this build");
    assert!(
        failures.is_empty(),
        "{} of {checked} documented commands do not parse:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The extraction itself must keep finding the docs' commands (a broken splitter finds none).
    assert!(
        checked + skipped >= 20,
        "only {checked} documented commands found"
    );
}

/// Words as a shell line (quoted where needed), for messages.
fn shown(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+~$".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn texts(s: &Simple) -> Vec<&str> {
    s.words.iter().map(|w| w.text.as_str()).collect()
}

#[test]
fn shell_splitting_follows_the_policy() {
    let s = split_shell(
        "a 'b c' \"d $X\" e\\ f # comment \\\nnext \\\n  --flag | jq . && x; y 2>&1 >out <in\n",
        10,
    );
    let got: Vec<(usize, Vec<&str>)> = s.iter().map(|s| (s.line, texts(s))).collect();
    assert_eq!(
        got,
        vec![
            (10, vec!["a", "b c", "d $X", "e f"]),
            (11, vec!["next", "--flag"]),
            (12, vec!["jq", "."]),
            (12, vec!["x"]),
            (12, vec!["y"]),
        ]
    );
    let s = split_shell(
        "x --sha256 <64 hex> ausweep-<v>.tar $(ausweep plan f | jq .)",
        1,
    );
    let got: Vec<Vec<&str>> = s.iter().map(texts).collect();
    assert_eq!(
        got,
        vec![
            vec![
                "x",
                "--sha256",
                "<64 hex>",
                "ausweep-<v>.tar",
                "$(ausweep plan f | jq .)"
            ],
            vec!["ausweep", "plan", "f"],
            vec!["jq", "."],
        ]
    );
}

#[test]
fn commands_are_found_as_the_policy_says() {
    let doc = "text\n\n```sh\nexport AUSWEEP_COORDINATOR=http://c:7077\n\
               X=1 sudo -u svc ./target/release/ausweep status [SWEEP] | ausweep workers\n\
               make demo   # `ausweep demo`\n```\n\n```yaml\nargs: [ausweep, bad]\n```\n\
               ```console\n$ ausweep plan \\\n    f.yaml\nausweep output line\n```\n";
    let got = doc_commands(doc);
    let lines: Vec<(usize, Vec<&str>)> = got
        .iter()
        .map(|c| (c.line, c.words.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (5, vec!["./target/release/ausweep", "status", "SWEEP"]),
            (5, vec!["ausweep", "workers"]),
            (13, vec!["ausweep", "plan", "f.yaml"]),
        ]
    );
    assert_eq!(got[0].env["X"], "1");
    assert_eq!(got[0].env["AUSWEEP_COORDINATOR"], "http://c:7077");
    assert!(!got[1].env.contains_key("X"));
}

/// A stand-in CLI for the environment rules (the real one's flags change over time).
#[derive(clap::Parser)]
#[command(name = "ausweep")]
struct Toy {
    #[command(subcommand)]
    cmd: ToyCmd,
}

#[derive(clap::Subcommand)]
enum ToyCmd {
    Status {
        sweep: Option<String>,
        #[arg(long, env = "TOY_TOKEN")]
        token: String,
        #[arg(long, env = "TOY_SLOTS")]
        slots: Option<u16>,
        #[arg(long, env = "TOY_VERBOSE")]
        verbose: bool,
        #[arg(long, alias = "ca", env = "TOY_CA")]
        tls_ca: Option<String>,
    },
}

#[test]
fn the_check_is_strict() {
    let cmd = |words: &[&str], env: &[(&str, &str)]| DocCommand {
        line: 1,
        words: words.iter().map(|w| w.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    // A required value from a prefix or export, from a file that names its variable, or missing.
    let bare = cmd(&["ausweep", "status", "s"], &[]);
    let prefixed = cmd(&["ausweep", "status", "s"], &[("TOY_TOKEN", "t")]);
    assert_eq!(check::<Toy>(&prefixed, ""), Ok(()));
    assert_eq!(
        check::<Toy>(&bare, "the token comes from TOY_TOKEN"),
        Ok(())
    );
    let e = check::<Toy>(&bare, "").unwrap_err();
    assert!(e.contains("MissingRequiredArgument"), "{e}");
    // A value the docs give is checked as clap would check it from the environment.
    let slots = cmd(
        &["ausweep", "status"],
        &[("TOY_TOKEN", "t"), ("TOY_SLOTS", "two")],
    );
    let e = check::<Toy>(&slots, "").unwrap_err();
    assert!(
        e.contains("ValueValidation") && e.contains("TOY_SLOTS"),
        "{e}"
    );
    let verbose = cmd(
        &["ausweep", "status"],
        &[("TOY_TOKEN", "t"), ("TOY_VERBOSE", "1")],
    );
    assert_eq!(check::<Toy>(&verbose, ""), Ok(()));
    // A flag the line passes (here by an alias) is not passed again from the environment.
    let ca = cmd(
        &["ausweep", "status", "--ca", "x"],
        &[("TOY_TOKEN", "t"), ("TOY_CA", "y")],
    );
    assert_eq!(check::<Toy>(&ca, ""), Ok(()));
    // Unknown flags and bad values fail whatever the environment says (the real CLI here).
    let e = check::<Cli>(
        &cmd(&["ausweep", "report", "s", "--data-dir", "d"], &[]),
        "",
    )
    .unwrap_err();
    assert!(e.contains("UnknownArgument"), "{e}");
    let e = check::<Cli>(&cmd(&["ausweep", "plan", "f", "--output", "yaml"], &[]), "").unwrap_err();
    assert!(e.contains("InvalidValue"), "{e}");
    assert_eq!(
        check::<Cli>(&cmd(&["ausweep", "plan", "--help"], &[]), ""),
        Ok(())
    );
}
