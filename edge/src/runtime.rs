//! ONNX Runtime, its shared library opened at run time: where it is looked for, and one model
//! file as a session that takes and gives plain float buffers.

use crate::EdgeError;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The library's file name in the PyPI wheel and the release archives.
pub const LIBRARY: &str = "libonnxruntime.so";

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Where ONNX Runtime's library is looked for, in order: `explicit`, `$ORT_DYLIB_PATH`, beside
/// the executable and in its `../lib`; the first that exists. `None`: the system loader's
/// search (`LD_LIBRARY_PATH`, `ldconfig`) for `libonnxruntime.so`.
pub fn find_library(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.to_path_buf(), dir.join("../lib")]
        .into_iter()
        .flat_map(|d| std::fs::read_dir(&d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LIBRARY))
        })
}

/// Opens ONNX Runtime's library once per process (see [`find_library`]); later calls return
/// the first outcome.
pub fn init(explicit: Option<&Path>) -> Result<(), EdgeError> {
    let env = ENV.get_or_init(|| {
        let path = find_library(explicit).unwrap_or_else(|| PathBuf::from(LIBRARY));
        let how = |e: &dyn std::fmt::Display| {
            format!(
                "{e} (ONNX Runtime 1.23 or newer is needed: `pip install onnxruntime` ships it as \
                 onnxruntime/capi/libonnxruntime.so.*; give its path with --onnxruntime or \
                 ORT_DYLIB_PATH)"
            )
        };
        ort::init_from(&path)
            .map_err(|e| how(&e))?
            .with_name("ausweep")
            .build()
            .map_err(|e| how(&e))
    });
    env.as_ref()
        .map(|_| ())
        .map_err(|e| EdgeError::Library(e.clone()))
}

/// One model file in a session.
pub struct Net {
    session: Session,
    path: PathBuf,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("path", &self.path).finish()
    }
}

/// An output: its shape and values.
pub type Output = (Vec<usize>, Vec<f32>);

impl Net {
    /// Opens `path` with `threads` intra-op threads (0: ONNX Runtime's default, all cores);
    /// [`init`] must have succeeded.
    pub fn open(path: &Path, threads: usize) -> Result<Net, EdgeError> {
        let bad = |e: &dyn std::fmt::Display| EdgeError::Runtime {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let env = match ENV.get() {
            Some(Ok(env)) => env,
            _ => return Err(EdgeError::Library("not initialised (runtime::init)".into())),
        };
        // An int8 file's kernels (`DequantizeLinear` of int8 initializers) are folded into f32
        // once at load, as any constant is, so that the convolutions fuse with their batch norms
        // and run as fast as the fp32 file's (unfolded, every run dequantizes: 2-6× slower).
        let mut b = Session::builder(env)
            .map_err(|e| bad(&e))?
            .with_config_entry("session.disable_quant_qdq", "1")
            .map_err(|e| bad(&e))?;
        if threads > 0 {
            b = b.with_intra_threads(threads).map_err(|e| bad(&e))?;
        }
        let session = b.commit_from_file(path).map_err(|e| bad(&e))?;
        Ok(Net {
            session,
            path: path.to_path_buf(),
        })
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the model on one float input `name` of `shape`; the outputs named in `outputs`, in
    /// that order.
    pub fn run(
        &mut self,
        name: &str,
        shape: [usize; 4],
        data: &[f32],
        outputs: &[&str],
    ) -> Result<Vec<Output>, EdgeError> {
        let path = self.path.clone();
        let bad = |e: &dyn std::fmt::Display| EdgeError::Runtime {
            path: path.clone(),
            message: e.to_string(),
        };
        let x = TensorRef::from_array_view((shape, data)).map_err(|e| bad(&e))?;
        let got = self
            .session
            .run(ort::inputs![name => x])
            .map_err(|e| bad(&e))?;
        outputs
            .iter()
            .map(|o| {
                let v = got
                    .get(o)
                    .ok_or_else(|| bad(&format!("the model has no output `{o}`")))?;
                let (s, d) = v.try_extract_tensor::<f32>().map_err(|e| bad(&e))?;
                Ok((s.iter().map(|&k| k.max(0) as usize).collect(), d.to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_that_says_where_and_how_to_get_one() {
        let e = init(Some(Path::new("/nonexistent/libonnxruntime.so.1.23.2")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/libonnxruntime.so.1.23.2")
                && e.contains("pip install onnxruntime"),
            "{e}"
        );
        // The outcome is kept: a second call says the same, and no session opens.
        let again = init(None).unwrap_err().to_string();
        assert_eq!(again, e);
        let n = Net::open(Path::new("model.onnx"), 1)
            .unwrap_err()
            .to_string();
        assert!(n.contains("not initialised"), "{n}");
    }
}
