//! Workers from a real Slurm: a throwaway single-node cluster (Debian's slurmctld/slurmd and
//! munge, `scripts/slurm-cluster.sh`, private ports and socket) runs the shipped sbatch recipe,
//! changed only through its documented variables and sbatch's command line, against a real
//! coordinator. `scancel --signal=TERM` drains the agent at a checkpoint and the job resumes
//! from it on another allocation; a hard kill (SIGKILL to the step) loses at most the epoch in
//! flight; two allocations share the node; afterwards nothing is left in `squeue`.

mod common;

use ausweep_proto::v1;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Lease length of the test coordinator: a hard-killed worker's job comes back after this.
const LEASE: u64 = 4000;

fn sweep() -> String {
    "name: slurm
dataset:
  source: {kind: synthetic, subjects: 27, frames: 24, seed: 5}
  aus: [1, 2, 4, 6, 9, 12, 25, 26]
  folds: !kfold {k: 3, seed: 0}
  input_size: 40
  val_subjects: 1
run_folds: [1, 2]
backbones: [mobilenet_v2]
weights: none
loss: lsep
augment: {flip: 0.0}
stages:
  - freeze: backbone
    optimizer: {lr: 3.0e-3}
    epochs: 2
  - freeze: none
    optimizer: {lr: 1.0e-3, backbone_lr: 1.0e-3}
    epochs: 8
batch_size: 16
seed: 0
resources:
  device: cpu
retries: 0
"
    .to_string()
}

/// The cluster; stopped (daemons killed) on drop.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let out = Command::new("bash")
            .arg(ausweep_testkit::repo().join("scripts/slurm-cluster.sh"))
            .arg("start")
            .arg(dir)
            .arg("2")
            .output()
            .expect("running scripts/slurm-cluster.sh");
        assert!(
            out.status.success(),
            "the Slurm cluster did not start (make setup installs Slurm and munge): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster {
            dir: dir.to_path_buf(),
            conf: dir.join("slurm.conf"),
        }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Runs a Slurm client command; its stdout, or a failure naming it.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let o = self.cmd(program).args(args).output().expect(program);
        assert!(
            o.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Submits the shipped recipe as a CPU allocation; returns the Slurm job id.
    fn sbatch(&self, url: &str, token: &Path, work: &Path, log: &Path) -> String {
        let recipe = ausweep_testkit::repo().join("experiments/deploy/slurm-worker.sbatch");
        let o = self
            .cmd("sbatch")
            .args(["--parsable", "--gres=none", "--cpus-per-task=1", "--mem=2G"])
            .arg(format!("--output={}", log.display()))
            .arg(&recipe)
            .env("AUSWEEP_COORDINATOR", url)
            .env("AUSWEEP_JOIN_TOKEN_FILE", token)
            .env("AUSWEEP_BIN", bin())
            .env("AUSWEEP_WORK_DIR", work)
            .env("AUSWEEP_WORKER_ARGS", "--allow-cpu --max-jobs 1")
            .env("OMP_NUM_THREADS", "1")
            .output()
            .expect("sbatch");
        assert!(
            o.status.success(),
            "sbatch: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Waits (up to `secs`) until `squeue -o %i` with `args` satisfies `done`; fails with what
    /// it last saw and `ctx`.
    fn wait_queue(
        &self,
        what: &str,
        secs: u64,
        args: &[&str],
        done: impl Fn(&[String]) -> bool,
        ctx: impl Fn() -> String,
    ) {
        ausweep_testkit::wait::until_blocking(
            what,
            Duration::from_secs(secs),
            Duration::from_millis(200),
            || {
                let mut a = vec!["-h", "-o", "%i"];
                a.extend_from_slice(args);
                let q: Vec<String> = self.run("squeue", &a).lines().map(str::to_string).collect();
                if done(&q) {
                    ausweep_testkit::wait::Seen::Done(())
                } else {
                    ausweep_testkit::wait::Seen::Not(format!("squeue {q:?}\n{}", ctx()))
                }
            },
        );
    }

    /// Slurm job ids still queued or running.
    fn queue(&self) -> Vec<String> {
        self.run("squeue", &["-h", "-o", "%i"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd("scancel").arg("--user=root").output();
        let _ = Command::new("bash")
            .arg(ausweep_testkit::repo().join("scripts/slurm-cluster.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// A child process killed when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn job(st: &v1::SweepStatus, stage: u32, fold: u32) -> &v1::JobStatus {
    st.jobs
        .iter()
        .find(|j| j.stage == stage && j.fold == fold)
        .expect("job of the sweep")
}

fn epoch(j: &v1::JobStatus) -> u32 {
    j.progress.as_ref().map_or(0, |p| p.epoch)
}

/// Waits (up to `secs`) until `fold`'s stage 2 runs with at least one epoch done and stored,
/// before `below`.
async fn stage2_running(
    admin: &mut ausweep_coordinator::client::Admin,
    id: &str,
    fold: u32,
    below: u32,
    secs: u64,
) -> v1::SweepStatus {
    let what = format!("fold {fold} stage 2 past its first epoch, with its checkpoint stored");
    wait_sweep(admin, id, Duration::from_secs(secs), &what, &[], |st| {
        let j = job(st, 2, fold);
        // The epoch is reported before its checkpoint is uploaded: wait for the stored one.
        j.state() == v1::JobState::Leased
            && epoch(j) >= 1
            && epoch(j) < below
            && !j.newest_checkpoint_sha256.is_empty()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_from_slurm_drain_resume_and_survive_a_hard_kill() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let cluster = Cluster::start(&r.join("slurm"));
    let coord = start_coordinator(&r.join("coord"), LEASE);
    let token = r.join("join-token");
    std::fs::write(&token, JOIN).unwrap();
    let url = coord.url();
    let mut admin = coord.admin().await;
    let id = submit(&mut admin, sweep()).await;
    let logs_of = |n: u32| r.join(format!("alloc-{n}.log"));
    let ctx = |what: &str| {
        format!(
            "{what}\nsqueue: {:?}\nallocation logs:\n{}\n{}",
            cluster.queue(),
            read(&logs_of(1)),
            read(&logs_of(2))
        )
    };

    // 1. One allocation: sbatch to the first lease.
    let t = Instant::now();
    let a1 = cluster.sbatch(&url, &token, &r.join("w1"), &logs_of(1));
    wait_sweep(
        &mut admin,
        &id,
        Duration::from_secs(60),
        "a first lease",
        &[],
        |st| st.jobs.iter().any(|j| j.attempt >= 1),
    )
    .await;
    let to_lease = t.elapsed();

    // 2. scancel --signal=TERM while fold 1's stage 2 has checkpointed an epoch: the agent drains
    //    at a checkpoint and exits, and the allocation ends.
    let st = stage2_running(&mut admin, &id, 1, 6, 180).await;
    let before = epoch(job(&st, 2, 1));
    let t = Instant::now();
    cluster.run("scancel", &["--signal=TERM", &a1]);
    cluster.wait_queue(
        "the TERMed allocation to end",
        120,
        &[],
        |q| !q.contains(&a1),
        || ctx(""),
    );
    let term_to_exit = t.elapsed();
    let log1 = read(&logs_of(1));
    assert!(
        log1.contains("drain"),
        "the agent did not drain on TERM:\n{log1}"
    );
    let st = status(&mut admin, &id).await;
    let j = job(&st, 2, 1);
    assert_ne!(j.state(), v1::JobState::Failed, "{}", describe(&st));
    assert!(
        !j.newest_checkpoint_sha256.is_empty(),
        "drained without a checkpoint: {}",
        describe(&st)
    );

    // 3. Two allocations at once on the one node; the drained job resumes from its checkpoint.
    let a2 = cluster.sbatch(&url, &token, &r.join("w2"), &logs_of(2));
    let a3 = cluster.sbatch(&url, &token, &r.join("w3"), &logs_of(3));
    cluster.wait_queue(
        "two allocations running together",
        60,
        &["-t", "R"],
        |q| q.contains(&a2) && q.contains(&a3),
        || ctx(""),
    );

    // 4. Hard kill: SIGKILL to the step running fold 2's stage 2 once it has an epoch; its lease
    //    expires and the other allocation reruns it from the newest checkpoint.
    let st = stage2_running(&mut admin, &id, 2, 7, 240).await;
    let victim = job(&st, 2, 2).worker_id.clone();
    let (killed, survivor_log) = if victim.ends_with(&format!("-{a2}")) {
        (a2.clone(), logs_of(3))
    } else {
        (a3.clone(), logs_of(2))
    };
    let at_kill = epoch(job(&st, 2, 2));
    cluster.run("scancel", &["--signal=KILL", "--full", &killed]);
    cluster.run("scancel", &[&killed]);

    let st = wait_done(&coord, &id, Duration::from_secs(300), &[]).await;
    let s2f1 = job(&st, 2, 1);
    let s2f2 = job(&st, 2, 2);
    assert_eq!(s2f1.failures + s2f2.failures, 0, "{}", describe(&st));
    let survivor = read(&survivor_log);
    let resumed: Vec<u32> = format!("{}{}", read(&logs_of(2)), read(&logs_of(3)))
        .lines()
        .filter_map(|l| l.split("resumes from epoch ").nth(1))
        .filter_map(|e| e.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        resumed.len() >= 2,
        "both interrupted jobs should resume from a checkpoint, saw {resumed:?}:\n{survivor}"
    );
    let lost = at_kill.saturating_sub(*resumed.iter().max().unwrap_or(&0));
    assert!(
        lost <= 1,
        "the hard kill at epoch {at_kill} lost {lost} epochs (resumed from {resumed:?})"
    );

    // 5. Drain what is left: every allocation ends, nothing stays queued.
    for a in [&a2, &a3] {
        let _ = cluster.cmd("scancel").args(["--signal=TERM", a]).output();
    }
    cluster.wait_queue("an empty squeue", 120, &[], |q| q.is_empty(), || ctx(""));
    eprintln!(
        "slurm: sbatch to first lease {:.1} s; scancel --signal=TERM to drained exit {:.1} s \
         (TERM at epoch {before}); hard kill at epoch {at_kill}, resumed from {resumed:?}: {lost} epoch(s) lost",
        to_lease.as_secs_f64(),
        term_to_exit.as_secs_f64()
    );
}

/// `ausweep launch slurm` beside a coordinator with no worker at all. A sweep whose weights are
/// missing gets no allocation and the launcher says why; a good sweep gets allocations (never
/// more than the maximum), finishes, the idle workers exit and no allocation is left in `squeue`.
#[tokio::test(flavor = "multi_thread")]
// Long function: one scenario against a real Slurm, told in order.
async fn the_launcher_brings_workers_for_waiting_jobs_and_they_leave_when_idle() {
    let _serial = SERIAL.lock().await;
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let cluster = Cluster::start(&r.join("slurm"));
    let coord = start_coordinator(&r.join("coord"), LEASE);
    let token = r.join("join-token");
    std::fs::write(&token, JOIN).unwrap();
    let mut admin = coord.admin().await;
    let absent = r.join("absent.safetensors");
    let unrunnable = sweep().replace(
        "weights: none",
        &format!("weights: !file {}", absent.display()),
    );
    let bad = submit(&mut admin, unrunnable).await;
    let recipe = ausweep_testkit::repo().join("experiments/deploy/slurm-worker.sbatch");
    let log = r.join("launch.log");
    let mut launcher = KillOnDrop(
        Command::new(bin())
            .args([
                "launch",
                "slurm",
                "--max-allocations",
                "2",
                "--idle-exit-s",
                "3",
            ])
            .args([
                "--poll-s",
                "1",
                "--job-name",
                "ausweep-test-pool",
                "--weights",
            ])
            .arg(r)
            .arg("--recipe")
            .arg(&recipe)
            .arg(format!(
                "--sbatch-arg=--output={}/alloc-%j.log",
                r.display()
            ))
            .args([
                "--sbatch-arg=--gres=none",
                "--sbatch-arg=--cpus-per-task=1",
                "--sbatch-arg=--mem=2G",
            ])
            .env("SLURM_CONF", &cluster.conf)
            .env("AUSWEEP_COORDINATOR", coord.url())
            .env("AUSWEEP_ADMIN_TOKEN", ADMIN)
            .env("AUSWEEP_JOIN_TOKEN_FILE", &token)
            .env("AUSWEEP_BIN", bin())
            .env("AUSWEEP_WORKER_ARGS", "--allow-cpu --max-jobs 1")
            .env("AUSWEEP_WORK_ROOT", r)
            .env_remove("AUSWEEP_WORK_DIR")
            .env("OMP_NUM_THREADS", "1")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let why = format!("not submitting for 2 missing weights {}", absent.display());
    ausweep_testkit::wait::until_blocking(
        "the launcher to refuse the sweep without weights",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let text = read(&log);
            if text.contains(&why) {
                ausweep_testkit::wait::Seen::Done(())
            } else {
                ausweep_testkit::wait::Seen::Not(text)
            }
        },
    );
    let text = read(&log);
    assert!(
        !text.contains("submitted allocation") && cluster.queue().is_empty(),
        "an allocation for a sweep that cannot run:\n{text}"
    );
    admin
        .cancel(ausweep_proto::v1::CancelRequest { sweep_id: bad })
        .await
        .unwrap();
    let quick = sweep()
        .replace("epochs: 8", "epochs: 1")
        .replace("run_folds: [1, 2]", "run_folds: [1, 2, 3]");
    let id = submit(&mut admin, quick).await;
    let t = Instant::now();
    let st = wait_done(&coord, &id, Duration::from_secs(300), &[]).await;
    let finished = t.elapsed();
    assert!(all_succeeded(&st), "{}", describe(&st));
    cluster.wait_queue(
        "the idle workers to leave squeue empty",
        60,
        &[],
        |q| q.is_empty(),
        || read(&log),
    );
    let _ = Command::new("kill")
        .args(["-TERM", &launcher.0.id().to_string()])
        .status();
    let _ = launcher.0.wait();
    let text = read(&log);
    let submitted = text.matches("submitted allocation").count();
    assert!(
        (1..=6).contains(&submitted),
        "the launcher submitted {submitted} allocations:\n{text}"
    );
    let most_at_once = text
        .lines()
        .filter_map(|l| {
            l.split(" allocation(s) (max")
                .next()?
                .rsplit(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most_at_once <= 2,
        "more than 2 allocations at once:\n{text}"
    );
    // Each allocation's worker worked under the test's root (AUSWEEP_WORK_ROOT), none in /tmp.
    let work_dirs = std::fs::read_dir(r)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ausweep-worker-")
        })
        .count();
    assert!(
        (1..=submitted).contains(&work_dirs),
        "{work_dirs} work dirs for {submitted} allocations under {}:\n{text}",
        r.display()
    );
    eprintln!(
        "slurm launch: {} jobs done {:.1} s after they were submitted to the running launcher, {submitted} allocation(s) submitted",
        st.jobs.len(),
        finished.as_secs_f64()
    );
}
