//! Sweep manifests: the YAML a lab admin submits, parsed, validated and hashed.
//!
//! Errors name the file, line and field and list the valid values. The sweep id is a hash of
//! the canonical manifest (defaults filled in), so submitting the same manifest twice is
//! idempotent; any change gives a new id (and the store gives it the next version of its name).

mod locate;
mod objective;
mod suggest;
mod types;

pub use types::*;

use ausweep_proto::job::{Backbone, FoldsSpec, TrainSpec, Unfreeze};
use ausweep_proto::JobSpec;
use sha2::{Digest, Sha256};
use std::fmt;

/// A manifest that does not parse or validate: where and what, with the valid choices.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ManifestError {
    /// The file name (or `<input>`).
    pub file: String,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// Dotted field path, e.g. `stages[1].epochs`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What would be valid (and the likely intended word).
    pub hint: Option<String>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(
                f,
                "{}:{}: field `{}`: {}",
                self.file, l, self.field, self.message
            )?,
            None => write!(f, "{}: field `{}`: {}", self.file, self.field, self.message)?,
        }
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Largest manifest accepted by default, bytes (`ausweep coordinator --max-manifest-kib` and
/// `ausweep submit --max-manifest-kib` change it).
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// A parsed, validated manifest with its canonical hash.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The manifest, defaults filled in.
    pub manifest: Manifest,
    /// Canonical JSON of `manifest` (what the id hashes).
    pub canonical: String,
    /// The sweep id: the first 16 hex digits of sha256(canonical).
    pub sweep_id: String,
}

/// Parses and validates manifest text of at most [`MAX_MANIFEST_BYTES`]; `file` names it in
/// errors.
pub fn parse(text: &str, file: &str) -> Result<Parsed, ManifestError> {
    parse_limited(text, file, MAX_MANIFEST_BYTES)
}

/// [`parse`] with another size limit, bytes.
pub fn parse_limited(text: &str, file: &str, max_bytes: usize) -> Result<Parsed, ManifestError> {
    let err = |field: &str, message: String, hint: Option<String>| ManifestError {
        file: file.to_string(),
        line: locate::line_of(text, field),
        field: field.to_string(),
        message,
        hint,
    };
    if text.len() > max_bytes {
        return Err(err(
            "(top level)",
            format!("manifest is {} bytes, the limit is {max_bytes}", text.len()),
            Some(
                "`--max-manifest-kib` on `ausweep submit` and `ausweep coordinator` raises it"
                    .into(),
            ),
        ));
    }
    ausweep_proto::yaml::check_bounded(text).map_err(|e| ManifestError {
        file: file.to_string(),
        line: e.line,
        field: "(top level)".to_string(),
        message: format!(
            "YAML aliases expand the manifest past {} nodes; refused (an alias bomb?)",
            e.limit
        ),
        hint: None,
    })?;
    let de = serde_yaml::Deserializer::from_str(text);
    let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "(top level)".to_string()
        } else {
            path
        };
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let message = strip_location(&inner.to_string())
            .trim_start_matches(&format!("{field}: "))
            .to_string();
        let hint = suggest::from_serde_message(&message).map(|(word, valid)| {
            let list = valid.join(", ");
            match suggest::closest(&word, valid.iter().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`? valid: {list}"),
                None => format!("valid: {list}"),
            }
        });
        ManifestError {
            file: file.to_string(),
            line: line.or_else(|| locate::line_of(text, &field)),
            field,
            message,
            hint,
        }
    })?;
    let mut manifest = manifest;
    objective::default_intensity_aus(&mut manifest, text);
    validate(&manifest).map_err(|(field, message, hint)| err(&field, message, hint))?;
    let canonical =
        serde_json::to_string(&manifest).map_err(|e| err("(top level)", e.to_string(), None))?;
    let sweep_id = hex::encode(&Sha256::digest(canonical.as_bytes())[..8]);
    Ok(Parsed {
        manifest,
        canonical,
        sweep_id,
    })
}

/// Parses a canonical manifest stored earlier (already validated).
pub fn from_canonical(json: &str) -> Result<Manifest, serde_json::Error> {
    serde_json::from_str(json)
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

type Invalid = (String, String, Option<String>);

fn bad(
    field: impl Into<String>,
    message: impl Into<String>,
    hint: Option<&str>,
) -> Result<(), Invalid> {
    Err((field.into(), message.into(), hint.map(str::to_string)))
}

// Long function: one check per manifest field in the order errors are reported; each is a few
// lines.
fn validate(m: &Manifest) -> Result<(), Invalid> {
    let name_ok = !m.name.is_empty()
        && m.name.len() <= 64
        && m.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return bad(
            "name",
            format!("`{}` is not a valid sweep name", m.name),
            Some("1-64 letters, digits, `-`, `_`, `.`"),
        );
    }
    {
        use ausweep_proto::job::Objective;
        match (m.objective, m.loss.objective()) {
            (Objective::Intensity, Objective::Occurrence) => {
                return bad(
                    "loss",
                    format!(
                        "`{}` is an occurrence loss; `objective: intensity` trains with `mse` or \
                         `weighted_mse`",
                        m.loss.name()
                    ),
                    Some("loss: mse (docs/intensity.md)"),
                )
            }
            (Objective::Occurrence, Objective::Intensity) => {
                return bad(
                    "loss",
                    format!(
                        "`{}` trains AU intensity; add `objective: intensity`",
                        m.loss.name()
                    ),
                    Some("objective: intensity (docs/intensity.md)"),
                )
            }
            _ => {}
        }
    }
    if m.backbones.is_empty() {
        return bad(
            "backbones",
            "list at least one backbone",
            Some(&format!("valid: {}", Backbone::names())),
        );
    }
    for (i, b) in m.backbones.iter().enumerate() {
        if m.backbones[..i].contains(b) {
            return bad(
                format!("backbones[{i}]"),
                format!("`{b}` is listed twice"),
                None,
            );
        }
    }
    if let Some(b) = m.backbone_weights.keys().find(|b| !m.backbones.contains(b)) {
        return bad(
            format!("backbone_weights.{b}"),
            format!("`{b}` is not in `backbones`"),
            Some("give weights only for the backbones the sweep trains"),
        );
    }
    let k = match &m.dataset.folds {
        FoldsSpec::Disfa3Fold => 3,
        FoldsSpec::Kfold { k, .. } => *k,
    };
    if !(2..=20).contains(&k) {
        return bad(
            "dataset.folds",
            format!("fold count must be 2-20, got {k}"),
            Some("disfa-3fold, or {kfold: {k: 5}}"),
        );
    }
    if let Some(run) = &m.run_folds {
        if run.is_empty() {
            return bad(
                "run_folds",
                "list at least one fold, or leave it out to run all",
                None,
            );
        }
        for (i, f) in run.iter().enumerate() {
            if *f == 0 || *f > k {
                return bad(
                    format!("run_folds[{i}]"),
                    format!("fold {f} does not exist"),
                    Some(&format!("valid: 1-{k}")),
                );
            }
        }
    }
    if m.stages.is_empty() || m.stages.len() > 2 {
        return bad(
            "stages",
            format!("give 1 or 2 stages, got {}", m.stages.len()),
            Some("stage 1 trains the head on a frozen backbone, stage 2 fine-tunes"),
        );
    }
    for (i, s) in m.stages.iter().enumerate() {
        let f = |x: &str| format!("stages[{i}].{x}");
        match (i, &s.freeze) {
            (0, Freeze::Backbone) => {}
            (0, _) => {
                return bad(
                    f("freeze"),
                    "stage 1 trains the head on a frozen backbone",
                    Some("valid for stage 1: backbone"),
                )
            }
            (_, Freeze::Backbone) => {
                return bad(
                    f("freeze"),
                    "stage 2 fine-tunes, it cannot freeze the whole backbone",
                    Some("valid for stage 2: none, {train_last: N}"),
                )
            }
            (_, Freeze::TrainLast(0)) => {
                return bad(f("freeze.train_last"), "must be at least 1 block", None)
            }
            _ => {}
        }
        if s.epochs == 0 {
            return bad(f("epochs"), "must be at least 1", None);
        }
        if s.early_stopping > s.epochs {
            return bad(
                f("early_stopping"),
                format!(
                    "patience {} exceeds the {} epochs",
                    s.early_stopping, s.epochs
                ),
                Some("0 disables early stopping"),
            );
        }
        for (name, v) in [
            ("lr", Some(s.optimizer.lr)),
            ("backbone_lr", s.optimizer.backbone_lr),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0 && v < 1.0) {
                    return bad(
                        f(&format!("optimizer.{name}")),
                        format!("must be in (0, 1), got {v}"),
                        None,
                    );
                }
            }
        }
        if !(s.optimizer.weight_decay.is_finite() && s.optimizer.weight_decay >= 0.0) {
            return bad(f("optimizer.weight_decay"), "must be >= 0", None);
        }
    }
    if m.batch_size < 2 {
        return bad(
            "batch_size",
            format!(
                "must be at least 2 (BatchNorm needs it), got {}",
                m.batch_size
            ),
            None,
        );
    }
    if m.retries > 10 {
        return bad("retries", format!("at most 10, got {}", m.retries), None);
    }
    if m.lost_retries == 0 || m.lost_retries > 1000 {
        return bad(
            "lost_retries",
            format!("between 1 and 1000, got {}", m.lost_retries),
            None,
        );
    }
    if let Some(mem) = m.resources.min_gpu_memory_mib {
        if m.resources.device == DeviceReq::Cpu && mem > 0 {
            return bad(
                "resources.min_gpu_memory_mib",
                "a CPU job needs no GPU memory",
                Some("device: cuda or any"),
            );
        }
    }
    for (i, b) in m.baselines.iter().enumerate() {
        if b.is_empty()
            || !b
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return bad(
                format!("baselines[{i}]"),
                format!("`{b}` is not a baseline name"),
                Some("letters, digits, `-`, `_` as in experiments/baselines.yaml"),
            );
        }
    }
    for (axis, values) in &m.grid {
        let field = format!("grid.{axis}");
        if values.is_empty() {
            return bad(field, "an axis needs at least one value", None);
        }
        if GRID_FORBIDDEN.contains(&axis.as_str()) {
            return bad(
                field,
                format!("`{axis}` is set by the plan, not a grid axis"),
                Some("use backbones, run_folds or stages instead"),
            );
        }
    }
    if grid_points(m).len() > MAX_GRID_POINTS {
        return bad(
            "grid",
            format!("more than {MAX_GRID_POINTS} grid points"),
            None,
        );
    }
    // The backstop: every job the manifest expands to must be a valid job spec.
    for g in grid_points(m) {
        for stage in 1..=m.stages.len() as u8 {
            let spec =
                job_spec(m, m.backbones[0], 1, stage, &g).map_err(|(f, msg)| (f, msg, None))?;
            let mut check = spec.clone();
            if stage == 2 {
                check.init_checkpoint = Some("stage1.safetensors".into());
            }
            if let Err(e) = check.validate("manifest") {
                let (jf, msg) = match e {
                    ausweep_proto::JobError::Invalid { field, message, .. }
                    | ausweep_proto::JobError::Parse { field, message, .. } => (field, message),
                    ausweep_proto::JobError::Io { path, source } => (path, source.to_string()),
                };
                return bad(manifest_field(&jf, stage, &g), msg, None);
            }
        }
    }
    Ok(())
}

/// Axes the plan sets itself.
const GRID_FORBIDDEN: [&str; 5] = ["backbone", "stage", "fold", "init_checkpoint", "name"];
/// Most grid points one sweep may expand to.
pub const MAX_GRID_POINTS: usize = 1000;

/// Maps a JobSpec field back to the manifest field that sets it.
fn manifest_field(job_field: &str, stage: u8, grid: &GridPoint) -> String {
    if grid
        .values
        .iter()
        .any(|(k, _)| job_field.starts_with(k.as_str()))
    {
        return format!("grid.{job_field}");
    }
    let s = stage as usize - 1;
    if let Some(rest) = job_field.strip_prefix("data.") {
        return format!("dataset.{rest}");
    }
    match job_field {
        "train.epochs" => format!("stages[{s}].epochs"),
        "train.lr" | "train.backbone_lr" | "train.weight_decay" => {
            format!("stages[{s}].optimizer.{}", &job_field[6..])
        }
        "train.batch_size" => "batch_size".into(),
        other => other.to_string(),
    }
}

/// One point of the grid: axis path → value, plus a short stable label.
#[derive(Debug, Clone, PartialEq)]
pub struct GridPoint {
    /// Index in the grid's expansion order (0 when there is no grid).
    pub index: usize,
    /// Axis path and value, in axis order.
    pub values: Vec<(String, serde_json::Value)>,
}

impl GridPoint {
    /// A readable label, e.g. `train.lr=0.001,seed=1` (empty without a grid).
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Every grid point of a manifest (one, empty, when there is no grid).
pub fn grid_points(m: &Manifest) -> Vec<GridPoint> {
    let mut points = vec![Vec::new()];
    for (axis, values) in &m.grid {
        let mut next = Vec::with_capacity(points.len() * values.len());
        for p in &points {
            for v in values {
                let mut q: Vec<(String, serde_json::Value)> = p.clone();
                q.push((axis.clone(), v.clone()));
                next.push(q);
            }
            if next.len() > MAX_GRID_POINTS {
                break;
            }
        }
        points = next;
    }
    points
        .into_iter()
        .enumerate()
        .map(|(index, values)| GridPoint { index, values })
        .collect()
}

/// The folds a manifest runs, 1-based.
pub fn folds(m: &Manifest) -> Vec<u32> {
    let k = match &m.dataset.folds {
        FoldsSpec::Disfa3Fold => 3,
        FoldsSpec::Kfold { k, .. } => *k,
    };
    m.run_folds.clone().unwrap_or_else(|| (1..=k).collect())
}

/// The job spec of one (backbone, fold, stage, grid point); stage 2 has no init checkpoint.
/// Errors are (manifest field, message).
pub fn job_spec(
    m: &Manifest,
    backbone: Backbone,
    fold: u32,
    stage: u8,
    grid: &GridPoint,
) -> Result<JobSpec, (String, String)> {
    let st = &m.stages[stage as usize - 1];
    let unfreeze = match st.freeze {
        Freeze::TrainLast(n) => Unfreeze::Last(n),
        _ => Unfreeze::All,
    };
    let defaults = TrainSpec::default();
    let spec = JobSpec {
        name: format!(
            "{}/{}/fold{}/stage{}{}",
            m.name,
            backbone,
            fold,
            stage,
            if grid.values.is_empty() {
                String::new()
            } else {
                format!("/g{}", grid.index)
            }
        ),
        backbone,
        weights: m
            .backbone_weights
            .get(&backbone)
            .unwrap_or(&m.weights)
            .clone(),
        stage,
        init_checkpoint: None,
        fold,
        data: m.dataset.clone(),
        train: TrainSpec {
            epochs: st.epochs,
            batch_size: m.batch_size,
            lr: st.optimizer.lr,
            backbone_lr: st.optimizer.backbone_lr.unwrap_or(defaults.backbone_lr),
            weight_decay: st.optimizer.weight_decay,
            unfreeze,
            early_stopping: st.early_stopping,
            cache_features: m.cache_features,
            max_steps_per_epoch: m.max_steps_per_epoch,
            // The models a lab exports are the last stage's: earlier stages skip the int8 pass.
            score_int8: usize::from(stage) == m.stages.len(),
        },
        loss: m.loss,
        objective: m.objective,
        augment: m.augment.clone(),
        thresholds: m.thresholds,
        seed: m.seed,
        amp: m.amp,
        task: ausweep_proto::job::Task::Train,
    };
    if grid.values.is_empty() {
        return Ok(spec);
    }
    let mut doc =
        serde_json::to_value(&spec).map_err(|e| ("(top level)".to_string(), e.to_string()))?;
    // Occurrence stays out of a job's YAML (so older digests hold); a grid may still set it.
    if let Some(obj) = doc.as_object_mut() {
        obj.entry("objective")
            .or_insert_with(|| serde_json::json!(spec.objective));
    }
    for (axis, value) in &grid.values {
        set_path(&mut doc, axis, value.clone()).map_err(|msg| (format!("grid.{axis}"), msg))?;
    }
    let mut spec: JobSpec = serde_path_to_error::deserialize(doc)
        .map_err(|e| (format!("grid.{}", e.path()), e.inner().to_string()))?;
    objective::loss_follows_objective(grid, &mut spec);
    Ok(spec)
}

fn set_path(
    doc: &mut serde_json::Value,
    path: &str,
    value: serde_json::Value,
) -> Result<(), String> {
    let mut cur = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let obj = cur
            .as_object_mut()
            .ok_or_else(|| format!("`{}` is not a section", parts[..i].join(".")))?;
        if !obj.contains_key(*part) {
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            let hint = match suggest::closest(part, keys.iter().copied()) {
                Some(c) => format!("; did you mean `{c}`?"),
                None => String::new(),
            };
            return Err(format!(
                "unknown job field `{part}`{hint} valid here: {}",
                keys.join(", ")
            ));
        }
        if i + 1 == parts.len() {
            obj.insert((*part).to_string(), value);
            return Ok(());
        }
        cur = obj.get_mut(*part).ok_or("unreachable")?;
    }
    Err("empty axis".into())
}

#[cfg(test)]
mod tests;
