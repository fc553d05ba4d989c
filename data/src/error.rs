//! The crate's one error type; every variant names the file (and line) it is about.

use std::path::PathBuf;

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

/// Everything that can go wrong reading, rendering, splitting or caching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A DISFA label file that should exist does not.
    #[error("missing label file {0}")]
    MissingLabelFile(PathBuf),
    /// A label file has a different number of frames than its subject's first AU file.
    #[error("{path}: {got} frames, but {reference} has {expected} (short or long label file)")]
    FrameCountMismatch {
        /// The mismatching file.
        path: PathBuf,
        /// Its number of frames.
        got: usize,
        /// The file it is compared with.
        reference: PathBuf,
        /// That file's number of frames.
        expected: usize,
    },
    /// A line that does not parse.
    #[error("{path}:{line}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        msg: String,
    },
    /// An AU intensity outside 0–5.
    #[error("{path}:{line}: intensity {value} is outside 0-5")]
    IntensityRange {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The value read.
        value: i64,
    },
    /// A frame image that the labels refer to is absent.
    #[error("missing frame image {path} (subject {subject}, frame {frame})")]
    MissingFrame {
        /// Where it was looked for (the first candidate extension).
        path: PathBuf,
        /// Subject name.
        subject: String,
        /// 1-based frame number.
        frame: u32,
    },
    /// An image that exists but cannot be decoded.
    #[error("{path}: cannot decode image: {msg}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        msg: String,
    },
    /// An image that cannot be encoded or written.
    #[error("{path}: cannot write image: {msg}")]
    Encode {
        /// The image file.
        path: PathBuf,
        /// The encoder's message.
        msg: String,
    },
    /// The two files of a list dataset disagree in length.
    #[error("{paths} has {n_paths} lines but {labels} has {n_labels}")]
    LineCountMismatch {
        /// The image path list.
        paths: PathBuf,
        /// Its number of non-empty lines.
        n_paths: usize,
        /// The label list.
        labels: PathBuf,
        /// Its number of non-empty lines.
        n_labels: usize,
    },
    /// No subjects (or no frames) were found where some were expected.
    #[error("no data: {0}")]
    Empty(String),
    /// A fold number outside `1..=k`.
    #[error("fold {fold} is out of range 1..={k}")]
    FoldOutOfRange {
        /// The fold asked for.
        fold: u32,
        /// The scheme's number of folds.
        k: u32,
    },
    /// A subject of the data that the standard DISFA 3-fold lists do not contain.
    #[error("subject {0} is not in the standard DISFA 3-fold lists (SN001-SN032 minus 014/015/019/020/022)")]
    UnknownSubject(String),
    /// A fold whose test set would have no subject.
    #[error("fold {fold} has no test subject among the data's {n_subjects} subjects")]
    EmptyFold {
        /// The fold.
        fold: u32,
        /// Number of subjects in the data.
        n_subjects: usize,
    },
    /// An invalid setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A packed cache file that is not valid.
    #[error("{path}: bad packed cache: {msg}")]
    BadCache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
