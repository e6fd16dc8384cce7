"""Properties of ``autoscale.decide`` over random settings, series, counts and last actions:
never outside minimum..maximum, nothing within a cooldown, out wins over in, in needs every
in-rule, no flapping, deterministic; and the setting's JSON round-trips."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.controller.autoscale import (
    ActionType,
    AutoscaleSetting,
    Capacity,
    Decision,
    Direction,
    LastAction,
    Metric,
    Operator,
    Outcome,
    Rule,
    Sample,
    ScaleAction,
    Statistic,
    TimeAggregation,
    decide,
    metric_value,
    parse_setting,
    projected,
    to_document,
    trim,
)

NOW = 100_000.0
QUEUES = ("jobs", "mail")


@st.composite
def capacities(draw: st.DrawFn) -> Capacity:
    low = draw(st.integers(0, 2))
    high = draw(st.integers(max(low, 6), 12))
    return Capacity(low, high, draw(st.integers(low, high)))


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    metric = draw(st.sampled_from(Metric))
    kind = draw(st.sampled_from(ActionType))
    value = draw(st.integers(0, 12) if kind is ActionType.EXACT_COUNT else st.integers(1, 5))
    if kind is ActionType.PERCENT_CHANGE_COUNT:
        value = draw(st.integers(1, 200))
    return Rule(
        metric=metric,
        operator=draw(st.sampled_from(Operator)),
        threshold=float(draw(st.integers(0, 100))),
        action=ScaleAction(
            draw(st.sampled_from(Direction)),
            kind,
            value,
            float(draw(st.sampled_from([1, 30, 300]))),
        ),
        time_window=float(draw(st.sampled_from([60, 300, 600]))),
        time_aggregation=draw(st.sampled_from(TimeAggregation)),
        statistic=draw(st.sampled_from(Statistic)),
        queue=draw(st.sampled_from(QUEUES)) if metric is Metric.QUEUE else None,
        divide_per_instance=draw(st.booleans()) if metric is Metric.QUEUE else False,
    )


autoscale_settings = st.builds(
    AutoscaleSetting, capacities(), st.lists(rules(), max_size=5).map(tuple)
)


@st.composite
def series(draw: st.DrawFn, per_sample: int) -> list[Sample]:
    """Mostly a series that covers the longest window (a reading before it), sometimes not."""
    times = draw(st.lists(st.floats(NOW - 900, NOW), max_size=12))
    if draw(st.integers(0, 9)) < 8:
        times += [NOW - 900.0, NOW - 30.0]
    value = st.floats(0, 200, allow_nan=False)
    empty = 0 if draw(st.integers(0, 9)) == 9 else 1  # sometimes readings with no data
    return [
        Sample(t, tuple(draw(st.lists(value, min_size=empty, max_size=per_sample))))
        for t in sorted(times)
    ]


@st.composite
def all_samples(draw: st.DrawFn) -> dict[str, list[Sample]]:
    out = {"cpu": draw(series(4))}
    for q in QUEUES:
        out[f"queue:devstoreaccount1/{q}"] = draw(series(1))
    return out


last_actions = st.none() | st.builds(
    LastAction, st.floats(NOW - 400, NOW), st.sampled_from([1.0, 30.0, 300.0])
)


def fires(rule: Rule, value: float | None) -> bool:
    return value is not None and rule.operator.holds(value, rule.threshold)


def values_of(
    setting: AutoscaleSetting, samples: dict[str, list[Sample]], current: int
) -> list[float | None]:
    return [metric_value(r, samples.get(r.source, ()), current, NOW) for r in setting.rules]


@st.composite
def counts(draw: st.DrawFn) -> int:
    """Mostly within a setting's usual capacity range, sometimes outside it."""
    return draw(st.integers(0, 15) if draw(st.integers(0, 4)) == 4 else st.integers(2, 6))


common = given(autoscale_settings, all_samples(), counts(), last_actions)


@common
@settings(max_examples=250)
def test_never_outside_minimum_and_maximum(
    setting: AutoscaleSetting, samples: dict[str, list[Sample]], current: int, last: LastAction
) -> None:
    d = decide(setting, samples, current, NOW, last)
    assert setting.capacity.minimum <= d.target <= setting.capacity.maximum, d


@common
@settings(max_examples=250)
def test_nothing_but_a_capacity_correction_within_a_cooldown(
    setting: AutoscaleSetting, samples: dict[str, list[Sample]], current: int, last: LastAction
) -> None:
    d = decide(setting, samples, current, NOW, last)
    if last is not None and last.at + last.cooldown > NOW and d.changed:
        assert d.outcome is Outcome.CAPACITY, d


@common
@settings(max_examples=250)
def test_out_wins_over_in(
    setting: AutoscaleSetting, samples: dict[str, list[Sample]], current: int, last: LastAction
) -> None:
    d = decide(setting, samples, current, NOW, last)
    values = values_of(setting, samples, current)
    if any(r.scales_out and fires(r, v) for r, v in zip(setting.rules, values, strict=True)):
        assert d.target >= current or d.outcome is Outcome.CAPACITY, d
    if d.outcome is Outcome.OUT:
        assert d.target > current and d.rule is not None
        assert fires(setting.rules[d.rule], values[d.rule])


@common
@settings(max_examples=250)
def test_scale_in_only_when_every_in_rule_fires_no_out_rule_does_and_no_data_is_missing(
    setting: AutoscaleSetting, samples: dict[str, list[Sample]], current: int, last: LastAction
) -> None:
    d = decide(setting, samples, current, NOW, last)
    if d.target < current and d.outcome is not Outcome.CAPACITY:
        assert d.outcome is Outcome.IN
        pairs = list(zip(setting.rules, values_of(setting, samples, current), strict=True))
        assert all(v is not None for _, v in pairs), d  # every metric known
        assert all(fires(r, v) for r, v in pairs if not r.scales_out), d
        assert not any(fires(r, v) for r, v in pairs if r.scales_out), d


@common
@settings(max_examples=250)
def test_no_flapping(
    setting: AutoscaleSetting, samples: dict[str, list[Sample]], current: int, last: LastAction
) -> None:
    """A scale-in never goes to a count at which a scale-out rule would fire on the same load."""
    d = decide(setting, samples, current, NOW, last)
    if d.outcome is not Outcome.IN:
        return
    for r, v in zip(setting.rules, values_of(setting, samples, current), strict=True):
        if r.scales_out and v is not None:
            assert not r.operator.holds(projected(r, v, current, d.target), r.threshold), d


@common
@settings(max_examples=200)
def test_deterministic_and_quiet_right_after_its_own_action(
    setting: AutoscaleSetting, samples: dict[str, list[Sample]], current: int, last: LastAction
) -> None:
    d: Decision = decide(setting, samples, current, NOW, last)
    assert decide(setting, samples, current, NOW, last) == d
    if d.changed and d.cooldown > 0:
        again = decide(setting, samples, d.target, NOW, LastAction(NOW, d.cooldown))
        assert not again.changed, (d, again)


@given(autoscale_settings, all_samples(), st.integers(0, 15))
def test_trim_keeps_what_every_window_needs(
    setting: AutoscaleSetting, samples: dict[str, list[Sample]], current: int
) -> None:
    keep = setting.longest_window
    trimmed = {k: trim(v, NOW, keep) for k, v in samples.items()}
    assert values_of(setting, trimmed, current) == values_of(setting, samples, current)


@given(autoscale_settings)
def test_the_json_document_round_trips(setting: AutoscaleSetting) -> None:
    rules_ok = all(
        r.action.type is not ActionType.CHANGE_COUNT or r.action.value >= 1 for r in setting.rules
    )
    if rules_ok:
        assert parse_setting(to_document(setting)) == setting


@given(
    st.floats(0, 100),
    st.integers(1, 10),
    st.integers(10, 90),
    st.integers(1, 60),
    st.integers(1, 4),
)
def test_a_cpu_pair_scales_in_exactly_when_it_would_not_flap(
    load: float, current: int, high: int, gap: int, step: int
) -> None:
    """Out above ``high``, in below ``high - gap`` by ``step``: the scale-in is taken to the
    largest decrease (at most ``step``) whose estimated load stays at or below ``high``."""
    low = max(0, high - gap)
    setting = AutoscaleSetting(
        Capacity(1, 20, 1),
        (
            Rule(Metric.CPU, Operator.GREATER_THAN, float(high), ScaleAction(Direction.INCREASE)),
            Rule(
                Metric.CPU,
                Operator.LESS_THAN,
                float(low),
                ScaleAction(Direction.DECREASE, ActionType.CHANGE_COUNT, step),
            ),
        ),
    )
    samples = {"cpu": [Sample(NOW - 600.0, (load,)), Sample(NOW, (load,))]}
    d = decide(setting, samples, current, NOW)
    if load > high:
        assert d.outcome is Outcome.OUT
        return
    if not load < low or current == 1:
        assert not d.changed
        return
    fits = [n for n in range(max(1, current - step), current) if load * current / n <= high]
    assert d.target == (min(fits) if fits else current), (d, fits)
