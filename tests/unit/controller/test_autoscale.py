"""The autoscale core: the rule format (every problem a sentence) and ``decide`` on Azure's own
examples (any out-rule scales out, all in-rules to scale in, cooldown, default, flapping)."""

from __future__ import annotations

from typing import Any

import pytest

from cumulo.controller.autoscale import (
    AutoscaleSettingError,
    LastAction,
    Outcome,
    Sample,
    cpu_percent,
    decide,
    format_duration,
    parse_duration,
    parse_setting,
    to_document,
    trim,
)
from cumulo.errors import InputError

NOW = 10_000.0
QUEUE = "queue:devstoreaccount1/jobs"


def rule(metric: str = "cpu", op: str = ">", threshold: float = 80, **kw: Any) -> dict[str, Any]:
    action = {
        "direction": kw.pop("direction", "Increase"),
        "type": kw.pop("type", "ChangeCount"),
        "value": kw.pop("value", 1),
        "cooldown": kw.pop("cooldown", "PT5M"),
    }
    doc = {"metric": metric, "operator": op, "threshold": threshold, "timeWindow": "PT10M"}
    if metric == "queue":
        doc["queue"] = "jobs"
    return doc | kw | {"scaleAction": action}


def setting(*rules: dict[str, Any], minimum: int = 1, maximum: int = 10, default: int = 1) -> Any:
    return parse_setting(
        {
            "capacity": {"minimum": minimum, "maximum": maximum, "default": default},
            "rules": list(rules),
        }
    )


def steady(value: float | tuple[float, ...], window: float = 600.0) -> list[Sample]:
    """A series with the same reading every 30 s over the window (and one before it)."""
    values = value if isinstance(value, tuple) else (value,)
    return [Sample(NOW - window + 30.0 * k, values) for k in range(int(window // 30) + 1)]


# -- the rule format ---------------------------------------------------------------------------


def test_a_setting_round_trips_with_every_default_written_out() -> None:
    s = setting(rule(), rule("queue", "<", 1, direction="Decrease", dividePerInstance=True))
    doc = to_document(s)
    assert doc["capacity"] == {"minimum": 1, "maximum": 10, "default": 1}
    assert doc["rules"][0] == {
        "metric": "cpu",
        "statistic": "Average",
        "timeWindow": "PT10M",
        "timeAggregation": "Average",
        "operator": "GreaterThan",
        "threshold": 80.0,
        "scaleAction": {
            "direction": "Increase",
            "type": "ChangeCount",
            "value": 1,
            "cooldown": "PT5M",
        },
    }
    assert doc["rules"][1]["queue"] == "jobs" and doc["rules"][1]["dividePerInstance"] is True
    assert parse_setting(doc) == s


def test_azure_spellings_are_accepted() -> None:
    """Counts as strings and operator names as Azure's autoscale JSON writes them."""
    s = parse_setting(
        {
            "capacity": {"minimum": "2", "maximum": "5", "default": "3"},
            "rules": [
                {
                    "metric": "CPU",
                    "operator": "greaterThanOrEqual",
                    "threshold": 75,
                    "timeWindow": "PT5M",
                    "timeAggregation": "maximum",
                    "statistic": "Max",
                    "scaleAction": {
                        "direction": "increase",
                        "type": "PercentChangeCount",
                        "value": "50",
                        "cooldown": "PT1H",
                    },
                }
            ],
        }
    )
    assert (s.capacity.minimum, s.capacity.maximum, s.capacity.default) == (2, 5, 3)
    r = s.rules[0]
    assert r.operator.value == "GreaterThanOrEqual" and r.action.cooldown == 3600.0
    assert r.time_aggregation.value == "Maximum" and r.action.value == 50


def test_every_problem_is_a_sentence_naming_the_field_and_value() -> None:
    with pytest.raises(AutoscaleSettingError) as info:
        parse_setting(
            {
                "capacity": {"minimum": 4, "maximum": 2},
                "rules": [
                    {"metric": "memory", "operator": ">", "threshold": 1, "scaleAction": {}},
                    rule("queue", queue="Bad_Name", timeWindow="10 minutes"),
                    rule(threshold=150, cooldown="P30D", extra=1),
                    rule(type="ExactCount", value=None),
                ],
            }
        )
    problems = info.value.problems
    assert isinstance(info.value, InputError) and info.value.code == "InvalidAutoscaleSetting"
    expected = [
        "capacity.minimum (4) is above capacity.maximum (2).",
        "rules[0].metric is 'memory'; use one of cpu, queue.",
        "rules[0].scaleAction has no direction; use Increase or Decrease.",
        "rules[1].queue is 'Bad_Name'; a queue rule names its queue",
        "rules[1].timeWindow is '10 minutes'; write a duration as ISO 8601",
        "rules[2].extra is not a field of an autoscale setting",
        "rules[2].threshold is 150; a CPU threshold is a percentage (0-100).",
        "rules[2].scaleAction.cooldown is 'P30D' (2592000 s); it must be from PT1S to P7D.",
        "rules[3].scaleAction.value is missing",
    ]
    for sentence in expected:
        assert any(p.startswith(sentence) for p in problems), (sentence, problems)
    assert all(p.endswith(".") for p in problems), problems


def test_a_cpu_rule_refuses_queue_fields_and_more_than_ten_rules_are_refused() -> None:
    with pytest.raises(AutoscaleSettingError, match=r"rules\[0\]\.queue applies to queue rules"):
        parse_setting({"capacity": {"minimum": 1, "maximum": 2}, "rules": [rule(queue="jobs")]})
    with pytest.raises(AutoscaleSettingError, match="has 11 rules; a setting has at most 10"):
        parse_setting({"capacity": {"minimum": 1, "maximum": 2}, "rules": [rule()] * 11})
    with pytest.raises(AutoscaleSettingError, match="is a JSON object with capacity and rules"):
        parse_setting([1, 2])


def test_durations() -> None:
    assert parse_duration("PT5M") == 300 and parse_duration("pt30s") == 30
    assert parse_duration("P1DT1H") == 90_000 and parse_duration(2.5) == 2.5
    assert parse_duration("PT") is None and parse_duration("5m") is None
    assert parse_duration(True) is None
    assert [format_duration(x) for x in (300, 5400, 86_400, 2.5, 0)] == [
        "PT5M",
        "PT1H30M",
        "P1D",
        "PT2.5S",
        "PT0S",
    ]


# -- decide ------------------------------------------------------------------------------------


def test_azure_flapping_example_defers_the_scale_in() -> None:
    """Azure Monitor's flapping article: out above 50 %, in below 30 %, by one. At 1 instance and
    56 % it scales out; at 2 instances the average is 28 %, but going back to 1 would give 56 %
    again, so the scale-in waits until the load really falls."""
    s = setting(rule(op=">", threshold=50), rule(op="<", threshold=30, direction="Decrease"))
    out = decide(s, {"cpu": steady(56.0)}, 1, NOW)
    assert (out.outcome, out.target) == (Outcome.OUT, 2)
    assert (
        out.reason == "rules[0] (cpu Average over PT10M > 50) fired with 56: scale out from 1 to 2."
    )
    held = decide(s, {"cpu": steady((28.0, 28.0))}, 2, NOW)
    assert not held.changed and "would flap" in held.reason
    assert "at 1 rules[0] (cpu Average over PT10M > 50) would see 56" in held.reason
    assert decide(s, {"cpu": steady((20.0, 20.0))}, 2, NOW).target == 1


def test_azure_best_practice_example_with_a_margin() -> None:
    """Out at >= 80 %, in at <= 60 %: at 3 instances and 60 % the estimate is 90 % at 2 (skip);
    at 50 % it is 75 % (scale in)."""
    s = setting(rule(op=">=", threshold=80), rule(op="<=", threshold=60, direction="Decrease"))
    assert not decide(s, {"cpu": steady(60.0)}, 3, NOW).changed
    done = decide(s, {"cpu": steady(50.0)}, 3, NOW)
    assert (done.outcome, done.target, done.rule) == (Outcome.IN, 2, 1)


def test_flapping_check_tries_a_smaller_scale_in() -> None:
    """A scale-in by 3 that would flap becomes the largest decrease that would not."""
    s = setting(
        rule(op=">", threshold=70),
        rule(op="<", threshold=40, direction="Decrease", value=3),
    )
    d = decide(s, {"cpu": steady(30.0)}, 4, NOW)  # total 120 %: at 1 -> 120, at 2 -> 60
    assert (d.outcome, d.target) == (Outcome.IN, 2)
    assert "scale in from 4 to 2 (not 1: 1 would flap)" in d.reason


def test_any_out_rule_scales_out_and_the_largest_count_wins() -> None:
    s = setting(
        rule(op=">", threshold=80, value=1),
        rule("queue", ">", 100, type="ExactCount", value=6),
        rule("queue", "<", 5, direction="Decrease"),
    )
    d = decide(s, {"cpu": steady(10.0), QUEUE: steady(500.0)}, 2, NOW)
    assert (d.outcome, d.target, d.rule, d.value) == (Outcome.OUT, 6, 1, 500.0)
    # Both out-rules fire: the larger result wins, whatever the order.
    d = decide(s, {"cpu": steady(95.0), QUEUE: steady(500.0)}, 5, NOW)
    assert (d.target, d.rule) == (6, 0)


def test_out_wins_over_in() -> None:
    s = setting(rule("queue", ">", 10, value=2), rule(op="<", threshold=30, direction="Decrease"))
    d = decide(s, {"cpu": steady(5.0), QUEUE: steady(50.0)}, 3, NOW)
    assert (d.outcome, d.target) == (Outcome.OUT, 5)


def test_scale_in_needs_every_in_rule_and_takes_the_smallest_decrease() -> None:
    s = setting(
        rule(op="<", threshold=30, direction="Decrease", value=3),
        rule("queue", "<", 5, direction="Decrease", value=1),
    )
    held = decide(s, {"cpu": steady(10.0), QUEUE: steady(20.0)}, 5, NOW)
    assert not held.changed and "scale-in rule rules[1]" in held.reason
    d = decide(s, {"cpu": steady(10.0), QUEUE: steady(2.0)}, 5, NOW)
    assert (d.outcome, d.target, d.rule) == (Outcome.IN, 4, 1)


def test_cooldown_blocks_every_action_but_a_capacity_correction() -> None:
    s = setting(rule("queue", ">", 10), minimum=2, maximum=4, default=2)
    last = LastAction(at=NOW - 100.0, cooldown=300.0)
    d = decide(s, {QUEUE: steady(50.0)}, 2, NOW, last)
    assert not d.changed and d.reason == "Cooling down for 200 s more after the last scale action."
    assert decide(s, {QUEUE: steady(50.0)}, 2, NOW + 200.0, last).target == 3
    fix = decide(s, {QUEUE: steady(50.0)}, 7, NOW, last)
    assert (fix.outcome, fix.target) == (Outcome.CAPACITY, 4)
    assert fix.reason == "7 instances is outside the capacity 2-4: scale to the maximum, 4."


def test_never_beyond_the_maximum() -> None:
    s = setting(rule("queue", ">", 10, value=5), maximum=3)
    d = decide(s, {QUEUE: steady(50.0)}, 2, NOW)
    assert d.target == 3
    at_max = decide(s, {QUEUE: steady(50.0)}, 3, NOW)
    assert not at_max.changed and "at its maximum of 3" in at_max.reason


def test_missing_data_scales_out_to_the_default_and_never_in() -> None:
    s = setting(rule("queue", ">", 10), rule("queue", "<", 1, direction="Decrease"), default=3)
    unreadable = {QUEUE: [Sample(NOW - 600.0 + 30 * k, ()) for k in range(21)]}
    d = decide(s, unreadable, 1, NOW)
    assert (d.outcome, d.target) == (Outcome.DEFAULT, 3)
    assert "has no data for its time window" in d.reason
    held = decide(s, unreadable, 5, NOW)
    assert not held.changed and "no scale-in without it" in held.reason


def test_a_series_younger_than_its_window_only_waits() -> None:
    """A new setting or a restarted controller has no history yet: no default, no scale-in."""
    s = setting(rule("queue", ">", 10), rule("queue", "<", 1, direction="Decrease"), default=3)
    young = {QUEUE: [Sample(NOW - 60.0, (0.0,)), Sample(NOW, (0.0,))]}
    for current in (1, 5):
        d = decide(s, young, current, NOW)
        assert not d.changed and "not been observed for its whole time window" in d.reason


def test_a_window_not_yet_covered_is_no_data() -> None:
    """A series younger than the window does not fire a rule (one reading of a 10-minute window
    is not an average over 10 minutes)."""
    s = setting(rule("queue", ">", 10))
    young = [Sample(NOW - 60.0, (500.0,)), Sample(NOW, (500.0,))]
    assert not decide(s, {QUEUE: young}, 1, NOW).changed
    assert decide(s, {QUEUE: [Sample(NOW - 600.0, (0.0,)), *young]}, 1, NOW).changed


def test_messages_per_instance() -> None:
    """dividePerInstance: 40 messages over 4 instances is 10 per instance; going to 3 would make
    it 13.3, above the out-threshold of 12, so the scale-in waits."""
    s = setting(
        rule("queue", ">", 12, dividePerInstance=True),
        rule("queue", "<", 11, dividePerInstance=True, direction="Decrease"),
    )
    d = decide(s, {QUEUE: steady(40.0)}, 4, NOW)
    assert d.values == (10.0, 10.0) and not d.changed and "would see 13.33" in d.reason
    assert decide(s, {QUEUE: steady(30.0)}, 4, NOW).target == 3  # 7.5 now, 10 at 3


def test_time_aggregation_and_statistic() -> None:
    series = [Sample(NOW - 600.0 + 60 * k, (10.0 * k, 0.0)) for k in range(11)]
    by_max = setting(rule(op=">", threshold=40, timeAggregation="Maximum", statistic="Max"))
    assert decide(by_max, {"cpu": series}, 2, NOW).values == (100.0,)
    by_last_min = setting(rule(op=">", threshold=40, timeAggregation="Last", statistic="Min"))
    assert decide(by_last_min, {"cpu": series}, 2, NOW).values == (0.0,)
    average = setting(rule(op=">", threshold=40))
    assert decide(average, {"cpu": series}, 2, NOW).values == (27.5,)  # (5+10+…+50)/10


def test_percent_change_rounds_up() -> None:
    s = setting(rule("queue", ">", 10, type="PercentChangeCount", value=50), maximum=100)
    assert decide(s, {QUEUE: steady(50.0)}, 3, NOW).target == 5  # 3 + ceil(1.5)


def test_trim_keeps_one_sample_before_the_window() -> None:
    series = steady(1.0)
    kept = trim(series, NOW, 120.0)
    assert kept[0].time == NOW - 120.0 and kept[-1].time == NOW and len(kept) == 5


def test_cpu_percent() -> None:
    assert cpu_percent(0.5, 1.0, 1) == 50.0
    assert cpu_percent(1.0, 1.0, 2) == 50.0
    assert cpu_percent(3.0, 1.0, 2) == 100.0  # clamped
    assert cpu_percent(-1.0, 1.0, 1) is None  # the counter went back: a restart
    assert cpu_percent(1.0, 0.0, 1) is None
