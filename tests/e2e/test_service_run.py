"""`agora run` with the default configuration (a replay of the synthetic market on the embedded
chain, no model yet): it trains a first model, trades, logs one JSON line per decision, pays a
reward epoch, answers /health, /metrics and the dashboard's pages on one port, and stops cleanly
on SIGTERM. Only the sizes are made small, through AGORA__ environment overrides."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.service.telemetry import metric_lines
from tests.e2e.conftest import Run

SMALL = {
    "AGORA__market__synthetic__bars": "400",
    "AGORA__service__start_bar": "300",
    "AGORA__service__replay_speed": "40",
    "AGORA__service__port": "0",
    "AGORA__service__heartbeat_s": "1",
    "AGORA__service__bootstrap_timesteps": "256",
    "AGORA__agent__n_steps": "128",
    "AGORA__agent__batch_size": "32",
    "AGORA__agent__eval_every_steps": "256",
    "AGORA__rewards__epoch_bars": "50",
    "AGORA__rewards__workers": "1",
}


class Lines:
    """Collect a process's stderr lines in a thread; parse the JSON events."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            if line.startswith("{"):
                data = json.loads(line)
                if name is None or data["event"] == name:
                    found.append(data)
        return found

    def wait_for(
        self, name: str, timeout_s: float, process: subprocess.Popen[str]
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[0]
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {name!r} event; stderr:\n{''.join(self.lines[-40:])}")


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.mark.slow
def test_agora_run_trades_logs_pays_an_epoch_and_answers_until_sigterm(
    workdir: Path, agora: Run
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA__")}
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run"],
        cwd=workdir,
        env={**env, **SMALL},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = Lines(process.stderr)
    try:
        listening = lines.wait_for("listening", 120, process)
        url = listening["url"]
        epoch = lines.wait_for("epoch_paid", 120, process)
        status, body = get(url + "/health")
        health = json.loads(body)
        _, metrics_text = get(url + "/metrics")
        live_status, live_page = get(url + "/live")  # the dashboard, on the same loopback port
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)

    assert code == 0, "".join(lines.lines[-30:])
    assert [e["event"] for e in lines.events()[:2]] == ["genesis", "bootstrap_training"]
    assert epoch["epoch"] == 6 and epoch["bars"] == [300, 350]
    assert status == 200 and health["status"] == "ok"
    assert health["decisions"] >= 51 and health["chain"]["reachable"] is True
    (trained,) = lines.events("bootstrap_trained")
    if trained["promoted"]:  # the bootstrap model passed the gate: it trades, the epoch pays
        assert health["live_model"] == trained["model"] and epoch["status"] == "published"
    else:  # refused: the baseline chosen on validation trades, and the epoch is carried
        (baseline,) = lines.events("baseline_policy")
        assert baseline["policy"] in ("baseline:flat", "baseline:buy-and-hold")
        assert health["live_model"] == baseline["policy"] and epoch["status"] == "empty"
    metrics = metric_lines(metrics_text)
    assert metrics["agora_decisions_total"] >= 51 and metrics["agora_epochs_paid_total"] >= 1
    assert metrics["agora_portfolio_value_quote"] > 0
    assert live_status == 200 and live_page.count('data-testid="decision-row"') >= 50
    decisions = lines.events("decision")
    assert [d["seq"] for d in decisions] == list(range(len(decisions)))
    if trained["promoted"] or baseline["policy"] == "baseline:buy-and-hold":
        assert any(d["side"] != "none" for d in decisions)
    assert lines.events("stopping")[0]["signal"] == "SIGTERM"
    assert lines.events("stopped")[-1]["exit"] == 0

    shown = agora("status", "--json")
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["state"] == "stopped" and state["exit"] == 0
    assert state["decided"] == len(decisions) == state["decisions_stored"]
    assert state["outbox_size"] == 0 and state["last_epoch"]["epoch"] >= 6
    verified = agora("audit", "verify", extra_env=SMALL)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK: {len(decisions)} decisions verified")


ONCE = {
    "AGORA__market__synthetic__bars": "360",
    "AGORA__market__synthetic__seed": "11",
    "AGORA__agent__strategies": "[ma-crossover, rsi-reversion, ts-momentum]",
    "AGORA__service__start_bar": "300",
    "AGORA__service__bootstrap_model": "false",
}


def test_run_once_decides_one_bar_per_call_and_status_shows_it(workdir: Path, agora: Run) -> None:
    from agent.config import load_settings
    from tests.unit.service.fixtures import prepare

    prepare(load_settings(workdir / "config.yaml", environ=ONCE))

    runs = [agora("run", "--once", extra_env=ONCE) for _ in range(2)]

    for run in runs:
        assert run.returncode == 0, run.stderr
    lines = [line for r in runs for line in r.stderr.splitlines()]
    decisions = [json.loads(line) for line in lines if '"event":"decision"' in line]
    assert [d["seq"] for d in decisions] == [0, 1]
    assert decisions[0]["bar_time_ms"] < decisions[1]["bar_time_ms"]
    state = json.loads(agora("status", "--json", extra_env=ONCE).stdout)
    assert (state["state"], state["decided"], state["outbox_size"]) == ("stopped", 2, 0)
    table = agora("status", extra_env=ONCE)
    assert table.returncode == 0 and "2 decided" in table.stdout


def test_run_refuses_to_trade_with_a_corrupt_model_file(workdir: Path, agora: Run) -> None:
    from agent.config import load_settings
    from agent.learn.registry import live_model
    from agent.store import Store
    from tests.unit.service.fixtures import prepare

    settings = load_settings(workdir / "config.yaml", environ=ONCE)
    prepare(settings)
    with Store(settings.data.database_path) as store:
        record = live_model(store)
    assert record is not None
    Path(record.path).write_bytes(b"not the model that was registered")

    run = agora("run", "--once", extra_env=ONCE)

    assert run.returncode == 1
    assert "error: the live model's file" in run.stderr and "is corrupt" in run.stderr
    assert '"event":"decision"' not in run.stderr
    state = json.loads(agora("status", "--json", extra_env=ONCE).stdout)
    assert state["state"] == "failed" and state["decided"] == 0 and "corrupt" in state["error"]
