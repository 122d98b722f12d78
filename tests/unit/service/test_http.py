"""/health and /metrics: the JSON document and the Prometheus text format."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.service.http import PROMETHEUS_CONTENT_TYPE, HealthServer
from agent.service.runtime import ServiceRuntime
from agent.service.telemetry import METRICS, ServiceMetrics, metric_lines
from tests.unit.service.fixtures import service_settings

SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$'
)
HEALTH_KEYS = {
    "status",
    "last_tick",
    "last_bar",
    "lag_bars",
    "chain",
    "live_model",
    "outbox_size",
    "decisions",
    "trades",
}


@pytest.fixture
def runtime(tmp_path: Path) -> ServiceRuntime:
    return ServiceRuntime(service_settings(tmp_path))


@pytest.fixture
def server(runtime: ServiceRuntime) -> Iterator[HealthServer]:
    server = HealthServer(runtime, "127.0.0.1", 0)
    yield server
    server.close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_metrics_text_follows_the_prometheus_exposition_format() -> None:
    metrics = ServiceMetrics()
    metrics.inc("agora_ticks_total", 3)
    metrics.inc("agora_strategy_failures_total", strategy='odd "name"\\x')
    metrics.inc("agora_strategy_failures_total", strategy="raises")
    metrics.set("agora_portfolio_value_quote", 10_012.5)
    metrics.observe_latency(0.02)
    metrics.observe_latency(0.04)

    text = metrics.render()

    assert text.endswith("\n")
    helps = re.findall(r"^# HELP (\S+) .+$", text, flags=re.M)
    types = dict(re.findall(r"^# TYPE (\S+) (counter|gauge|summary)$", text, flags=re.M))
    assert helps == [m.name for m in METRICS] == list(types)
    for line in text.splitlines():
        assert line.startswith("# ") or SAMPLE.match(line), line
    values = metric_lines(text)
    assert values["agora_ticks_total"] == 3
    assert values['agora_strategy_failures_total{strategy="raises"}'] == 1
    assert values['agora_strategy_failures_total{strategy="odd \\"name\\"\\\\x"}'] == 1
    assert values["agora_portfolio_value_quote"] == 10_012.5
    assert values["agora_decision_latency_seconds_count"] == 2
    assert values['agora_decision_latency_seconds{quantile="0.99"}'] == 0.04
    for required in ("ticks", "decisions", "trades", "outbox_size", "strategy_failures"):
        assert any(required in name for name in types)
    assert "agora_portfolio_value_quote" in types


def test_health_answers_json_with_the_operational_fields(server: HealthServer) -> None:
    status, content_type, body = get(server.url + "/health")

    assert status == 200 and content_type == "application/json"
    health = json.loads(body)
    assert set(health) >= HEALTH_KEYS
    assert {"reachable", "backend", "chain_key"} <= set(health["chain"])
    assert health["status"] == "starting"  # this runtime was never started


def test_metrics_endpoint_serves_the_text_format(server: HealthServer) -> None:
    status, content_type, body = get(server.url + "/metrics")

    assert status == 200 and content_type == PROMETHEUS_CONTENT_TYPE
    assert "# TYPE agora_decisions_total counter" in body


def test_health_is_503_once_stopping_and_unknown_paths_are_404(
    server: HealthServer, runtime: ServiceRuntime
) -> None:
    runtime.request_stop()
    assert get(server.url + "/health")[0] == 503
    assert get(server.url + "/nothing")[0] == 404
