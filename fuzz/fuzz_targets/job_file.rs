//! `cargo fuzz run job_file`: any text into the trainer's job-file loader must give a valid
//! job spec or a `JobError`, never a panic, hang or runaway allocation.
#![no_main]

use ausweep_proto::JobSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match JobSpec::from_yaml(text, "fuzz.yaml") {
        Ok(spec) => {
            // What was accepted survives the trip the coordinator sends it on (JSON) and YAML.
            let json = serde_json::to_string(&spec).expect("spec serialises");
            let back: JobSpec = serde_json::from_str(&json).expect("spec JSON parses");
            back.validate("json")
                .expect("round-tripped spec stays valid");
            let _ = JobSpec::from_yaml(&spec.to_yaml(), "yaml");
        }
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz.yaml"), "{e}");
        }
    }
});
