//! The in-memory form every reader produces and the trainer consumes.

/// DISFA's 8 AUs in the standard order.
pub const DISFA_AUS: [u32; 8] = [1, 2, 4, 6, 9, 12, 25, 26];

/// Decoded, resized frames with their AU intensities and subjects, packed for the trainer.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// Side of the square frames, in pixels.
    pub size: u32,
    /// The AUs, in the column order of `intensities`.
    pub aus: Vec<u32>,
    /// Pixels, `len × 3 × size × size`, channel-major (CHW) per frame, RGB.
    pub pixels: Vec<u8>,
    /// AU intensities 0–5, `len × aus.len()`.
    pub intensities: Vec<u8>,
    /// Index into `subject_names` for each frame.
    pub subjects: Vec<u32>,
    /// Subject names (e.g. `SN001`).
    pub subject_names: Vec<String>,
    /// 1-based frame number within its subject's video, for each frame.
    pub frames: Vec<u32>,
}

impl Samples {
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Bytes of one frame's pixels.
    pub fn frame_bytes(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    /// 0/1 presence labels (`intensity >= threshold`), `len × aus.len()`.
    pub fn presence(&self, threshold: u8) -> Vec<u8> {
        self.intensities
            .iter()
            .map(|&v| u8::from(v >= threshold))
            .collect()
    }

    /// Checks that every per-frame array has `len()` entries and indices are in range; `Err` names the first mismatch.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.len();
        let checks = [
            ("pixels", self.pixels.len(), n * self.frame_bytes()),
            ("intensities", self.intensities.len(), n * self.aus.len()),
            ("frames", self.frames.len(), n),
        ];
        for (what, got, want) in checks {
            if got != want {
                return Err(format!(
                    "{what} has {got} entries, expected {want} for {n} frames"
                ));
            }
        }
        if let Some(s) = self
            .subjects
            .iter()
            .find(|&&s| s as usize >= self.subject_names.len())
        {
            return Err(format!(
                "subject index {s} but only {} names",
                self.subject_names.len()
            ));
        }
        Ok(())
    }

    /// Indices of the frames whose subject name is in `names`.
    pub fn indices_of_subjects(&self, names: &[String]) -> Vec<usize> {
        let wanted: Vec<bool> = self
            .subject_names
            .iter()
            .map(|n| names.iter().any(|w| w == n))
            .collect();
        (0..self.len())
            .filter(|&i| wanted[self.subjects[i] as usize])
            .collect()
    }
}
