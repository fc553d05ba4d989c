//! How a trainer process ended, as its exit code, so the
//! agent classifies a failure without reading the trainer's words.

/// How a trainer process ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainerExit {
    /// Finished; its result is in its output folder.
    Done,
    /// Failed for a reason worth a retry (a crash, a torch error).
    Failed,
    /// The job cannot run anywhere as written (its spec, weights or data contents).
    BadConfig,
    /// This node cannot run it (a dataset path missing here, an I/O error on a local disk):
    /// another node may.
    Node,
    /// The device ran out of memory.
    OutOfMemory,
    /// The checkpoint it was told to start or resume from cannot be used.
    BadCheckpoint,
}

impl TrainerExit {
    /// The process exit code (sysexits.h where one fits).
    pub fn code(self) -> i32 {
        match self {
            TrainerExit::Done => 0,
            TrainerExit::Failed => 1,
            TrainerExit::Node => 74,        // EX_IOERR
            TrainerExit::OutOfMemory => 75, // EX_TEMPFAIL
            TrainerExit::BadCheckpoint => 76,
            TrainerExit::BadConfig => 78, // EX_CONFIG
        }
    }

    /// The ending an exit code says; any code this contract does not define is `Failed`.
    pub fn from_code(code: i32) -> Self {
        [
            TrainerExit::Done,
            TrainerExit::Node,
            TrainerExit::OutOfMemory,
            TrainerExit::BadCheckpoint,
            TrainerExit::BadConfig,
        ]
        .into_iter()
        .find(|e| e.code() == code)
        .unwrap_or(TrainerExit::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::TrainerExit::*;
    use super::*;

    #[test]
    fn every_ending_survives_its_exit_code_and_unknown_codes_are_failures() {
        for e in [Done, Failed, BadConfig, Node, OutOfMemory, BadCheckpoint] {
            assert_eq!(TrainerExit::from_code(e.code()), e);
        }
        for c in [2, 101, 137, -1] {
            assert_eq!(TrainerExit::from_code(c), Failed, "{c}");
        }
    }
}
