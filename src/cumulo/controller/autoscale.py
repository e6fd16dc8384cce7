"""Autoscale, the pure core: a role's autoscale setting, and ``decide`` — how many instances now.

Modelled on Azure's autoscale for Cloud Services (the classic portal's CPU and queue rules, and
Azure Monitor autoscale settings, reference §5): per role a **capacity** (``minimum``,
``maximum``, ``default``) and up to 10 **rules**. A rule watches one metric —

- ``cpu``: the CPU percentage of the role's instances (each instance's CPU time over the
  sampling interval, as a percentage of its VM size's cores), combined across the instances by
  ``statistic`` (``Average``, ``Min``, ``Max``);
- ``queue``: the approximate message count of a queue of a storage account the platform serves,
  divided by the role's instance count when ``dividePerInstance`` is true (the classic portal's
  "target per machine", Azure Monitor's ``dividePerInstance``) —

aggregated over ``timeWindow`` by ``timeAggregation`` (``Average``, ``Minimum``, ``Maximum``,
``Last``), compared with ``threshold`` by ``operator``; when it holds the rule **fires** and
asks for its ``scaleAction``: ``Increase`` or ``Decrease`` by ``value`` instances
(``ChangeCount``), by ``value`` percent of the current count (``PercentChangeCount``, rounded
up), or to exactly ``value`` instances (``ExactCount``), then waits ``cooldown``.

``decide`` applies Azure's evaluation rules:

1. A count outside ``minimum..maximum`` is brought back into range first (cooldown or not).
2. Nothing else happens while the last action's cooldown runs.
3. **Scale out if any** scale-out rule fires: the largest resulting count wins.
4. When a rule's metric has no data for a window it was observed for (the metric is
   unavailable), the count goes up to ``default`` if it is below it; and while any rule has no
   value (unavailable, or not yet observed for its whole window) the count never goes down.
5. **Scale in only if all** scale-in rules fire: the smallest decrease wins.
6. **No flapping**: before a scale-in to N, each scale-out rule is evaluated on the metric as it
   would be at N instances (a per-instance metric — CPU, or a queue divided per instance — is
   scaled by current/N); if one would fire, the next larger N is tried up to current − 1, and if
   every N would flap the scale-in is skipped (Azure Monitor's "flapping" check).
7. The result is always within ``minimum..maximum``.

Durations are ISO 8601 (``PT5M``, ``PT30S``, ``PT1H``) as Azure writes them, or a number of
seconds. Everything here is pure: the autoscaler (``controller.autoscaler``) samples the
metrics, keeps the series and acts on the decision through the management ``scale`` operation.
"""

from __future__ import annotations

import contextlib
import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cumulo.errors import InputError

MAX_RULES = 10
MAX_INSTANCES = 1000
MIN_WINDOW = 1.0
MAX_WINDOW = 86_400.0
MAX_COOLDOWN = 7 * 86_400.0
DEV_ACCOUNT = "devstoreaccount1"

_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class AutoscaleSettingError(InputError):
    """An autoscale setting with one or more problems (all reported at once, one per line)."""

    code = "InvalidAutoscaleSetting"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


class Metric(enum.StrEnum):
    CPU = "cpu"
    QUEUE = "queue"


class Operator(enum.StrEnum):
    GREATER_THAN = "GreaterThan"
    GREATER_THAN_OR_EQUAL = "GreaterThanOrEqual"
    LESS_THAN = "LessThan"
    LESS_THAN_OR_EQUAL = "LessThanOrEqual"
    EQUALS = "Equals"
    NOT_EQUALS = "NotEquals"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]

    def holds(self, value: float, threshold: float) -> bool:
        if self is Operator.GREATER_THAN:
            return value > threshold
        if self is Operator.GREATER_THAN_OR_EQUAL:
            return value >= threshold
        if self is Operator.LESS_THAN:
            return value < threshold
        if self is Operator.LESS_THAN_OR_EQUAL:
            return value <= threshold
        if self is Operator.EQUALS:
            return value == threshold
        return value != threshold


_SYMBOLS = {
    Operator.GREATER_THAN: ">",
    Operator.GREATER_THAN_OR_EQUAL: ">=",
    Operator.LESS_THAN: "<",
    Operator.LESS_THAN_OR_EQUAL: "<=",
    Operator.EQUALS: "==",
    Operator.NOT_EQUALS: "!=",
}


class Statistic(enum.StrEnum):
    """How one sample's per-instance values combine (CPU: one value per instance)."""

    AVERAGE = "Average"
    MIN = "Min"
    MAX = "Max"


class TimeAggregation(enum.StrEnum):
    """How the samples in the time window combine."""

    AVERAGE = "Average"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"
    LAST = "Last"


class Direction(enum.StrEnum):
    INCREASE = "Increase"
    DECREASE = "Decrease"


class ActionType(enum.StrEnum):
    CHANGE_COUNT = "ChangeCount"
    PERCENT_CHANGE_COUNT = "PercentChangeCount"
    EXACT_COUNT = "ExactCount"


@dataclass(frozen=True)
class Capacity:
    minimum: int
    maximum: int
    default: int
    """The count to scale out to when a metric has no data (never a reason to scale in)."""


@dataclass(frozen=True)
class ScaleAction:
    direction: Direction
    type: ActionType = ActionType.CHANGE_COUNT
    value: int = 1
    cooldown: float = 300.0
    """Seconds to wait after this action before the next one."""

    def target(self, current: int) -> int:
        """The count this action asks for from ``current`` (not yet clamped to the capacity)."""
        if self.type is ActionType.EXACT_COUNT:
            return self.value
        step = self.value
        if self.type is ActionType.PERCENT_CHANGE_COUNT:
            step = math.ceil(current * self.value / 100)
        return current + step if self.direction is Direction.INCREASE else current - step


@dataclass(frozen=True)
class Rule:
    metric: Metric
    operator: Operator
    threshold: float
    action: ScaleAction
    time_window: float = 600.0
    """Seconds of samples the rule looks at."""
    time_aggregation: TimeAggregation = TimeAggregation.AVERAGE
    statistic: Statistic = Statistic.AVERAGE
    queue: str | None = None
    account: str = DEV_ACCOUNT
    divide_per_instance: bool = False

    @property
    def source(self) -> str:
        """The key of the metric series this rule reads (rules may share one)."""
        if self.metric is Metric.QUEUE:
            return f"queue:{self.account}/{self.queue}"
        return "cpu"

    @property
    def per_instance(self) -> bool:
        """Whether the metric's value falls as instances are added (for the flapping check)."""
        return self.metric is Metric.CPU or self.divide_per_instance

    @property
    def scales_out(self) -> bool:
        return self.action.direction is Direction.INCREASE

    def describe(self) -> str:
        """``queue 'jobs' (per instance) Average over PT2S > 5``."""
        if self.metric is Metric.QUEUE:
            what = f"queue '{self.queue}'"
            if self.account != DEV_ACCOUNT:
                what += f" of account {self.account}"
            if self.divide_per_instance:
                what += " per instance"
        else:
            what = "cpu" if self.statistic is Statistic.AVERAGE else f"cpu {self.statistic}"
        return (
            f"{what} {self.time_aggregation} over {format_duration(self.time_window)} "
            f"{self.operator.symbol} {_num(self.threshold)}"
        )


@dataclass(frozen=True)
class AutoscaleSetting:
    capacity: Capacity
    rules: tuple[Rule, ...] = ()

    @property
    def longest_window(self) -> float:
        return max((r.time_window for r in self.rules), default=0.0)

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(r.source for r in self.rules)


@dataclass(frozen=True)
class Sample:
    """One reading of a metric at ``time`` (wall seconds): one value per instance for CPU, one
    value (the message count) for a queue. An empty ``values`` is a reading with no data."""

    time: float
    values: tuple[float, ...]


@dataclass(frozen=True)
class LastAction:
    """The last scale action autoscale took: when, and the cooldown it started."""

    at: float
    cooldown: float


class Outcome(enum.StrEnum):
    NONE = "none"
    OUT = "out"
    IN = "in"
    CAPACITY = "capacity"
    DEFAULT = "default"


@dataclass(frozen=True)
class Decision:
    current: int
    target: int
    outcome: Outcome
    reason: str
    """A sentence saying what was decided and why."""
    rule: int | None = None
    """The index of the rule that decided (in ``setting.rules``), if one did."""
    value: float | None = None
    """That rule's metric value."""
    cooldown: float = 0.0
    """The cooldown the action starts (when it changes the count)."""
    values: tuple[float | None, ...] = field(default=())
    """Each rule's metric value (None: no data for its window)."""

    @property
    def changed(self) -> bool:
        return self.target != self.current


# -- the decision ------------------------------------------------------------------------------


def _combine(statistic: Statistic, values: tuple[float, ...]) -> float:
    if statistic is Statistic.MIN:
        return min(values)
    if statistic is Statistic.MAX:
        return max(values)
    return sum(values) / len(values)


def _aggregate(how: TimeAggregation, values: list[float]) -> float:
    if how is TimeAggregation.MINIMUM:
        return min(values)
    if how is TimeAggregation.MAXIMUM:
        return max(values)
    if how is TimeAggregation.LAST:
        return values[-1]
    return sum(values) / len(values)


def covered(rule: Rule, series: Sequence[Sample], now: float) -> bool:
    """Whether ``series`` has been observed for the rule's whole window (a reading, with data
    or not, at or before its start)."""
    start = now - rule.time_window
    return any(s.time <= start for s in series)


def metric_value(rule: Rule, series: Sequence[Sample], current: int, now: float) -> float | None:
    """The rule's metric over its time window ending at ``now``, or None without enough data.

    Enough data means a series observed for the whole window (a sample at or before
    ``now - time_window``) with at least one non-empty sample inside it, so a fresh autoscaler
    or a new setting never acts on one reading of a long window.
    """
    start = now - rule.time_window
    if not covered(rule, series, now):
        return None
    inside = sorted((s for s in series if start < s.time <= now and s.values), key=lambda s: s.time)
    if not inside:
        return None
    per_sample = [_combine(rule.statistic, s.values) for s in inside]
    value = _aggregate(rule.time_aggregation, per_sample)
    if rule.metric is Metric.QUEUE and rule.divide_per_instance:
        value /= max(current, 1)
    return value


def projected(rule: Rule, value: float, current: int, count: int) -> float:
    """The rule's metric as it would be at ``count`` instances (same total load)."""
    if not rule.per_instance or count == current:
        return value
    total = value * max(current, 1)
    if count <= 0:
        return math.inf if total > 0 else 0.0
    return total / count


def _clamp(capacity: Capacity, count: int) -> int:
    return max(capacity.minimum, min(capacity.maximum, count))


def decide(
    setting: AutoscaleSetting,
    samples: Mapping[str, Sequence[Sample]],
    current: int,
    now: float,
    last_action: LastAction | None = None,
) -> Decision:
    """The instance count the role should have now, with the sentence why (see the module
    docstring for the rules). ``samples`` maps each rule's ``source`` to its series."""
    cap = setting.capacity
    rules = setting.rules
    values = tuple(metric_value(r, samples.get(r.source, ()), current, now) for r in rules)
    young = tuple(not covered(r, samples.get(r.source, ()), now) for r in rules)
    longest_cooldown = max((r.action.cooldown for r in rules), default=0.0)

    def no_change(reason: str) -> Decision:
        return Decision(current, current, Outcome.NONE, reason, values=values)

    if current < cap.minimum or current > cap.maximum:
        bound = "minimum" if current < cap.minimum else "maximum"
        target = _clamp(cap, current)
        return Decision(
            current,
            target,
            Outcome.CAPACITY,
            f"{_instances(current)} is outside the capacity {cap.minimum}-{cap.maximum}: scale "
            f"to the {bound}, {target}.",
            cooldown=longest_cooldown,
            values=values,
        )
    if last_action is not None and now < last_action.at + last_action.cooldown:
        left = last_action.at + last_action.cooldown - now
        return no_change(f"Cooling down for {_num(left)} s more after the last scale action.")

    # Scale out if any scale-out rule fires; the largest count wins.
    out: list[tuple[int, int]] = []
    for i, rule in enumerate(rules):
        value = values[i]
        if rule.scales_out and value is not None and rule.operator.holds(value, rule.threshold):
            out.append((_clamp(cap, rule.action.target(current)), i))
    if out:
        target, i = max(out, key=lambda t: (t[0], -t[1]))
        rule, value = rules[i], values[i]
        assert value is not None
        if target > current:
            return Decision(
                current,
                target,
                Outcome.OUT,
                f"rules[{i}] ({rule.describe()}) fired with {_num(value)}: scale out from "
                f"{current} to {target}.",
                rule=i,
                value=value,
                cooldown=rule.action.cooldown,
                values=values,
            )

    # No data although the window was observed (a queue that cannot be read, no CPU counter):
    # the metric is unavailable. A series younger than its window is not (a new setting, a
    # restarted controller): it only waits.
    missing = [i for i, v in enumerate(values) if v is None and not young[i]]
    if missing and current < cap.default:
        i = missing[0]
        return Decision(
            current,
            cap.default,
            Outcome.DEFAULT,
            f"rules[{i}] ({rules[i].describe()}) has no data for its time window: scale out "
            f"from {current} to the default, {cap.default}.",
            rule=i,
            cooldown=longest_cooldown,
            values=values,
        )
    if out:
        # A scale-out rule fired: never scale in, even if it asks for no more instances.
        target, i = max(out, key=lambda t: (t[0], -t[1]))
        limit = (
            f"the role is at its maximum of {cap.maximum}"
            if current >= cap.maximum
            else f"its action asks for {target}"
        )
        return no_change(
            f"rules[{i}] ({rules[i].describe()}) fired with {_num(_v(values[i]))}, but {limit}."
        )

    if missing:
        # Without every metric the load is not known: never scale in.
        i = missing[0]
        return no_change(
            f"rules[{i}] ({rules[i].describe()}) has no data for its time window; no scale-in "
            "without it."
        )
    waiting = [i for i, v in enumerate(values) if v is None]
    if waiting:
        i = waiting[0]
        return no_change(
            f"rules[{i}] ({rules[i].describe()}) has not been observed for its whole time window "
            "yet; no scale-in before."
        )

    # Scale in only if every scale-in rule fires; the smallest decrease wins.
    ins = [i for i, r in enumerate(rules) if not r.scales_out]
    if not ins:
        return no_change("No scale-out rule fired and there is no scale-in rule.")
    held = [i for i in ins if not rules[i].operator.holds(_v(values[i]), rules[i].threshold)]
    if held:
        i = held[0]
        return no_change(
            f"No scale-out rule fired; scale-in rule rules[{i}] ({rules[i].describe()}) did "
            f"not either ({_num(_v(values[i]))})."
        )
    target, i = max(
        ((_clamp(cap, rules[j].action.target(current)), j) for j in ins),
        key=lambda t: (t[0], -t[1]),
    )
    if target >= current:
        return no_change(
            f"Every scale-in rule fired, but the role is at its minimum of {cap.minimum}."
        )
    blocker = ""
    for count in range(target, current):
        blocker = _flaps(rules, values, current, count)
        if not blocker:
            shown = "; ".join(
                f"rules[{j}] ({rules[j].describe()}) with {_num(_v(values[j]))}" for j in ins
            )
            return Decision(
                current,
                count,
                Outcome.IN,
                f"Every scale-in rule fired ({shown}): scale in from {current} to {count}"
                + (f" (not {target}: {target} would flap)." if count != target else "."),
                rule=i,
                value=values[i],
                cooldown=rules[i].action.cooldown,
                values=values,
            )
    return no_change(
        f"Every scale-in rule fired, but scaling in from {current} would flap: {blocker}."
    )


def _flaps(rules: Sequence[Rule], values: Sequence[float | None], current: int, count: int) -> str:
    """Why scaling in to ``count`` would make a scale-out rule fire ('' if none would)."""
    for j, rule in enumerate(rules):
        value = values[j]
        if not rule.scales_out or value is None:
            continue
        estimate = projected(rule, value, current, count)
        if rule.operator.holds(estimate, rule.threshold):
            return (
                f"at {count} rules[{j}] ({rule.describe()}) would see {_num(estimate)} and "
                "scale out again"
            )
    return ""


def _v(value: float | None) -> float:
    assert value is not None
    return value


def _instances(n: int) -> str:
    return f"{n} instance" if n == 1 else f"{n} instances"


def _num(x: float) -> str:
    if math.isinf(x):
        return "infinity"
    return f"{x:.0f}" if x == round(x) else f"{x:.2f}".rstrip("0")


def trim(series: Sequence[Sample], now: float, keep: float) -> list[Sample]:
    """The samples a series needs for windows up to ``keep`` seconds: those inside it and the
    newest one before it (which shows the series covers the whole window)."""
    start = now - keep
    older = [s for s in series if s.time <= start]
    inside = [s for s in series if s.time > start]
    return ([max(older, key=lambda s: s.time)] if older else []) + inside


def cpu_percent(cpu_seconds: float, elapsed: float, cores: float) -> float | None:
    """CPU use over ``elapsed`` seconds as a percentage of ``cores`` (0-100), or None when it
    cannot be told (no time passed, or the counter went back: the instance restarted)."""
    if elapsed <= 0 or cpu_seconds < 0 or cores <= 0:
        return None
    return min(100.0, 100.0 * cpu_seconds / (elapsed * cores))


# -- durations ---------------------------------------------------------------------------------


def parse_duration(value: object) -> float | None:
    """Seconds of an ISO 8601 duration (``PT5M``) or a number of seconds; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return round(float(value), 3) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    m = _DURATION.match(value.strip().upper())
    if m is None or not any(m.groupdict().values()) or value.strip().upper().endswith("T"):
        return None
    d, h, mi, s = (m.group(k) for k in ("d", "h", "m", "s"))
    total = int(d or 0) * 86_400.0 + int(h or 0) * 3_600.0 + int(mi or 0) * 60.0
    return round(total + float(s or 0.0), 3)


def format_duration(seconds: float) -> str:
    """``PT5M``, ``PT1H30M``, ``PT2.5S``, ``P1D``: the ISO 8601 form of ``seconds`` (to the
    millisecond)."""
    whole = int(seconds)
    frac = round(seconds - whole, 3)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    out = f"P{days}D" if days else "P"
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if secs or frac:
        time += f"{round(secs + frac, 3):.3f}".rstrip("0").rstrip(".") + "S"
    if time:
        out += "T" + time
    return out if out != "P" else "PT0S"


# -- parsing and validation --------------------------------------------------------------------


_OPERATOR_ALIASES = {
    **{o.value.lower(): o for o in Operator},
    **{o.symbol: o for o in Operator},
    "=": Operator.EQUALS,
}
_CAPACITY_KEYS = {"minimum", "maximum", "default"}
_RULE_KEYS = {
    "metric",
    "queue",
    "account",
    "dividePerInstance",
    "statistic",
    "timeWindow",
    "timeAggregation",
    "operator",
    "threshold",
    "scaleAction",
}
_ACTION_KEYS = {"direction", "type", "value", "cooldown"}


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)

    def unknown(self, where: str, data: Mapping[str, Any], known: set[str]) -> None:
        for key in sorted(set(data) - known):
            self.add(
                f"{where}{key} is not a field of an autoscale setting; use "
                f"{', '.join(sorted(known))}."
            )

    def integer(
        self, path: str, value: object, low: int, high: int, default: int | None = None
    ) -> int:
        if value is None and default is not None:
            return default
        if value is None:
            self.add(f"{path} is missing; it must be a whole number from {low} to {high}.")
            return low
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())  # Azure writes counts as strings ("1")
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(f"{path} is {value!r}; it must be a whole number from {low} to {high}.")
            return low
        if not low <= value <= high:
            self.add(f"{path} is {value}; it must be from {low} to {high}.")
            return max(low, min(high, value))
        return value

    def choice(self, path: str, value: object, enum_: type[Any], default: Any) -> Any:
        if value is None:
            return default
        if isinstance(value, str):
            for member in enum_:
                if member.value.lower() == value.strip().lower():
                    return member
        self.add(f"{path} is {value!r}; use one of {', '.join(m.value for m in enum_)}.")
        return default

    def duration(self, path: str, value: object, low: float, high: float, default: float) -> float:
        if value is None:
            return default
        seconds = parse_duration(value)
        if seconds is None:
            self.add(
                f"{path} is {value!r}; write a duration as ISO 8601 (PT30S, PT5M, PT1H) or a "
                "number of seconds."
            )
            return default
        if not low <= seconds <= high:
            self.add(
                f"{path} is {value!r} ({_num(seconds)} s); it must be from "
                f"{format_duration(low)} to {format_duration(high)}."
            )
            return default
        return seconds


def parse_setting(data: object) -> AutoscaleSetting:
    """An ``AutoscaleSetting`` from its JSON document; every problem at once, each a sentence
    naming the field and its value (``AutoscaleSettingError``)."""
    p = _Problems()
    if not isinstance(data, Mapping):
        raise AutoscaleSettingError(
            [f"An autoscale setting is a JSON object with capacity and rules, not {data!r}."]
        )
    p.unknown("", data, {"capacity", "rules"})
    capacity = _capacity(p, data.get("capacity"))
    raw_rules = data.get("rules", [])
    rules: list[Rule] = []
    if not isinstance(raw_rules, list):
        p.add(f"rules is {raw_rules!r}; it must be a list of rules.")
    elif len(raw_rules) > MAX_RULES:
        p.add(f"rules has {len(raw_rules)} rules; a setting has at most {MAX_RULES}.")
    else:
        for i, raw in enumerate(raw_rules):
            rule = _rule(p, f"rules[{i}]", raw)
            if rule is not None:
                rules.append(rule)
    if p.items:
        raise AutoscaleSettingError(p.items)
    return AutoscaleSetting(capacity, tuple(rules))


def _capacity(p: _Problems, raw: object) -> Capacity:
    if not isinstance(raw, Mapping):
        p.add(
            f"capacity is {raw!r}; it must be an object with minimum, maximum and (optionally) "
            "default instance counts."
        )
        return Capacity(1, 1, 1)
    p.unknown("capacity.", raw, _CAPACITY_KEYS)
    if "minimum" not in raw or "maximum" not in raw:
        p.add("capacity needs both minimum and maximum.")
    low = p.integer("capacity.minimum", raw.get("minimum"), 0, MAX_INSTANCES, 1)
    high = p.integer("capacity.maximum", raw.get("maximum"), 0, MAX_INSTANCES, low)
    default = p.integer("capacity.default", raw.get("default"), 0, MAX_INSTANCES, low)
    if low > high:
        p.add(f"capacity.minimum ({low}) is above capacity.maximum ({high}).")
    elif not low <= default <= high:
        p.add(f"capacity.default ({default}) is outside minimum..maximum ({low}..{high}).")
    return Capacity(low, high, default)


def _rule(p: _Problems, path: str, raw: object) -> Rule | None:
    if not isinstance(raw, Mapping):
        p.add(f"{path} is {raw!r}; a rule is an object.")
        return None
    before = len(p.items)
    p.unknown(f"{path}.", raw, _RULE_KEYS)
    metric = p.choice(f"{path}.metric", raw.get("metric"), Metric, None)
    if metric is None and "metric" not in raw:
        p.add(f"{path} has no metric; use cpu or queue.")
    queue, account, divide = None, DEV_ACCOUNT, False
    if metric is Metric.QUEUE:
        queue = raw.get("queue")
        if not isinstance(queue, str) or not _QUEUE_NAME.match(queue):
            p.add(
                f"{path}.queue is {queue!r}; a queue rule names its queue (3-63 lower-case "
                "letters, digits and single hyphens)."
            )
        account = raw.get("account", DEV_ACCOUNT)
        if not isinstance(account, str) or not _ACCOUNT_NAME.match(account):
            p.add(
                f"{path}.account is {account!r}; a storage account name is 3-24 lower-case "
                "letters and digits."
            )
        divide = raw.get("dividePerInstance", False)
        if not isinstance(divide, bool):
            p.add(f"{path}.dividePerInstance is {divide!r}; it must be true or false.")
    elif metric is Metric.CPU:
        for key in ("queue", "account", "dividePerInstance"):
            if key in raw:
                p.add(f"{path}.{key} applies to queue rules only; this rule's metric is cpu.")
    statistic = p.choice(f"{path}.statistic", raw.get("statistic"), Statistic, Statistic.AVERAGE)
    aggregation = p.choice(
        f"{path}.timeAggregation",
        raw.get("timeAggregation"),
        TimeAggregation,
        TimeAggregation.AVERAGE,
    )
    window = p.duration(f"{path}.timeWindow", raw.get("timeWindow"), MIN_WINDOW, MAX_WINDOW, 600.0)
    operator = None
    op_raw = raw.get("operator")
    if isinstance(op_raw, str):
        operator = _OPERATOR_ALIASES.get(op_raw.strip().lower())
    if operator is None:
        p.add(
            f"{path}.operator is {op_raw!r}; use one of "
            f"{', '.join(o.value for o in Operator)} (or >, >=, <, <=, ==, !=)."
        )
    threshold = raw.get("threshold")
    if isinstance(threshold, str):
        with contextlib.suppress(ValueError):
            threshold = float(threshold)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
    ):
        p.add(f"{path}.threshold is {raw.get('threshold')!r}; it must be a number.")
        threshold = 0.0
    elif metric is Metric.CPU and not 0 <= threshold <= 100:
        p.add(f"{path}.threshold is {threshold}; a CPU threshold is a percentage (0-100).")
    action = _action(p, f"{path}.scaleAction", raw.get("scaleAction"))
    if len(p.items) > before or metric is None or operator is None or action is None:
        return None
    return Rule(
        metric=metric,
        operator=operator,
        threshold=float(threshold),
        action=action,
        time_window=window,
        time_aggregation=aggregation,
        statistic=statistic,
        queue=queue if metric is Metric.QUEUE else None,
        account=account if isinstance(account, str) else DEV_ACCOUNT,
        divide_per_instance=bool(divide),
    )


def _action(p: _Problems, path: str, raw: object) -> ScaleAction | None:
    if not isinstance(raw, Mapping):
        p.add(
            f"{path} is {raw!r}; it must be an object with direction (Increase or Decrease), "
            "type, value and cooldown."
        )
        return None
    p.unknown(f"{path}.", raw, _ACTION_KEYS)
    if "direction" not in raw:
        p.add(f"{path} has no direction; use Increase or Decrease.")
    direction = p.choice(f"{path}.direction", raw.get("direction"), Direction, None)
    kind = p.choice(f"{path}.type", raw.get("type"), ActionType, ActionType.CHANGE_COUNT)
    if kind is ActionType.EXACT_COUNT:
        value = p.integer(f"{path}.value", raw.get("value"), 0, MAX_INSTANCES)
    elif kind is ActionType.PERCENT_CHANGE_COUNT:
        value = p.integer(f"{path}.value", raw.get("value"), 1, 1000)
    else:
        value = p.integer(f"{path}.value", raw.get("value"), 1, MAX_INSTANCES, 1)
    cooldown = p.duration(f"{path}.cooldown", raw.get("cooldown"), 1.0, MAX_COOLDOWN, 300.0)
    if direction is None:
        return None
    return ScaleAction(direction, kind, value, cooldown)


def to_document(setting: AutoscaleSetting) -> dict[str, Any]:
    """The canonical JSON of a setting (every default written out); ``parse_setting`` of it
    gives the same setting back."""
    rules: list[dict[str, Any]] = []
    for r in setting.rules:
        doc: dict[str, Any] = {"metric": r.metric.value}
        if r.metric is Metric.QUEUE:
            doc |= {
                "queue": r.queue,
                "account": r.account,
                "dividePerInstance": r.divide_per_instance,
            }
        doc |= {
            "statistic": r.statistic.value,
            "timeWindow": format_duration(r.time_window),
            "timeAggregation": r.time_aggregation.value,
            "operator": r.operator.value,
            "threshold": r.threshold,
            "scaleAction": {
                "direction": r.action.direction.value,
                "type": r.action.type.value,
                "value": r.action.value,
                "cooldown": format_duration(r.action.cooldown),
            },
        }
        rules.append(doc)
    c = setting.capacity
    return {
        "capacity": {"minimum": c.minimum, "maximum": c.maximum, "default": c.default},
        "rules": rules,
    }
