//! Fuzz target: the exposition parser never panics, and what it accepts is self-consistent.
#![no_main]

use autoscaler::exposition::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for result in [
        exposition::parse(text),
        exposition::parse_with(text, Format::Text004),
        exposition::parse_with(text, Format::OpenMetrics),
    ] {
        match result {
            Ok(exp) => {
                for family in &exp.families {
                    // Every family is found by its own name, and lookups never panic.
                    assert!(exp.family(&family.name).is_some());
                    let _ = exp.sum(&family.name);
                    for sample in &family.samples {
                        let _ = exp.sum(&sample.name);
                        let mut names: Vec<&str> =
                            sample.labels.iter().map(|(k, _)| k.as_str()).collect();
                        names.sort_unstable();
                        names.dedup();
                        assert_eq!(names.len(), sample.labels.len(), "duplicate label names");
                    }
                }
            }
            Err(err) => {
                // Error lines point into the input.
                assert!(err.line() >= 1 && err.line() <= text.lines().count().max(1));
            }
        }
    }
});
