//! What a manifest's objective implies beyond itself: the AUs an intensity sweep on DISFA trains
//! by default, and the loss of each point of a grid over `objective`.

use super::{GridPoint, Manifest};
use ausweep_proto::job::JobSpec;

/// DISFA's own intensity task is its 12 labelled AUs: a manifest with `objective: intensity` on
/// DISFA that lists no `dataset.aus` trains them all (occurrence keeps the paper's 8; the
/// synthetic set labels 8). Written into the manifest, so the canonical form and the sweep id
/// say which AUs run.
pub(super) fn default_intensity_aus(m: &mut Manifest, text: &str) {
    use ausweep_proto::job::{DataSource, Objective, DISFA_LABELLED_AUS};
    let listed = serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|v| v.get("dataset").map(|d| d.get("aus").is_some()))
        .unwrap_or(true);
    let disfa = matches!(
        m.dataset.source,
        DataSource::Disfa { .. } | DataSource::DisfaVideos { .. }
    );
    if !listed && disfa && m.objective == Objective::Intensity {
        m.dataset.aus = DISFA_LABELLED_AUS.to_vec();
    }
}

/// A grid over `objective` that leaves `loss` alone gives each point a loss of its objective:
/// the manifest's when it fits, else `mse` for intensity and `lsep` for occurrence.
pub(super) fn loss_follows_objective(grid: &GridPoint, spec: &mut JobSpec) {
    use ausweep_proto::job::{LossKind, Objective};
    let sets = |axis: &str| grid.values.iter().any(|(a, _)| a == axis);
    if sets("objective") && !sets("loss") && spec.loss.objective() != spec.objective {
        spec.loss = match spec.objective {
            Objective::Intensity => LossKind::Mse,
            Objective::Occurrence => LossKind::Lsep,
        };
    }
}
