//! `ausweep watch`: one live progress bar per job of a sweep, fed by the Watch stream.

use ausweep_proto::v1;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;

/// Live bars for the jobs of one sweep.
pub struct Bars {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    style: ProgressStyle,
}

/// The job id without its sweep prefix.
fn short(job_id: &str) -> &str {
    job_id.split_once('.').map_or(job_id, |(_, k)| k)
}

fn state_word(s: i32) -> &'static str {
    match v1::JobState::try_from(s).unwrap_or(v1::JobState::Unspecified) {
        v1::JobState::Pending => "pending",
        v1::JobState::Leased => "running",
        v1::JobState::Succeeded => "done",
        v1::JobState::Failed => "FAILED",
        v1::JobState::Cancelled => "cancelled",
        _ => "?",
    }
}

impl Bars {
    /// Bars for every job of `status`, drawn to stderr (hidden when it is not a terminal).
    pub fn new(status: &v1::SweepStatus) -> Self {
        Self::with_target(status, ProgressDrawTarget::stderr())
    }

    /// Bars drawn to `target` (tests use a hidden one).
    pub fn with_target(status: &v1::SweepStatus, target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let style =
            ProgressStyle::with_template("{prefix:<28} [{bar:24}] {pos:>3}/{len:3} epochs  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let mut me = Bars {
            multi,
            bars: BTreeMap::new(),
            style,
        };
        for j in &status.jobs {
            let b = me.bar(&j.job_id, u64::from(j.epochs.max(1)));
            if let Some(p) = &j.progress {
                b.set_position(u64::from(p.epoch));
            }
            me.set_state(&j.job_id, j.state, j.attempt, &j.pending_reason);
        }
        me
    }

    fn bar(&mut self, job_id: &str, len: u64) -> ProgressBar {
        if let Some(b) = self.bars.get(job_id) {
            return b.clone();
        }
        let b = self.multi.add(ProgressBar::new(len));
        b.set_style(self.style.clone());
        b.set_prefix(short(job_id).to_string());
        self.bars.insert(job_id.to_string(), b.clone());
        b
    }

    fn set_state(&mut self, job_id: &str, state: i32, attempt: u32, note: &str) {
        let b = self.bar(job_id, 1);
        let word = state_word(state);
        let msg = if note.is_empty() {
            format!("{word} (attempt {attempt})")
        } else {
            format!("{word} (attempt {attempt}): {note}")
        };
        b.set_message(msg);
        if state == v1::JobState::Succeeded as i32 {
            b.set_position(b.length().unwrap_or(0));
            b.finish();
        }
    }

    /// Applies one event of the Watch stream.
    pub fn apply(&mut self, e: &v1::JobEvent) {
        match &e.progress {
            Some(p) => {
                let b = self.bar(&e.job_id, u64::from(p.epoch.max(1)));
                if b.length().is_some_and(|l| u64::from(p.epoch) > l) {
                    b.set_length(u64::from(p.epoch));
                }
                b.set_position(u64::from(p.epoch));
                b.set_message(format!(
                    "running  step {:>6}  loss {:.4}  {:.0} img/s",
                    p.step, p.loss, p.images_per_sec
                ));
            }
            None => self.set_state(&e.job_id, e.state, e.attempt, &e.message),
        }
    }

    /// (position, length, message) of a job's bar.
    pub fn snapshot(&self, job_id: &str) -> Option<(u64, u64, String)> {
        self.bars
            .get(job_id)
            .map(|b| (b.position(), b.length().unwrap_or(0), b.message()))
    }

    /// Whether every job has finished one way or another.
    pub fn all_finished(&self) -> bool {
        self.bars.values().all(|b| {
            let m = b.message();
            m.starts_with("done") || m.starts_with("FAILED") || m.starts_with("cancelled")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: v1::JobState, epochs: u32) -> v1::JobStatus {
        v1::JobStatus {
            job_id: id.into(),
            state: state as i32,
            epochs,
            attempt: 1,
            ..Default::default()
        }
    }

    #[test]
    fn bars_follow_progress_and_states() {
        let status = v1::SweepStatus {
            jobs: vec![
                job("s.mobilenet_v2.f1.s1.g0", v1::JobState::Leased, 5),
                job("s.mobilenet_v2.f1.s2.g0", v1::JobState::Pending, 3),
            ],
            ..Default::default()
        };
        let mut bars = Bars::with_target(&status, ProgressDrawTarget::hidden());
        bars.apply(&v1::JobEvent {
            job_id: "s.mobilenet_v2.f1.s1.g0".into(),
            progress: Some(v1::Progress {
                epoch: 2,
                step: 40,
                loss: 0.25,
                images_per_sec: 100.0,
                ..Default::default()
            }),
            ..Default::default()
        });
        let (pos, len, msg) = bars.snapshot("s.mobilenet_v2.f1.s1.g0").unwrap();
        assert_eq!((pos, len), (2, 5));
        assert!(msg.contains("loss 0.2500"), "{msg}");
        assert!(!bars.all_finished());
        for id in ["s.mobilenet_v2.f1.s1.g0", "s.mobilenet_v2.f1.s2.g0"] {
            bars.apply(&v1::JobEvent {
                job_id: id.into(),
                state: v1::JobState::Succeeded as i32,
                attempt: 1,
                ..Default::default()
            });
        }
        assert_eq!(bars.snapshot("s.mobilenet_v2.f1.s2.g0").unwrap().0, 3);
        assert!(bars.all_finished());
    }
}
