//! Behaviour tests of the HPA strategy, including the Kubernetes documentation's examples.

use super::super::test_support::*;
use super::super::{Change, Decision, History, Limit, MetricInput, Recommendation, ScaleEvent};
use crate::policy::types::{
    Behavior, Direction, RatePolicy, RatePolicyKind, ScalingRules, SelectPolicy,
};

const S: u64 = 1000;
/// An arbitrary "now" far from the epoch, so windows never saturate.
const NOW: u64 = 1_000_000 * S;

fn pods(value: u32, period_seconds: u32) -> RatePolicy {
    RatePolicy {
        kind: RatePolicyKind::Pods,
        value,
        period_seconds,
    }
}

fn percent(value: u32, period_seconds: u32) -> RatePolicy {
    RatePolicy {
        kind: RatePolicyKind::Percent,
        value,
        period_seconds,
    }
}

fn rules(
    window: Option<u32>,
    select: Option<SelectPolicy>,
    policies: Vec<RatePolicy>,
) -> ScalingRules {
    ScalingRules {
        stabilization_window_seconds: window,
        select_policy: select,
        policies: if policies.is_empty() {
            None
        } else {
            Some(policies)
        },
    }
}

/// Default behaviour except the scale-down window, so scale-down tests are not held.
fn no_down_window() -> Behavior {
    Behavior {
        scale_down: rules(Some(0), None, vec![]),
        ..Behavior::default()
    }
}

fn recs(list: &[(u64, u32)]) -> History {
    History {
        recommendations: list
            .iter()
            .map(|&(ago_s, replicas)| Recommendation {
                at_ms: NOW - ago_s * S,
                replicas,
            })
            .collect(),
        events: vec![],
        burst: None,
    }
}

fn events(list: &[(u64, u32, u32)]) -> History {
    History {
        recommendations: vec![Recommendation {
            at_ms: NOW - 1_000 * S,
            replicas: 1,
        }],
        events: list
            .iter()
            .map(|&(ago_s, from, to)| ScaleEvent {
                at_ms: NOW - ago_s * S,
                from,
                to,
            })
            .collect(),
        burst: None,
    }
}

/// (name, behavior, min, max, current, metrics, history, desired, limit)
type Case = (
    &'static str,
    Behavior,
    u32,
    u32,
    u32,
    Vec<MetricInput>,
    History,
    u32,
    Option<Limit>,
);

fn check(cases: Vec<Case>) {
    for (name, behavior, min, max, current, metrics, history, want, limit) in cases {
        let d = run(&behavior, min, max, current, &metrics, &history, NOW);
        assert_eq!(d.desired, want, "{name}: {d}");
        assert_eq!(d.limit, limit, "{name}: {d}");
        let change = match want.cmp(&current) {
            std::cmp::Ordering::Less => Change::Down,
            std::cmp::Ordering::Equal => Change::None,
            std::cmp::Ordering::Greater => Change::Up,
        };
        assert_eq!(d.change, change, "{name}");
    }
}

fn rate(
    direction: Direction,
    policy: RatePolicy,
    select: SelectPolicy,
    allowed: u32,
) -> Option<Limit> {
    Some(Limit::Rate {
        direction,
        policy,
        select,
        allowed,
    })
}

#[test]
fn hpa_formula_and_documented_examples() {
    let empty = History::default;
    check(vec![
        // "current 200m, desired 100m: replicas doubled".
        (
            "docs_200m_of_100m_doubles",
            Behavior::default(),
            1,
            10,
            1,
            vec![per_replica("m", 0.1, &[0.2])],
            empty(),
            2,
            None,
        ),
        (
            "docs_50m_of_100m_halves",
            no_down_window(),
            1,
            10,
            4,
            vec![per_replica("m", 0.1, &[0.05; 4])],
            empty(),
            2,
            None,
        ),
        (
            "within_tolerance_holds_and_says_so",
            Behavior::default(),
            1,
            10,
            3,
            vec![per_replica("m", 10.0, &[11.0; 3])],
            empty(),
            3,
            Some(Limit::Tolerance(0.1)),
        ),
        (
            "just_outside_tolerance_scales",
            Behavior::default(),
            1,
            10,
            3,
            vec![per_replica("m", 10.0, &[11.000_000_1; 3])],
            empty(),
            4,
            None,
        ),
        (
            "several_metrics_largest_wins",
            Behavior::default(),
            1,
            10,
            2,
            vec![
                per_replica("a", 10.0, &[15.0; 2]),
                total("b", 10.0, 60.0),
                per_replica("c", 10.0, &[1.0; 2]),
            ],
            empty(),
            6,
            None,
        ),
        (
            "zero_load_scales_down_to_min",
            no_down_window(),
            2,
            10,
            5,
            vec![per_replica("m", 10.0, &[0.0; 5])],
            empty(),
            2,
            Some(Limit::Min(2)),
        ),
        (
            "zero_load_with_min_zero_goes_to_zero",
            no_down_window(),
            0,
            10,
            5,
            vec![per_replica("m", 10.0, &[0.0; 5])],
            empty(),
            0,
            None,
        ),
    ]);
}

#[test]
fn missing_and_unavailable_metrics_never_cause_a_scale_down() {
    let empty = History::default;
    check(vec![
        (
            "all_unavailable_holds",
            no_down_window(),
            1,
            10,
            4,
            vec![
                unavailable("a", 10.0, "timeout"),
                unavailable("b", 10.0, "refused"),
            ],
            empty(),
            4,
            Some(Limit::MetricsUnavailable { all: true }),
        ),
        (
            "no_metrics_holds",
            no_down_window(),
            1,
            10,
            4,
            vec![],
            empty(),
            4,
            Some(Limit::MetricsUnavailable { all: true }),
        ),
        (
            "some_unavailable_blocks_scale_down",
            no_down_window(),
            1,
            10,
            4,
            vec![
                unavailable("a", 10.0, "timeout"),
                per_replica("b", 10.0, &[1.0; 4]),
            ],
            empty(),
            4,
            Some(Limit::MetricsUnavailable { all: false }),
        ),
        (
            "some_unavailable_still_scales_up",
            no_down_window(),
            1,
            10,
            2,
            vec![
                unavailable("a", 10.0, "timeout"),
                per_replica("b", 10.0, &[20.0; 2]),
            ],
            empty(),
            4,
            None,
        ),
        (
            "missing_replicas_count_as_target_when_shrinking",
            no_down_window(),
            1,
            10,
            4,
            vec![partial("m", 10.0, &[Some(6.0), None, None, None])],
            empty(),
            4,
            Some(Limit::MissingData),
        ),
        (
            "missing_replicas_count_as_idle_when_growing",
            Behavior::default(),
            1,
            10,
            2,
            vec![partial("m", 10.0, &[Some(40.0), None])],
            empty(),
            4,
            None,
        ),
    ]);
    let d = run(
        &no_down_window(),
        1,
        10,
        4,
        &[unavailable("a", 10.0, "timeout")],
        &History::default(),
        NOW,
    );
    assert!(!d.metrics_available);
    assert_eq!(
        d.recommendation, None,
        "a failed evaluation recommends nothing"
    );
    assert!(d.reason.contains("a unavailable (timeout)"), "{d}");
}

#[test]
fn stabilization_windows_use_recommendations_inside_them() {
    let up_window = Behavior {
        scale_up: rules(Some(60), None, vec![]),
        ..no_down_window()
    };
    let stabilized_down = |wanted| {
        Some(Limit::Stabilization {
            direction: Direction::Down,
            window_seconds: 300,
            wanted,
        })
    };
    check(vec![
        (
            "scale_down_waits_for_window_max",
            Behavior::default(),
            1,
            10,
            6,
            vec![per_replica("m", 10.0, &[3.0; 6])],
            recs(&[(100, 6)]),
            6,
            stabilized_down(2),
        ),
        (
            "scale_down_goes_to_highest_recent_recommendation",
            Behavior::default(),
            1,
            10,
            6,
            vec![per_replica("m", 10.0, &[3.0; 6])],
            recs(&[(299, 4), (100, 3), (301, 6)]),
            4,
            stabilized_down(2),
        ),
        (
            "scale_down_proceeds_after_window",
            Behavior::default(),
            1,
            10,
            6,
            vec![per_replica("m", 10.0, &[3.0; 6])],
            recs(&[(300, 6)]),
            2,
            None,
        ),
        (
            "fresh_history_waits_a_window_before_scale_down",
            Behavior::default(),
            1,
            10,
            6,
            vec![per_replica("m", 10.0, &[3.0; 6])],
            History::default(),
            6,
            stabilized_down(2),
        ),
        (
            "default_scale_up_has_no_window",
            Behavior::default(),
            1,
            10,
            2,
            vec![per_replica("m", 10.0, &[20.0; 2])],
            recs(&[(1, 2)]),
            4,
            None,
        ),
        (
            "scale_up_window_uses_lowest_recent_recommendation",
            up_window.clone(),
            1,
            10,
            2,
            vec![per_replica("m", 10.0, &[25.0; 2])],
            recs(&[(30, 3), (10, 5)]),
            3,
            Some(Limit::Stabilization {
                direction: Direction::Up,
                window_seconds: 60,
                wanted: 5,
            }),
        ),
        (
            "scale_up_window_never_goes_below_current",
            up_window.clone(),
            1,
            10,
            2,
            vec![per_replica("m", 10.0, &[25.0; 2])],
            recs(&[(30, 1)]),
            2,
            Some(Limit::Stabilization {
                direction: Direction::Up,
                window_seconds: 60,
                wanted: 5,
            }),
        ),
        (
            "scale_up_window_expired",
            up_window,
            1,
            10,
            2,
            vec![per_replica("m", 10.0, &[25.0; 2])],
            recs(&[(60, 1)]),
            5,
            None,
        ),
    ]);
}

#[test]
fn rate_policies_limit_change_per_period() {
    let down = |select, policies| Behavior {
        scale_down: rules(Some(0), select, policies),
        ..Behavior::default()
    };
    let up = |select, policies| Behavior {
        scale_up: rules(None, select, policies),
        ..no_down_window()
    };
    let docs_down = vec![pods(4, 60), percent(10, 60)];
    let load = |n: usize, v: f64| vec![per_replica("m", 10.0, &vec![v; n])];
    check(vec![
        // Default scale-up: max(4 Pods, 100 %) per 15 s.
        (
            "default_up_from_1_adds_4_pods",
            Behavior::default(),
            1,
            10,
            1,
            load(1, 90.0),
            History::default(),
            5,
            rate(Direction::Up, pods(4, 15), SelectPolicy::Max, 5),
        ),
        (
            "default_up_from_5_doubles",
            Behavior::default(),
            1,
            20,
            5,
            load(5, 30.0),
            History::default(),
            10,
            rate(Direction::Up, percent(100, 15), SelectPolicy::Max, 10),
        ),
        (
            "default_up_counts_events_in_period",
            Behavior::default(),
            1,
            10,
            5,
            load(5, 18.0),
            events(&[(14, 1, 5)]),
            5,
            rate(Direction::Up, pods(4, 15), SelectPolicy::Max, 5),
        ),
        (
            "default_up_period_expires",
            Behavior::default(),
            1,
            10,
            5,
            load(5, 18.0),
            events(&[(15, 1, 5)]),
            9,
            None,
        ),
        // Docs: scale-down 4 Pods or 10 % per 60 s, selectPolicy Max → the bigger change.
        (
            "docs_down_80_percent_wins",
            down(None, docs_down.clone()),
            1,
            100,
            80,
            load(80, 1.0),
            History::default(),
            72,
            rate(Direction::Down, percent(10, 60), SelectPolicy::Max, 72),
        ),
        (
            "docs_down_30_pods_win",
            down(None, docs_down.clone()),
            1,
            100,
            30,
            load(30, 1.0),
            History::default(),
            26,
            rate(Direction::Down, pods(4, 60), SelectPolicy::Max, 26),
        ),
        (
            "docs_down_select_min_smaller_change",
            down(Some(SelectPolicy::Min), docs_down.clone()),
            1,
            100,
            80,
            load(80, 1.0),
            History::default(),
            76,
            rate(Direction::Down, pods(4, 60), SelectPolicy::Min, 76),
        ),
        (
            "docs_down_period_already_used",
            down(None, docs_down.clone()),
            1,
            100,
            72,
            load(72, 1.0),
            events(&[(30, 80, 72)]),
            72,
            rate(Direction::Down, percent(10, 60), SelectPolicy::Max, 72),
        ),
        (
            "docs_down_next_period_percent_truncates",
            down(None, docs_down.clone()),
            1,
            100,
            72,
            load(72, 1.0),
            events(&[(60, 80, 72)]),
            64,
            rate(Direction::Down, percent(10, 60), SelectPolicy::Max, 64),
        ),
        // Docs: "scale up 900 %": 1 → 10.
        (
            "docs_up_900_percent",
            up(None, vec![percent(900, 60)]),
            1,
            1000,
            1,
            load(1, 1500.0),
            History::default(),
            10,
            rate(Direction::Up, percent(900, 60), SelectPolicy::Max, 10),
        ),
        (
            "up_percent_rounds_up",
            up(None, vec![percent(10, 60)]),
            1,
            100,
            3,
            load(3, 100.0),
            History::default(),
            4,
            rate(Direction::Up, percent(10, 60), SelectPolicy::Max, 4),
        ),
        (
            "up_select_min",
            up(Some(SelectPolicy::Min), vec![pods(4, 15), percent(100, 15)]),
            1,
            100,
            2,
            load(2, 100.0),
            History::default(),
            4,
            rate(Direction::Up, percent(100, 15), SelectPolicy::Min, 4),
        ),
        (
            "up_disabled_holds",
            up(Some(SelectPolicy::Disabled), vec![]),
            1,
            10,
            2,
            load(2, 100.0),
            History::default(),
            2,
            Some(Limit::Disabled(Direction::Up)),
        ),
        (
            "down_disabled_holds",
            down(Some(SelectPolicy::Disabled), vec![]),
            1,
            10,
            6,
            load(6, 0.0),
            History::default(),
            6,
            Some(Limit::Disabled(Direction::Down)),
        ),
        (
            "down_disabled_still_scales_up",
            down(Some(SelectPolicy::Disabled), vec![]),
            1,
            10,
            2,
            load(2, 20.0),
            History::default(),
            4,
            None,
        ),
        // A scale-down in the period gives room back to scale-up (start = current + removed).
        (
            "recent_scale_down_widens_scale_up",
            up(None, vec![pods(1, 60)]),
            1,
            10,
            3,
            load(3, 100.0),
            events(&[(30, 5, 3)]),
            6,
            rate(Direction::Up, pods(1, 60), SelectPolicy::Max, 6),
        ),
        (
            "docs_down_5_pods_per_10_minutes",
            down(None, vec![pods(5, 600)]),
            1,
            100,
            20,
            load(20, 0.5),
            events(&[(300, 25, 20)]),
            20,
            rate(Direction::Down, pods(5, 600), SelectPolicy::Max, 20),
        ),
    ]);
}

#[test]
fn min_and_max_clamp_and_are_reported() {
    check(vec![
        (
            "max_caps_before_rate",
            Behavior::default(),
            1,
            10,
            8,
            vec![per_replica("m", 10.0, &[30.0; 8])],
            History::default(),
            10,
            Some(Limit::Max(10)),
        ),
        (
            "max_reported_when_equal_to_rate",
            Behavior::default(),
            1,
            5,
            1,
            vec![per_replica("m", 10.0, &[90.0])],
            History::default(),
            5,
            Some(Limit::Max(5)),
        ),
        (
            "min_floors_scale_down",
            no_down_window(),
            3,
            10,
            8,
            vec![per_replica("m", 10.0, &[1.0; 8])],
            History::default(),
            3,
            Some(Limit::Min(3)),
        ),
        (
            "at_max_under_load_holds",
            Behavior::default(),
            1,
            10,
            10,
            vec![per_replica("m", 10.0, &[50.0; 10])],
            History::default(),
            10,
            Some(Limit::Max(10)),
        ),
    ]);
}

/// Decides, records and advances one evaluation per second, like the daemon.
fn replay(
    behavior: &Behavior,
    max: u32,
    per_second_total: impl Fn(u64) -> f64,
    seconds: u64,
) -> Vec<Decision> {
    let mut history = History::default();
    let mut current = 1;
    let mut out = Vec::new();
    for s in 0..seconds {
        let now = NOW + s * S;
        let load = per_second_total(s) / f64::from(current);
        let metrics = [per_replica("m", 10.0, &vec![load; current as usize])];
        let d = run(behavior, 1, max, current, &metrics, &history, now);
        history.record(&d, now, behavior);
        current = d.desired;
        out.push(d);
    }
    out
}

#[test]
fn step_load_reaches_nine_replicas_in_one_period_with_defaults() {
    let decisions = replay(&Behavior::default(), 10, |_| 90.0, 20);
    let counts: Vec<u32> = decisions.iter().map(|d| d.desired).collect();
    assert_eq!(counts[0], 5, "first step capped at +4 Pods");
    assert!(counts[1..15].iter().all(|&c| c == 5), "{counts:?}");
    assert_eq!(counts[15], 9, "next period");
    assert!(
        decisions[3]
            .reason
            .contains("capped by scale-up +4 Pods per 15 s"),
        "{}",
        decisions[3]
    );
}

#[test]
fn load_drop_scales_down_only_after_the_window() {
    let behavior = Behavior::default();
    let decisions = replay(&behavior, 10, |s| if s < 20 { 90.0 } else { 5.0 }, 340);
    let counts: Vec<u32> = decisions.iter().map(|d| d.desired).collect();
    let first_down = counts.iter().position(|&c| c == 1).unwrap();
    // The last recommendation of 9 was made at second 19; at 319 it sits exactly on the
    // window's edge, which excludes it.
    assert_eq!(first_down, 319, "{:?}", &counts[310..330]);
    assert!(matches!(
        decisions[200].limit,
        Some(Limit::Stabilization {
            direction: Direction::Down,
            ..
        })
    ));
}

#[test]
fn history_record_keeps_recommendation_and_event() {
    let behavior = Behavior::default();
    let mut history = History::default();
    let d = run(
        &behavior,
        1,
        10,
        1,
        &[per_replica("m", 10.0, &[90.0])],
        &history,
        NOW,
    );
    history.record(&d, NOW, &behavior);
    assert_eq!(
        history.recommendations,
        vec![Recommendation {
            at_ms: NOW,
            replicas: 9
        }]
    );
    assert_eq!(
        history.events,
        vec![ScaleEvent {
            at_ms: NOW,
            from: 1,
            to: 5
        }]
    );
}

#[test]
fn a_window_that_holds_only_what_min_allows_is_not_named_as_the_limit() {
    // Load gone (raw 0) under `min: 1`, a recommendation of 1 inside the down window:
    // the result is 1 because of min, so the reason must not say the window held it
    // while "now wanting 0" (issue 13: `ScaledDown 5→1 … held by the window (now wants 0)`).
    let d = run(
        &Behavior::default(),
        1,
        10,
        5,
        &[per_replica("m", 10.0, &[0.0; 5])],
        &recs(&[(10, 1)]),
        NOW,
    );
    assert_eq!(d.desired, 1, "{d}");
    assert!(
        !matches!(d.limit, Some(Limit::Stabilization { .. })),
        "{:?}: {d}",
        d.limit
    );
    assert!(!d.reason.contains("wants 0"), "{d}");
}
