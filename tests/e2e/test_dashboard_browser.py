"""The dashboard in headless Chromium over a data directory a short real service run produced.

One module-wide fixture: a live model that reads the planted-oracle strategy (a hand-made
linear policy: fully invested when the oracle's signal is positive, flat otherwise), 22 bars
decided by the service and logged on the embedded chain (every decision `confirmed`), one
reward epoch that pays the oracle (`rewards.significance: 0`), and a backtest recorded by
`agora backtest run`. The real CLI then reads the same data directory (in parallel
subprocesses) and the dashboard, served by `DashboardServer` on 127.0.0.1, must show what it
prints: the equity, the leaderboard's amounts, the verify verdict, the live model. The last
test starts the service again and ticks one more bar while the live page is open.

Screenshots (1280 x 900) go to tmp_path, or to docs/images when AGORA_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from agent.config import Settings, load_settings
from agent.dashboard.server import DashboardServer
from agent.errors import ConfigError
from agent.store import Store
from tests.support.browser import Browser, BrowserError
from tests.unit.service.fixtures import LEVELS, install_model

REPO = Path(__file__).resolve().parents[2]
TOKEN = "e2e-dashboard-token"
KEY_ENV = "AGORA_E2E_DASHBOARD_KEY"
PRIVATE_KEY = "0x" + "c0ffee5e" * 8
"""The configured chain key (`chain.private_key_env` names KEY_ENV): never in a response."""
STRATEGIES = ("planted-oracle", "ma-crossover")
DECISIONS = 22
"""Bars 300-321: epoch 15 (bars 300-319, 20 bars an epoch) is complete and paid."""
LOOKBACK_BARS = 16
SIZE = (1280, 900)


@dataclass
class Served:
    """The data directory, its config file, the CLI's answers, the server and the browser."""

    settings: Settings
    config: Path
    cli: dict[str, subprocess.CompletedProcess[str]]
    url: str
    browser: Browser
    shots: Path
    errors_seen: int = 0

    def new_errors(self) -> list[str]:
        """Return the console errors since the last call."""
        errors = self.browser.console_errors()
        fresh, self.errors_seen = errors[self.errors_seen :], len(errors)
        return fresh

    def open(self, path: str) -> None:
        """Load a dashboard page; it must log no error."""
        self.browser.goto(self.url + path)
        self.browser.wait_for("document.readyState === 'complete'")
        assert self.new_errors() == [], path


def _config(root: Path) -> Path:
    """Write the run's config.yaml: small, fast, with a strategy that earns."""
    sections = {
        "data": {"dir": str(root / "data")},
        "market": {
            "synthetic": {
                "bars": 360,
                "seed": 11,
                "planted": {"information_coefficient": 0.5, "half_life_bars": 24.0},
            }
        },
        "rewards": {"epoch_bars": 20, "workers": 1, "shapley_samples": 8, "significance": 0.0},
        "agent": {"strategies": list(STRATEGIES)},
        "strategies": {"fixtures": ["planted-oracle"]},
        "chain": {"private_key_env": KEY_ENV},
        "service": {
            "start_bar": 300,
            "replay_speed": 0.0,
            "bootstrap_model": False,
            "port": 0,
            "heartbeat_s": 1.0,
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def _install_oracle_policy(settings: Settings) -> str:
    """Register the live model: all in when planted-oracle's signal is positive, else flat."""
    from agent.env.features import FEATURE_NAMES
    from agent.learn.inference import DenseLayer, NumpyPolicy
    from agent.learn.policy import policy_cache_path, save_policy_cache
    from agent.service.policy import policy_cache_dir

    with Store(settings.data.database_path) as store:
        model_id = install_model(store, settings, strategies=STRATEGIES)
    oracle = LOOKBACK_BARS * len(FEATURE_NAMES)  # its signal's column in the observation
    weight = np.zeros((oracle + 2 * len(STRATEGIES) + 1, len(LEVELS)), dtype=np.float32)
    weight[oracle, -1], weight[oracle, 0] = 10.0, -10.0
    layer = DenseLayer(weight, np.zeros(len(LEVELS), np.float32), "identity")
    policy = NumpyPolicy([layer], "argmax")
    save_policy_cache(policy, policy_cache_path(policy_cache_dir(settings), model_id))
    return model_id


def _runtime(settings: Settings) -> Any:
    from agent.service.runtime import ServiceRuntime
    from agent.service.telemetry import ServiceLog

    runtime = ServiceRuntime(settings, log=ServiceLog(stream=io.StringIO()))
    runtime.start()
    return runtime


def _run_service(settings: Settings) -> None:
    """Decide DECISIONS bars, pay the epoch they complete, put every decision on-chain."""
    from agent.service import jobs

    runtime = _runtime(settings)
    try:
        assert jobs.tick(runtime, max_bars=DECISIONS).bars == DECISIONS
        paid = jobs.reward_epoch(runtime)
        assert paid.status == "ok" and paid.detail == "epoch 15: published", paid
        assert runtime.replica is not None
        runtime.replica.flush_decisions(force=True)
    finally:
        runtime.close()


CLI = {
    "backtest": ("backtest", "run", "--strategy", "ma-crossover", "--json"),
    "status": ("status",),
    "rewards": ("rewards", "status"),
    "rewards-json": ("rewards", "status", "--json"),
    "verify": ("audit", "verify"),
    "models": ("models", "list", "--json"),
    "public-bind": ("dashboard", "--host", "0.0.0.0", "--port", "0"),
}


Started = dict[str, "subprocess.Popen[str]"]


def _start_cli(config: Path, root: Path, names: tuple[str, ...]) -> Started:
    """Start CLI commands (`python -m agent … --config FILE`) side by side."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA__")}
    env.pop("AGORA_DASHBOARD_TOKEN", None)
    env.update(COLUMNS="200", PYTHONPATH=str(REPO))
    started = {}
    for name in names:
        args = CLI[name]
        options = ["--config", str(config)]
        if name == "backtest":
            options += ["--out", str(root / "reports")]
        if name == "public-bind":  # `agora dashboard` takes the global --config
            command = [sys.executable, "-m", "agent", "--config", str(config), *args]
        else:
            command = [sys.executable, "-m", "agent", *args, *options]
        started[name] = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return started


def _finish_cli(started: Started) -> dict[str, subprocess.CompletedProcess[str]]:
    """Wait for the commands; each but the refused bind must succeed."""
    done = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        if name != "public-bind":
            assert process.returncode == 0, f"{name}: {err[-2000:]}"
    return done


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dashboard-e2e")
    update = os.environ.get("AGORA_UPDATE_SCREENSHOTS") == "1"
    shots = REPO / "docs" / "images" if update else root / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, PRIVATE_KEY)
        patch.delenv("AGORA_DASHBOARD_TOKEN", raising=False)
        config = _config(root)
        settings = load_settings(config, environ={})
        _install_oracle_policy(settings)
        # the backtest only adds its run to the store: it runs beside the service
        backtest = _start_cli(config, root, ("backtest", "public-bind"))
        try:
            _run_service(settings)
        finally:
            cli = _finish_cli(backtest)
        reads = tuple(name for name in CLI if name not in cli)
        cli.update(_finish_cli(_start_cli(config, root, reads)))
        server = DashboardServer(settings, "127.0.0.1", 0, token=TOKEN)
        browser = Browser(root / "profile")
        try:
            browser.start()
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1, "mobile": False},
            )
            yield Served(settings, config, cli, server.url, browser, shots)
        finally:
            browser.close()
            server.close()


# --- what the CLI printed ----------------------------------------------------------------------
def _cells(text: str, first: str) -> list[str]:
    """Return the cells of the rich table row whose first cell is `first`."""
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)]
        cells = [c for c in cells if c != ""]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{text}")


def _status_equity(served: Served) -> dict[str, str]:
    line = _cells(served.cli["status"].stdout, "equity")[1]
    found = re.fullmatch(r"live model (\S+), buy-and-hold (\S+), flat (\S+) \(since (\S+)\)", line)
    assert found, line
    return dict(zip(("live", "hold", "flat", "since"), found.groups(), strict=True))


def _screenshot(served: Served, name: str) -> None:
    """Write the page's screenshot and check it: 1280 x 900, not blank, small."""
    path = served.shots / f"dashboard-{name}.png"
    served.browser.screenshot(path, *SIZE)
    with Image.open(path) as shot:
        image = shot.convert("RGB")
    image.save(path, optimize=True)
    with Image.open(path) as saved:
        assert saved.size == SIZE
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 16, f"{name}: the page looks blank"
    assert path.stat().st_size < 400_000


def _click_through(served: Served, selector: str, path: str, timeout_s: float = 20) -> None:
    """Click a link and wait until the page it opens (at `path`) has loaded."""
    served.browser.click(selector)
    deadline = time.monotonic() + timeout_s
    loaded = f"location.pathname === {json.dumps(path)} && document.readyState === 'complete'"
    while True:
        try:
            if served.browser.evaluate(loaded):
                return
        except BrowserError as e:  # asked while the old page was going away
            if not any(m in str(e) for m in ("navigated or closed", "context was destroyed")):
                raise
        assert time.monotonic() < deadline, f"{path} did not open within {timeout_s} s"
        time.sleep(0.05)


# --- pages -------------------------------------------------------------------------------------
def test_live_page_shows_the_equity_and_live_model_agora_status_prints(served: Served) -> None:
    equity = _status_equity(served)
    live_model = _cells(served.cli["status"].stdout, "live model")[1]

    served.open("/live")
    served.browser.wait_for("document.querySelector('#equity .main-svg') !== null")
    page = {k: served.browser.text(f"[data-testid=equity-{k}]") for k in ("live", "hold", "flat")}
    header = served.browser.text("main p")
    _screenshot(served, "live")

    assert page == {k: equity[k] for k in ("live", "hold", "flat")}
    assert equity["flat"] == "10000.00" and equity["live"] != equity["hold"]
    assert f"live model {live_model}" in header
    assert served.new_errors() == []


def test_live_page_lists_every_decision_confirmed_on_chain(served: Served) -> None:
    served.open("/live")
    states = served.browser.evaluate(
        "Array.from(document.querySelectorAll('[data-testid=decision-row]'), "
        "r => [Number(r.dataset.seq), r.querySelector('[data-state]').dataset.state])"
    )

    assert [seq for seq, _ in states] == list(range(DECISIONS - 1, -1, -1))
    assert {state for _, state in states} == {"confirmed"}
    trail = _cells(served.cli["status"].stdout, "audit trail")[1]
    assert trail == f"{DECISIONS} decisions, 0 not yet on-chain"


def test_a_decision_page_opened_from_the_live_page_shows_its_inclusion(served: Served) -> None:
    with Store(served.settings.data.database_path) as store:
        row = store.db.execute(
            "SELECT hash, tx_hash, block_number FROM decisions WHERE seq = 7"
        ).fetchone()

    served.open("/live")
    _click_through(served, '[data-testid=decision-row][data-seq="7"] a', "/decisions/7")
    inclusion = served.browser.text("[data-testid=inclusion]")

    assert served.browser.text("[data-testid=decision-hash]") == row[0]
    assert row[1] in inclusion and f"block {row[2]}" in inclusion and "confirmed" in inclusion
    assert json.loads(served.browser.text("[data-testid=decision-record]"))["seq"] == 7
    assert served.new_errors() == []


def test_audit_page_verifies_with_the_token_as_agora_audit_verify_does(served: Served) -> None:
    printed = served.cli["verify"].stdout.strip().splitlines()

    served.open("/audit")
    address = served.browser.text("[data-testid=decision-log-address]")
    head = served.browser.text("[data-testid=head]")
    served.browser.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)}")
    served.browser.click("[data-testid=verify-button]")
    ok = served.browser.wait_for(
        "document.querySelector('[data-testid=verify-result]').getAttribute('data-ok')", 30
    )
    result = served.browser.text("[data-testid=verify-result]").splitlines()
    _screenshot(served, "audit")

    assert ok == "true"
    assert printed[0].startswith(f"OK: {DECISIONS} decisions verified")
    assert result[: len(printed)] == printed
    assert address in printed[0] and printed[0].endswith(f"head {head}")
    assert served.new_errors() == []


def test_audit_page_without_the_token_is_refused_the_action(served: Served) -> None:
    served.open("/audit")
    served.browser.click("[data-testid=verify-button]")
    served.browser.wait_for(
        "document.querySelector('[data-testid=verify-result]').getAttribute('data-ok')"
    )

    assert "a valid token is required" in served.browser.text("[data-testid=verify-result]")
    assert [e.split(": ")[0] for e in served.new_errors()] == ["HTTP 401"]


def test_contributors_page_shows_the_amounts_agora_rewards_status_prints(
    served: Served,
) -> None:
    from agent.rewards.units import format_amount

    listed = json.loads(served.cli["rewards-json"].stdout)["contributors"]
    printed = {
        row["strategy"]: {
            "earned": _cells(served.cli["rewards"].stdout, row["strategy"])[-2],
            "claimed": format_amount(int(row["claimed"])),
            "unclaimed": _cells(served.cli["rewards"].stdout, row["strategy"])[-1],
        }
        for row in listed
    }

    served.open("/contributors")
    shown = served.browser.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('[data-testid=leader-row]'), "
        "r => [r.dataset.strategy, Object.fromEntries(Array.from("
        "r.querySelectorAll('[data-field]'), c => [c.dataset.field, c.innerText]))]))"
    )
    proofs = served.browser.texts("[data-testid=claim-proof]")
    _screenshot(served, "contributors")

    assert shown == printed
    assert set(printed) == set(STRATEGIES)
    assert printed["planted-oracle"]["earned"] == "1,000.00"  # the paid epoch
    assert printed["ma-crossover"]["earned"] == "0.00"
    assert served.browser.texts("[data-testid=epoch]")[0].startswith("epoch 15: published")
    assert any(json.loads(p)["amount"] == str(10**21) for p in proofs)
    assert served.new_errors() == []


def test_models_page_names_the_live_model_agora_models_list_shows(served: Served) -> None:
    listed = json.loads(served.cli["models"].stdout)
    live = [m["id"] for m in listed if m["status"] == "live"]

    served.open("/models")
    _screenshot(served, "models")

    assert len(live) == 1
    assert served.browser.text("[data-testid=live-model]") == live[0]
    assert served.browser.evaluate(
        "Array.from(document.querySelectorAll('[data-testid=models] tr[data-model]'),"
        " r => r.dataset.model)"
    ) == [m["id"] for m in listed]


def test_backtests_page_shows_the_run_agora_backtest_printed_and_opens_its_report(
    served: Served,
) -> None:
    from agent.backtest.report import TABLE_COLUMNS, format_cell

    run = json.loads(served.cli["backtest"].stdout)
    run_id = run["metadata"]["run_id"]
    printed = [
        [
            p["name"],
            p["kind"],
            *(format_cell(p["metrics"][k], kind) for k, _, kind in TABLE_COLUMNS),
        ]
        for p in run["policies"]
    ]
    title = re.search(r"<title>(.*?)</title>", Path(run["report"]).read_text())
    section = f'[data-testid=backtest][data-run="{run_id}"]'

    served.open("/backtests")
    shown = served.browser.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(section + ' tbody tr')}),"
        " r => Array.from(r.cells, c => c.innerText.trim()))"
    )
    _screenshot(served, "backtests")
    _click_through(served, f"{section} [data-testid=report-link]", f"/backtests/{run_id}/report")
    served.browser.wait_for("document.querySelectorAll('.main-svg').length > 0", 20)

    assert shown == printed
    assert {"ma-crossover", "buy-and-hold", "flat"} <= {row[0] for row in shown}
    assert title is not None and served.browser.evaluate("document.title") == title.group(1)
    assert served.new_errors() == []


# --- security ----------------------------------------------------------------------------------
def _read(request: str | urllib.request.Request) -> str:
    """Return a response's body, whatever its status."""
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return str(response.read().decode("utf-8", errors="replace"))
    except urllib.error.HTTPError as e:
        return str(e.read().decode("utf-8", errors="replace"))


def test_no_page_or_answer_contains_the_configured_private_key(served: Served) -> None:
    assert served.settings.chain.private_key_env == KEY_ENV
    bodies: dict[str, str] = {}
    queue = ["/", "/live", "/audit", "/contributors", "/models", "/backtests"]
    queue += ["/api/decisions", "/api/events?after=15&timeout_s=0.6", "/decisions/21"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, PRIVATE_KEY)
        while queue:
            path = queue.pop(0)
            if path in bodies:
                continue
            bodies[path] = _read(served.url + path)
            links = re.findall(r'(?:href|src)="(/[^"#\' +]*)"', bodies[path])
            queue.extend(link.replace("&amp;", "&") for link in links if link not in bodies)
        for action in ("/api/audit/verify", "/api/rewards/claim"):
            request = urllib.request.Request(
                served.url + action,
                data=json.dumps({"epoch": 15, "strategy": "nobody"}).encode(),
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                method="POST",
            )
            bodies[action] = _read(request)
        for page in ("/live", "/audit", "/contributors", "/models", "/backtests"):
            served.open(page)
            bodies[f"DOM {page}"] = served.browser.evaluate("document.documentElement.outerHTML")

    assert "/backtests" in bodies and any("/report" in p for p in bodies)
    assert json.loads(bodies["/api/audit/verify"])["ok"] is True
    for path, body in bodies.items():
        assert PRIVATE_KEY[2:].lower() not in body.lower(), path


def test_a_contributor_claims_through_the_dashboard_with_the_token(served: Served) -> None:
    """The claim action pays the planted oracle's 1,000 AGR on-chain; the page and the CLI
    then agree that it is claimed."""
    body = json.dumps({"epoch": 15, "strategy": "planted-oracle"}).encode()
    headers = {"Content-Type": "application/json"}
    refused = urllib.request.Request(
        served.url + "/api/rewards/claim", data=body, headers=headers, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(refused, timeout=60)
    assert caught.value.code == 401
    request = urllib.request.Request(
        served.url + "/api/rewards/claim",
        data=body,
        headers={**headers, "Authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    claims = json.loads(_read(request))["claims"]
    assert [c["epoch"] for c in claims] == [15]

    served.open("/contributors")
    claimed = served.browser.text(
        "[data-testid=leader-row][data-strategy=planted-oracle] [data-field=claimed]"
    )
    status = _finish_cli(_start_cli(served.config, served.config.parent, ("rewards-json",)))
    listed = {r["strategy"]: r for r in json.loads(status["rewards-json"].stdout)["contributors"]}
    assert int(listed["planted-oracle"]["claimed"]) == 10**21
    assert claimed == "1,000.00"
    assert served.new_errors() == []


def test_a_public_bind_without_a_token_is_refused(served: Served) -> None:
    refused = served.cli["public-bind"]

    with pytest.raises(ConfigError, match="AGORA_DASHBOARD_TOKEN") as caught:
        DashboardServer(served.settings, "0.0.0.0", 0, token="")

    assert caught.value.exit_code == 2
    assert refused.returncode == 2 and refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "0.0.0.0 is not a loopback address" in refused.stderr
    assert "AGORA_DASHBOARD_TOKEN" in refused.stderr


# --- the live page follows the service ---------------------------------------------------------
def test_live_page_shows_the_next_decision_without_a_reload(served: Served) -> None:
    """Runs last: the service decides one more bar while the live page is open."""
    from agent.service import jobs

    runtime = _runtime(served.settings)
    try:
        served.open("/live")
        served.browser.evaluate("window.__not_reloaded = true")
        started = time.monotonic()
        assert jobs.tick(runtime, max_bars=1).bars == 1
        decided = time.monotonic()
        served.browser.wait_for(
            f"!!document.querySelector('[data-testid=decision-row][data-seq=\"{DECISIONS}\"]')", 5
        )
        shown = time.monotonic()
        assert runtime.replica is not None
        runtime.replica.flush_decisions(force=True)
    finally:
        runtime.close()
    first = served.browser.evaluate(
        "document.querySelector('[data-testid=decision-row]').dataset.seq"
    )

    assert served.browser.evaluate("window.__not_reloaded") is True
    assert first == str(DECISIONS)
    assert shown - decided < 3.0, f"shown {shown - decided:.2f} s after the tick"
    assert decided - started < 10.0
    served.open(f"/decisions/{DECISIONS}")
    assert "confirmed" in served.browser.text("[data-testid=inclusion]")
