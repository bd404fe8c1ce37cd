//! Unit tests of the exposition parser: table-driven, one behaviour per case.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn only_sample(text: &str) -> Sample {
    let exp = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let all: Vec<&Sample> = exp.families.iter().flat_map(|f| &f.samples).collect();
    assert_eq!(all.len(), 1, "{text:?} gave {all:?}");
    all[0].clone()
}

#[test]
fn label_values_are_unescaped_and_quote_aware() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (r#"m{a="b"} 1"#, &[("a", "b")]),
        (
            r#"m{path="/say \"hi\", ok=1"} 1"#,
            &[("path", r#"/say "hi", ok=1"#)],
        ),
        (r#"m{a="x}y"} 1"#, &[("a", "x}y")]),
        (r#"m{a="back\\slash"} 1"#, &[("a", r"back\slash")]),
        (r#"m{a="line\nbreak"} 1"#, &[("a", "line\nbreak")]),
        (r#"m{a="unknown\tescape"} 1"#, &[("a", r"unknown\tescape")]),
        (r#"m{a="ends with \\"} 1"#, &[("a", r"ends with \")]),
        (
            r##"m{a="# not a comment", b="="} 1"##,
            &[("a", "# not a comment"), ("b", "=")],
        ),
        (r#"m{a="ünïcödé ✓"} 1"#, &[("a", "ünïcödé ✓")]),
        (r#"m{a=""} 1"#, &[("a", "")]),
        (r#"m{ a = "b" , c="d", } 1"#, &[("a", "b"), ("c", "d")]),
        (r#"m{} 1"#, &[]),
    ];
    for (text, want) in cases {
        assert_eq!(only_sample(text).labels, labels(want), "{text}");
    }
}

#[test]
fn values_cover_special_floats_and_go_forms() {
    let cases: &[(&str, f64)] = &[
        ("m 1", 1.0),
        ("m -0.5", -0.5),
        ("m 1e3", 1000.0),
        ("m 1.5E-3", 0.0015),
        ("m +Inf", f64::INFINITY),
        ("m -Inf", f64::NEG_INFINITY),
        ("m .5", 0.5),
        ("m 17179869184", 17179869184.0),
    ];
    for (text, want) in cases {
        assert_eq!(only_sample(text).value, *want, "{text}");
    }
    assert!(only_sample("m NaN").value.is_nan());
    assert!(only_sample("m nan").value.is_nan());
}

#[test]
fn timestamps_are_seconds_in_both_formats() {
    let text = parse("m 1 1700000000123\n").unwrap();
    assert_eq!(
        text.families[0].samples[0].timestamp,
        Some(1_700_000_000.123)
    );
    let om = parse("# TYPE m gauge\nm 1 1700000000.5\n# EOF\n").unwrap();
    assert_eq!(om.format, Format::OpenMetrics);
    assert_eq!(om.families[0].samples[0].timestamp, Some(1_700_000_000.5));
    assert_eq!(only_sample("m 1").timestamp, None);
}

#[test]
fn exemplars_after_hash_are_ignored() {
    let cases = [
        "# TYPE a counter\na_total 3 # {trace_id=\"x}\"} 1 1.5\n# EOF\n",
        "# TYPE a counter\na_total 3 1.0 # {trace_id=\"abc\"} 1\n# EOF\n",
        "# TYPE a counter\na_total{b=\"c # d\"} 3 # {} 1\n# EOF\n",
    ];
    for text in cases {
        let exp = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(exp.sum("a_total"), Some(3.0), "{text}");
    }
}

#[test]
fn malformed_lines_fail_with_their_line_number() {
    let cases: &[(&str, usize, &str)] = &[
        ("ok 1\nm{a=\"b} 1\n", 2, "ParseLabels"),
        ("m{a=b} 1", 1, "ParseLabels"),
        ("m{a=\"b\" c=\"d\"} 1", 1, "ParseLabels"),
        ("m{a=\"b\",a=\"c\"} 1", 1, "ParseLabels"),
        ("m{1a=\"b\"} 1", 1, "ParseLabels"),
        ("\n\nm", 3, "ParseValue"),
        ("m abc", 1, "ParseValue"),
        ("m 1_000", 1, "ParseValue"),
        ("m 1 12.5", 1, "ParseTimestamp"),
        ("m 1 2 3", 1, "ParseTrailingText"),
        ("1m 1", 1, "ParseMetricName"),
        ("m-x 1", 1, "ParseMetricName"),
        ("{a=\"b\"} 1", 1, "ParseMetricName"),
        ("# TYPE m\n", 1, "ParseMetadata"),
        ("# HELP 9bad text\n", 1, "ParseMetadata"),
        ("# TYPE m gauge\nm 1\n# EOF\nm 2\n", 4, "ParseAfterEof"),
        ("# TYPE m gauge\nm 1 abc\n# EOF\n", 2, "ParseTimestamp"),
    ];
    for (text, line, variant) in cases {
        let err = parse(text).expect_err(text);
        assert_eq!(err.line(), *line, "{text:?}: {err}");
        assert!(format!("{err:?}").starts_with(variant), "{text:?}: {err:?}");
    }
}

#[test]
fn unknown_comments_blank_lines_and_crlf_are_tolerated() {
    let text = "# a free comment\n#nospace\n\n  \r\n# HELP m Some help\r\n# TYPE m gauge\r\nm\t 2 \r\n# EOF trailing words make this a comment\n";
    let exp = parse(text).unwrap();
    assert_eq!(exp.format, Format::Text004);
    let fam = exp.family("m").unwrap();
    assert_eq!(fam.kind, MetricType::Gauge);
    assert_eq!(fam.help.as_deref(), Some("Some help"));
    assert_eq!(exp.sum("m"), Some(2.0));
}

#[test]
fn help_text_is_unescaped() {
    let exp = parse("# HELP m a \\\\ b \\n c \\\"d\\\"\n# TYPE m gauge\nm 1\n").unwrap();
    assert_eq!(exp.families[0].help.as_deref(), Some("a \\ b \n c \"d\""));
}

#[test]
fn unit_and_unknown_types_are_recorded() {
    let exp = parse(
        "# TYPE s seconds\n# TYPE d gauge\n# UNIT d seconds\nd 1\ns 2\n# TYPE u untyped\nu 3\n# EOF\n",
    )
    .unwrap();
    assert_eq!(exp.family("d").unwrap().unit.as_deref(), Some("seconds"));
    assert_eq!(exp.family("s").unwrap().kind, MetricType::Unknown);
    assert_eq!(exp.family("u").unwrap().kind, MetricType::Unknown);
}

#[test]
fn quoted_utf8_metric_names_are_read() {
    let exp = parse("# TYPE \"my.metric\" gauge\n{\"my.metric\", a=\"b\"} 4\n").unwrap();
    let fam = exp.family("my.metric").unwrap();
    assert_eq!(fam.kind, MetricType::Gauge);
    assert_eq!(fam.samples[0].labels, labels(&[("a", "b")]));
}

#[test]
fn counters_are_found_by_either_name_in_both_formats() {
    let text004 = "# TYPE http_requests_total counter\nhttp_requests_total{code=\"2xx\"} 3\nhttp_requests_total{code=\"5xx\"} 1\n";
    let openmetrics = "# TYPE http_requests counter\nhttp_requests_total{code=\"2xx\"} 3\nhttp_requests_created{code=\"2xx\"} 1.7e9\nhttp_requests_total{code=\"5xx\"} 1\n# EOF\n";
    for text in [text004, openmetrics] {
        let exp = parse(text).unwrap();
        assert_eq!(exp.families.len(), 1, "{text}");
        assert_eq!(exp.families[0].kind, MetricType::Counter);
        for name in ["http_requests_total", "http_requests"] {
            assert_eq!(exp.sum(name), Some(4.0), "{name} in {text}");
        }
        let two_xx = exp.sum_where("http_requests", |s| s.label("code") == Some("2xx"));
        assert_eq!(two_xx, Some(3.0));
    }
}

#[test]
fn histogram_and_summary_parts_are_found_by_suffix() {
    let text = "\
# TYPE lat histogram
lat_bucket{le=\"0.1\"} 1
lat_bucket{le=\"+Inf\"} 4
lat_sum 2.5
lat_count 4
# TYPE q summary
q{quantile=\"0.5\"} 0.2
q_sum 9
q_count 10
# TYPE g gaugehistogram
g_bucket{le=\"+Inf\"} 2
g_gcount 2
g_gsum 1
";
    let exp = parse(text).unwrap();
    assert_eq!(exp.families.len(), 3);
    let cases: &[(&str, &str, Option<f64>)] = &[
        ("lat_count", "lat", Some(4.0)),
        ("lat_sum", "lat", Some(2.5)),
        ("lat", "lat", Some(5.0)),
        ("lat_bucket", "lat", Some(5.0)),
        ("q_count", "q", Some(10.0)),
        ("q", "q", Some(0.2)),
        ("g_gcount", "g", Some(2.0)),
        ("g_gsum", "g", Some(1.0)),
    ];
    for (name, family, sum) in cases {
        assert_eq!(
            exp.family(name).map(|f| f.name.as_str()),
            Some(*family),
            "{name}"
        );
        assert_eq!(exp.sum(name), *sum, "{name}");
    }
}

#[test]
fn lookups_of_absent_names_give_none() {
    let exp = parse("# TYPE g gauge\ng 1\n# TYPE c counter\nc_total 2\n# EOF\n").unwrap();
    for name in ["nope", "g_total", "g_count", "c_bucket", "c_count", ""] {
        assert_eq!(exp.sum(name), None, "{name}");
    }
    assert_eq!(exp.sum_where("g", |_| false), None);
}

#[test]
fn undeclared_samples_become_untyped_families() {
    let exp = parse("a 1\nb{x=\"1\"} 2\nb{x=\"2\"} 3\n# TYPE c gauge\nc 4\na 5\n").unwrap();
    let names: Vec<&str> = exp.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(exp.sum("a"), Some(6.0));
    assert_eq!(exp.sum("b"), Some(5.0));
    assert!(exp.families.iter().all(|f| f.kind != MetricType::Counter));
}

#[test]
fn format_follows_content_type() {
    let cases = [
        ("text/plain; version=0.0.4; charset=utf-8", Format::Text004),
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::OpenMetrics,
        ),
        ("Application/OpenMetrics-Text", Format::OpenMetrics),
        ("", Format::Text004),
    ];
    for (ct, want) in cases {
        assert_eq!(Format::from_content_type(ct), want, "{ct}");
    }
}

#[test]
fn eof_in_text_format_is_a_comment() {
    let exp = parse_with("m 1\n# EOF\nm 2\n", Format::Text004).unwrap();
    assert_eq!(exp.sum("m"), Some(3.0));
}

#[test]
fn series_are_keyed_by_canonical_sorted_labels() {
    let text004 = "# TYPE http_requests_total counter\nhttp_requests_total{path=\"/b\",code=\"200\"} 3\nhttp_requests_total{code=\"500\"} 1\nhttp_requests_total 7\n";
    let openmetrics = "# TYPE http_requests counter\nhttp_requests_total{path=\"/b\",code=\"200\"} 3\nhttp_requests_created{code=\"200\",path=\"/b\"} 1.7e9\nhttp_requests_total{code=\"500\"} 1\nhttp_requests_total 7\n# EOF\n";
    let want = vec![
        (String::new(), 7.0),
        (r#"{code="200",path="/b"}"#.to_owned(), 3.0),
        (r#"{code="500"}"#.to_owned(), 1.0),
    ];
    for text in [text004, openmetrics] {
        let exp = parse(text).unwrap();
        for name in ["http_requests_total", "http_requests"] {
            assert_eq!(exp.series(name), Some(want.clone()), "{name} in {text}");
        }
    }
}

#[test]
fn series_labels_are_escaped_so_distinct_sets_stay_distinct() {
    let cases: &[(&str, &str)] = &[
        (r#"m{a="x\",b=\"y"} 1"#, r#"{a="x\",b=\"y"}"#),
        (r#"m{a="x",b="y"} 1"#, r#"{a="x",b="y"}"#),
        (r#"m{a="back\\slash"} 1"#, r#"{a="back\\slash"}"#),
        (r#"m{a="line\nbreak"} 1"#, r#"{a="line\nbreak"}"#),
        (r#"m{} 1"#, ""),
    ];
    for (text, want) in cases {
        let exp = parse(text).unwrap();
        assert_eq!(
            exp.series("m"),
            Some(vec![(want.to_string(), 1.0)]),
            "{text}"
        );
    }
}

#[test]
fn series_keep_special_values_and_sum_duplicate_label_sets() {
    let exp = parse("m{a=\"1\"} NaN\nm{a=\"2\"} +Inf\nm{a=\"3\"} 1\nm{a=\"3\"} 2\n").unwrap();
    let series = exp.series("m").unwrap();
    assert_eq!(series.len(), 3);
    assert!(series[0].1.is_nan());
    assert_eq!(series[1].1, f64::INFINITY);
    assert_eq!(series[2], (r#"{a="3"}"#.to_owned(), 3.0));
    assert_eq!(exp.series("absent"), None);
    let declared_only = parse("# TYPE c counter\n").unwrap();
    assert_eq!(declared_only.series("c"), None);
}
