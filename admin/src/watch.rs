//! `ausweep watch`: one live progress bar per job of a sweep, fed by the Watch stream.

use crate::views::{self, Output};
use ausweep_coordinator::client;
use ausweep_proto::v1;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How often the live views re-read the sweep for pending reasons and dependency states.
pub const REFRESH: Duration = Duration::from_secs(2);

/// `ausweep watch`: follows the sweep until every job has finished, as bars on stderr or, with
/// `--output json|jsonl`, as one JSON object per event on stdout (pending reasons included
/// whenever they change).
pub async fn follow(
    admin: &mut client::Admin,
    sweep: &str,
    status: v1::SweepStatus,
    output: Output,
) -> Result<(), tonic::Status> {
    let mut bars = if output.is_json() {
        Bars::with_target(&status, ProgressDrawTarget::hidden())
    } else {
        Bars::new(&status)
    };
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    let mut print_reasons = |st: &v1::SweepStatus| {
        for j in st
            .jobs
            .iter()
            .filter(|j| j.state == v1::JobState::Pending as i32)
        {
            if reasons.get(&j.job_id) != Some(&j.pending_reason) {
                reasons.insert(j.job_id.clone(), j.pending_reason.clone());
                if output.is_json() {
                    println!("{}", views::reason(j));
                }
            }
        }
    };
    print_reasons(&status);
    let mut events = admin
        .watch(v1::WatchRequest {
            sweep_id: sweep.into(),
        })
        .await?
        .into_inner();
    // Jobs whose end was printed (or had ended before the watch began).
    let mut ended: BTreeSet<String> = status
        .jobs
        .iter()
        .filter(|j| is_terminal(j.state))
        .map(|j| j.job_id.clone())
        .collect();
    let mut last = status;
    let mut tick = tokio::time::interval(REFRESH);
    while !bars.all_finished() {
        tokio::select! {
            e = events.message() => {
                let Some(e) = e? else { break };
                bars.apply(&e);
                if output.is_json() {
                    println!("{}", views::event(&e));
                }
                if e.progress.is_none() && is_terminal(e.state) {
                    ended.insert(e.job_id.clone());
                }
            }
            _ = tick.tick() => {
                let st = admin
                    .get_sweep(v1::GetSweepRequest { sweep_id: sweep.into() })
                    .await?
                    .into_inner();
                bars.refresh(&st);
                print_reasons(&st);
                last = st;
            }
        }
    }
    // A refresh can see the last jobs end before their events arrive: print those ends from it,
    // so a JSON stream always ends with every job's final state.
    if output.is_json() {
        for j in last
            .jobs
            .iter()
            .filter(|j| is_terminal(j.state) && !ended.contains(&j.job_id))
        {
            let message = if j.state == v1::JobState::Succeeded as i32 {
                "succeeded".to_string()
            } else {
                j.last_error.clone()
            };
            println!(
                "{}",
                views::event(&v1::JobEvent {
                    sweep_id: sweep.into(),
                    job_id: j.job_id.clone(),
                    state: j.state,
                    attempt: j.attempt,
                    progress: None,
                    message,
                })
            );
        }
    }
    Ok(())
}

fn is_terminal(state: i32) -> bool {
    [
        v1::JobState::Succeeded,
        v1::JobState::Failed,
        v1::JobState::Cancelled,
    ]
    .iter()
    .any(|s| *s as i32 == state)
}

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
        let word = crate::views::state_shown(state);
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

    /// Brings every job that is not running with progress up to `status` (a fresh GetSweep):
    /// pending reasons and the dependency states they name change without a job event, so
    /// the live views call this periodically.
    pub fn refresh(&mut self, status: &v1::SweepStatus) {
        for j in &status.jobs {
            let b = self.bar(&j.job_id, u64::from(j.epochs.max(1)));
            let live =
                j.state == v1::JobState::Leased as i32 && b.message().starts_with("running  step");
            if live {
                continue; // progress events keep this line current
            }
            if let Some(p) = &j.progress {
                b.set_position(u64::from(p.epoch));
            }
            self.set_state(&j.job_id, j.state, j.attempt, &j.pending_reason);
        }
    }

    /// The view as plain text: one line per job, as the bars draw it (for logs and docs).
    pub fn render(&self) -> String {
        self.bars
            .iter()
            .map(|(id, b)| {
                let len = b.length().unwrap_or(0).max(1);
                let filled = (b.position().min(len) * 24 / len) as usize;
                let bar: String = (0..24)
                    .map(|i| match i.cmp(&filled) {
                        std::cmp::Ordering::Less => '=',
                        std::cmp::Ordering::Equal => '>',
                        std::cmp::Ordering::Greater => ' ',
                    })
                    .collect();
                format!(
                    "{:<28} [{bar}] {:>3}/{:<3} epochs  {}\n",
                    short(id),
                    b.position(),
                    len,
                    b.message()
                )
            })
            .collect()
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
