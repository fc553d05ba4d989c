//! `cargo fuzz run manifest`: any text into the coordinator's manifest parser must give a
//! parsed manifest or a `ManifestError`, never a panic, hang or runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ausweep_coordinator::manifest::parse(text, "fuzz.yaml") {
        Ok(p) => {
            // What was accepted round-trips through its canonical form and expands to a plan.
            let back = ausweep_coordinator::manifest::from_canonical(&p.canonical)
                .expect("canonical manifest parses");
            assert_eq!(back, p.manifest);
            let _ = ausweep_coordinator::plan::expand(&p.sweep_id, &p.manifest);
        }
        Err(e) => {
            assert_eq!(e.file, "fuzz.yaml");
            let _ = e.to_string();
        }
    }
});
