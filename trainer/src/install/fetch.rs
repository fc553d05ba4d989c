//! `ausweep weights fetch NAME`: downloads a catalog file (or its copy on a lab mirror), checks
//! its sha256 against the pin while it streams, and imports it.

use super::import::{import, Imported};
use ausweep_weights::catalog::{self, Pin};
use ausweep_weights::{manifest, WeightsError};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// Where to fetch from and what to expect.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// A mirror holding the catalog's files under their `file_name`s (`<mirror>/<file_name>`).
    pub mirror: Option<String>,
    /// This exact URL instead (one name only).
    pub url: Option<String>,
    /// The full sha256 the file must have (overrides the catalog's pin).
    pub sha256: Option<String>,
    /// Download again even when the manifest already records a file that meets the pin.
    pub force: bool,
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// The directory already held it (from this source hash).
    AlreadyHeld {
        /// Its manifest's source sha256.
        source_sha256: String,
    },
    /// Downloaded and installed.
    Installed {
        /// From where.
        url: String,
        /// Bytes downloaded.
        bytes: u64,
        /// What the hash was checked against (`sha256`, `torchvision prefix`, `unpinned`).
        checked: String,
        /// The import.
        imported: Imported,
    },
}

/// Fetches `name` into `dir`; `progress(bytes_so_far, total)` is called as data arrives.
pub fn fetch(
    name: &str,
    dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Fetched, WeightsError> {
    let entry = catalog::lookup(name)?;
    let url = match (&opts.url, &opts.mirror) {
        (Some(u), _) => u.clone(),
        (None, Some(m)) => format!("{}/{}", m.trim_end_matches('/'), entry.file_name()),
        (None, None) => entry.url.to_string(),
    };
    let expected = opts.sha256.as_deref().map(str::to_ascii_lowercase);
    if let Some(e) = &expected {
        if e.len() != 64 || !e.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(WeightsError::Download {
                url,
                message: format!("--sha256 `{e}`: expected 64 hex digits"),
            });
        }
    }
    let meets = |h: &str| match &expected {
        Some(e) => e == h,
        None => catalog::satisfies(entry.pin, h),
    };
    if !opts.force {
        let held = manifest::records(dir)?
            .into_iter()
            .find(|(n, r)| n == name && r.sha256.len() == 64 && meets(&r.source_sha256));
        if let Some((_, r)) = held {
            if expected.is_some() || entry.pin != Pin::Unpinned {
                return Ok(Fetched::AlreadyHeld {
                    source_sha256: r.source_sha256,
                });
            }
        }
    }

    let downloads = dir.join(".downloads");
    std::fs::create_dir_all(&downloads).map_err(WeightsError::io(&downloads))?;
    let done = downloads.join(entry.file_name());
    let part = downloads.join(format!("{}.part", entry.file_name()));
    let result = download(&url, &part, progress).and_then(|(bytes, sha)| {
        if !meets(&sha) {
            return Err(WeightsError::HashMismatch {
                what: url.clone(),
                expected: match (&expected, entry.pin) {
                    (Some(e), _) => e.clone(),
                    (None, Pin::Sha256(h)) => h.into(),
                    (None, Pin::Prefix(p)) => format!("{p}…"),
                    (None, Pin::Unpinned) => "-".into(),
                },
                found: sha,
            });
        }
        ausweep_fsutil::commit(&part, &done).map_err(WeightsError::io(&done))?;
        let checked = match (&expected, entry.pin) {
            (Some(_), _) | (None, Pin::Sha256(_)) => "sha256",
            (None, Pin::Prefix(_)) => "torchvision sha256 prefix",
            (None, Pin::Unpinned) => "unpinned (hash recorded)",
        };
        let imported = import(
            name,
            &done,
            dir,
            Some(&format!("{} ({url})", entry.source)),
            &[("url", url.clone().into()), ("checked", checked.into())],
        )?;
        Ok(Fetched::Installed {
            url: url.clone(),
            bytes,
            checked: checked.into(),
            imported,
        })
    });
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_file(&done);
    result
}

/// Streams `url` into `part`, hashing as it goes; answers (bytes, sha256).
fn download(
    url: &str,
    part: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(u64, String), WeightsError> {
    let err = |message: String| WeightsError::Download {
        url: url.into(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(None)
        .timeout_per_read(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => err(format!("HTTP {code}")),
        other => err(format!(
            "{other} (without a route to it: `--mirror URL` for a lab copy, or \
             `ausweep weights import NAME FILE` for a file you have)"
        )),
    })?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut reader = resp.body_mut().as_reader();
    let mut out = std::fs::File::create(part).map_err(WeightsError::io(part))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| err(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(WeightsError::io(part))?;
        bytes += n as u64;
        progress(bytes, total);
    }
    if let Some(t) = total.filter(|&t| t != bytes) {
        return Err(err(format!("got {bytes} of {t} bytes")));
    }
    out.sync_all().map_err(WeightsError::io(part))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}
