//! How well a prepared dataset is aligned, measured against ground-truth eye positions (the
//! synthetic videos' `Landmarks/SNxxx_<camera>.csv`): each frame's true eyes mapped through the
//! transform fitted to its prepared landmarks, against where the template puts the eyes.

use super::{PrepareError, Template};
use std::collections::BTreeMap;
use std::path::Path;

/// `frame → N points` from a CSV whose columns `first..first + 2N` hold x, y pairs (first column
/// the frame number, one header line).
fn read_points<const N: usize>(
    path: &Path,
    first: usize,
) -> Result<BTreeMap<u32, [[f64; 2]; N]>, PrepareError> {
    let text = std::fs::read_to_string(path).map_err(|e| PrepareError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let v: Vec<&str> = line.split(',').collect();
        let num = |c: usize| -> Result<f64, PrepareError> {
            v.get(c).and_then(|s| s.trim().parse().ok()).ok_or_else(|| {
                PrepareError::Config(format!(
                    "{} line {}: column {} is not a number",
                    path.display(),
                    i + 1,
                    c + 1
                ))
            })
        };
        let frame = num(0)? as u32;
        let mut pts = [[0.0; 2]; N];
        for (k, p) in pts.iter_mut().enumerate() {
            *p = [num(first + 2 * k)?, num(first + 2 * k + 1)?];
        }
        out.insert(frame, pts);
    }
    Ok(out)
}

/// Eye errors (two per frame, pixels of a `size`-pixel crop) of subject `subject` prepared in
/// `dir` with `template`, against the truth in `truth_csv`.
pub fn eye_errors(
    dir: &Path,
    subject: &str,
    truth_csv: &Path,
    template: Template,
    size: u32,
) -> Result<Vec<f64>, PrepareError> {
    let found = read_points::<5>(&dir.join(format!("frames/{subject}.csv")), 3)?;
    let truth = read_points::<2>(truth_csv, 1)?;
    let mut errors = Vec::with_capacity(2 * found.len());
    for (frame, f) in &found {
        let Some(t) = truth.get(frame) else {
            return Err(PrepareError::Config(format!(
                "{}: no frame {frame}",
                truth_csv.display()
            )));
        };
        let marks = f.map(|p| [p[0] as f32, p[1] as f32]);
        let fit = template.fit(&marks, size);
        // Both templates list the eyes first.
        for (k, (_, want)) in template.points().into_iter().take(2).enumerate() {
            let got = fit.apply(t[k]);
            let want = [
                want[0] * f64::from(size) - 0.5,
                want[1] * f64::from(size) - 0.5,
            ];
            errors.push((got[0] - want[0]).hypot(got[1] - want[1]));
        }
    }
    Ok(errors)
}

/// Median, 95th percentile and share within `limit` pixels of some errors.
pub fn summary(errors: &mut [f64], limit: f64) -> (f64, f64, f64) {
    if errors.is_empty() {
        return (f64::NAN, f64::NAN, 0.0);
    }
    errors.sort_by(f64::total_cmp);
    let n = errors.len();
    let within = errors.iter().filter(|&&e| e <= limit).count() as f64 / n as f64;
    (errors[n / 2], errors[(n * 95 / 100).min(n - 1)], within)
}
