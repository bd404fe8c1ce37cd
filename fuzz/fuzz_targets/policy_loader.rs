//! Fuzz target: the policy loader path (UTF-8 check, parse, validate) never panics.
//!
//! Errors must point into the input (line within the text, file name kept); accepted
//! policies are non-empty and start on a line of the text. Slow inputs (alias bombs,
//! deep nesting) are caught by libFuzzer's `-timeout` in scripts/fuzz.sh.
#![no_main]

use autoscaler::policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader rejects non-UTF-8 bytes before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines a position may name, counting YAML line breaks (`\n`, `\r\n`, lone `\r`);
    // one past the last covers "end of input".
    let breaks =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    let max_line = breaks + 2;
    match policy::parse_str(text, "fuzz.yaml") {
        Ok(policies) => {
            assert!(!policies.is_empty(), "accepted a text without policies");
            for (p, line) in &policies {
                assert!(
                    *line >= 1 && *line <= max_line,
                    "policy line {line} outside text"
                );
                // What validation accepted is a DNS label (it names nginx upstreams).
                assert!(policy::grammar::dns_label(&p.metadata.name).is_ok());
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "Err without errors");
            for e in &errors {
                assert_eq!(e.file, "fuzz.yaml");
                assert!(
                    e.line >= 1 && e.line <= max_line,
                    "error line {} outside text: {e}",
                    e.line
                );
                assert!(!e.message.contains('\n'), "multi-line message: {e}");
            }
            // Sorted by position, as documented.
            assert!(errors.windows(2).all(|w| w[0] <= w[1]));
        }
    }
});
