"""What the service tells its operator: JSON-lines events and the numbers behind /metrics.

Every event is one JSON object on one line (`ts`, `level`, `event`, then the event's fields),
on stderr or in a file: one `decision` line per decided bar, plus start-up, skips, strategy
failures, chain outages, flushes, epochs, retrains and the stop. `ServiceMetrics` holds the
counters and gauges `/metrics` renders in the Prometheus text format; it is thread-safe.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

LOGGER_NAME = "agora.service"


class JsonLineFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, event and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or record.name,
        }
        if fields:
            data.update(fields)
        elif not hasattr(record, "event"):
            data["message"] = record.getMessage()
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return repr(value)


class ServiceLog:
    """The service's structured log.

    Args:
        stream: where lines go when `path` is None (default stderr).
        path: a log file (appended to); its directory is created.
    """

    def __init__(self, *, stream: TextIO | None = None, path: Path | None = None) -> None:
        self.path = path
        self.logger = logging.getLogger(f"{LOGGER_NAME}.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        handler: logging.Handler
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
        else:
            handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonLineFormatter())
        self.handler = handler
        self.logger.addHandler(handler)

    @classmethod
    def for_settings(cls, settings: Any) -> ServiceLog:
        """Return the log `service.log_file` names (relative to `data.dir`), else stderr."""
        path = settings.service.log_file
        if path is None:
            return cls()
        return cls(path=path if path.is_absolute() else Path(settings.data.dir) / path)

    def event(self, name: str, *, level: int = logging.INFO, **fields: Any) -> None:
        """Write one event line."""
        self.logger.log(level, name, extra={"event": name, "fields": fields})

    def warning(self, name: str, **fields: Any) -> None:
        """Write one warning line."""
        self.event(name, level=logging.WARNING, **fields)

    def error(self, name: str, *, exc_info: bool = False, **fields: Any) -> None:
        """Write one error line (with the traceback when `exc_info`)."""
        self.logger.error(name, extra={"event": name, "fields": fields}, exc_info=exc_info)

    def capture(
        self,
        logger_name: str,
        level: int = logging.WARNING,
        *,
        expected: tuple[str, ...] = (),
        on_expected: Callable[[], None] | None = None,
    ) -> None:
        """Send another library's log records (e.g. the scheduler's) through this log.

        Args:
            logger_name: the library's logger.
            level: the lowest level passed on.
            expected: message fragments of routine records to drop (counted instead).
            on_expected: called for each dropped record.
        """
        other = logging.getLogger(logger_name)
        other.setLevel(level)
        handler = logging.Handler()
        target = self.handler

        def emit(record: logging.LogRecord) -> None:
            message = record.getMessage()
            if any(fragment in message for fragment in expected):
                if on_expected is not None:
                    on_expected()
                return
            target.handle(record)

        handler.emit = emit  # type: ignore[method-assign]
        other.addHandler(handler)
        other.propagate = False

    def flush(self) -> None:
        """Flush the handler (before the process exits)."""
        self.handler.flush()

    def close(self) -> None:
        """Detach and close the handler."""
        self.logger.removeHandler(self.handler)
        self.handler.close()


def iso_ms(ms: int | None) -> str | None:
    """Format Unix milliseconds as ISO 8601 with milliseconds (None stays None)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


# --- metrics ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, Prometheus type and help line."""

    name: str
    kind: str
    help: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("agora_ticks_total", "counter", "Tick job runs since the service started."),
    MetricSpec("agora_decisions_total", "counter", "Bars decided (all runs of this store)."),
    MetricSpec("agora_trades_total", "counter", "Decisions that traded (all runs of this store)."),
    MetricSpec("agora_bars_skipped_total", "counter", "Bars not decided (bad or late candles)."),
    MetricSpec("agora_feed_errors_total", "counter", "Polls the market feed could not serve."),
    MetricSpec(
        "agora_strategy_failures_total", "counter", "Signal computations a strategy failed."
    ),
    MetricSpec("agora_chain_errors_total", "counter", "Chain operations that failed."),
    MetricSpec("agora_epochs_paid_total", "counter", "Reward epochs run by this service."),
    MetricSpec(
        "agora_scheduler_coalesced_total",
        "counter",
        "Scheduled runs folded into a running or later one (the tick catches up by itself).",
    ),
    MetricSpec("agora_outbox_size", "gauge", "Decisions stored but not yet on the DecisionLog."),
    MetricSpec("agora_chain_pending_bars", "gauge", "Decided bars not yet replicated on-chain."),
    MetricSpec("agora_chain_reachable", "gauge", "1 if the chain answered at the last check."),
    MetricSpec("agora_portfolio_value_quote", "gauge", "Portfolio value at the last bar's close."),
    MetricSpec("agora_exposure", "gauge", "Fraction of the portfolio held in the base asset."),
    MetricSpec("agora_lag_bars", "gauge", "Closed bars not yet decided."),
    MetricSpec("agora_last_bar_timestamp_seconds", "gauge", "Open time of the last bar handled."),
    MetricSpec("agora_last_tick_timestamp_seconds", "gauge", "When the tick job last ran."),
    MetricSpec("agora_decision_latency_seconds", "summary", "Bar available to decision stored."),
)
_SPECS = {spec.name: spec for spec in METRICS}


@dataclass
class ServiceMetrics:
    """Counters, gauges and one latency summary, safe to update from any thread."""

    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        key = (name, tuple(sorted(labels.items())))
        with self.lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge (or a counter restored from the store)."""
        with self.lock:
            self.values[(name, tuple(sorted(labels.items())))] = float(value)

    def get(self, name: str, **labels: str) -> float:
        """Return a metric's value (0 if never set)."""
        with self.lock:
            return self.values.get((name, tuple(sorted(labels.items()))), 0.0)

    def observe_latency(self, seconds: float) -> None:
        """Record one decision latency (the newest 10,000 are kept for the quantiles)."""
        with self.lock:
            self.latencies.append(seconds)
            if len(self.latencies) > 10_000:
                del self.latencies[:1_000]
            self.values[("agora_decision_latency_seconds_sum", ())] = (
                self.values.get(("agora_decision_latency_seconds_sum", ()), 0.0) + seconds
            )
            self.values[("agora_decision_latency_seconds_count", ())] = (
                self.values.get(("agora_decision_latency_seconds_count", ()), 0.0) + 1
            )

    def latency_quantiles(self, quantiles: Iterable[float] = (0.5, 0.99)) -> dict[float, float]:
        """Return the requested quantiles of the kept latencies (NaN when there are none)."""
        with self.lock:
            data = sorted(self.latencies)
        if not data:
            return {q: math.nan for q in quantiles}
        return {q: data[min(len(data) - 1, int(q * len(data)))] for q in quantiles}

    def render(self) -> str:
        """Return every metric in the Prometheus text exposition format (version 0.0.4)."""
        with self.lock:
            values = dict(self.values)
        lines: list[str] = []
        for spec in METRICS:
            lines.append(f"# HELP {spec.name} {spec.help}")
            lines.append(f"# TYPE {spec.name} {spec.kind}")
            if spec.kind == "summary":
                for q, v in self.latency_quantiles().items():
                    lines.append(f'{spec.name}{{quantile="{q:g}"}} {_number(v)}')
                for suffix in ("_sum", "_count"):
                    lines.append(
                        f"{spec.name}{suffix} {_number(values.get((spec.name + suffix, ()), 0.0))}"
                    )
                continue
            samples = sorted((k[1], v) for k, v in values.items() if k[0] == spec.name)
            if not samples:
                samples = [((), 0.0)]
            for labels, value in samples:
                lines.append(f"{spec.name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


def known_metric(name: str) -> bool:
    """Return whether `name` is one of the service's metrics."""
    return name in _SPECS


def metric_lines(text: str) -> Mapping[str, float]:
    """Parse exposition text into {`name{labels}`: value} (for tests and `agora status`)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        found[name] = float(value)
    return found
