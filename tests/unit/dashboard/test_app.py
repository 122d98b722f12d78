"""The dashboard over a data directory a real (short) service run produced.

One module-wide data directory: a live model, 25 bars decided and logged on the embedded
chain, one reward epoch run, a backtest run recorded by hand with a report file. The pages
must show what the CLI's own functions compute for the same store.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent.config import Settings
from agent.dashboard import create_app
from agent.dashboard.server import DashboardServer, check_bind, is_loopback
from agent.errors import ConfigError
from agent.store import Store
from tests.unit.service.fixtures import prepare, service_settings

TOKEN = "dashboard-test-token"
PRIVATE_KEY = "0x" + "5e" * 32
"""A recognisable private key in the environment: no response may ever contain it."""
DECISIONS = 25


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from agent.service import jobs
    from agent.service.runtime import ServiceRuntime
    from agent.service.telemetry import ServiceLog

    settings = service_settings(tmp_path_factory.mktemp("dash") / "data")
    prepare(settings)
    runtime = ServiceRuntime(settings, log=ServiceLog(stream=io.StringIO()))
    try:
        runtime.start()
        assert jobs.tick(runtime, max_bars=DECISIONS).bars == DECISIONS
        jobs.reward_epoch(runtime)
        assert runtime.replica is not None
        runtime.replica.flush_decisions(force=True)
    finally:
        runtime.close()
    _record_backtest(settings)
    yield settings


def _record_backtest(settings: Settings) -> None:
    report = Path(settings.data.dir) / "reports" / "run.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<html><body>the report</body></html>")
    summary = {
        "policies": [
            {"name": "model", "kind": "model", "metrics": {"total_return": 0.0123}},
            {"name": "buy-and-hold", "kind": "baseline", "metrics": {"total_return": -0.01}},
        ],
        "windows": [],
    }
    with Store(settings.data.database_path) as store, store.transaction() as conn:
        conn.execute(
            "INSERT INTO backtest_runs (run_id, created_at, name, mode, config_hash, data_hash, "
            "strategy_hashes, seed, code_version, scenario, summary, report_path) "
            "VALUES ('run-1', '2024-01-01T00:00:00Z', 'smoke', 'fast', 'c', 'd', '{}', 0, 'v', "
            "'{}', ?, ?)",
            [json.dumps(summary), str(report)],
        )


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGORA_PRIVATE_KEY", PRIVATE_KEY)


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, token=TOKEN))


def text_of(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}"[^>]*>([^<]*)<', html)
    assert found, testid
    return found.group(1)


PAGES = ("/live", "/audit", "/contributors", "/models", "/backtests", "/decisions/0")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_with_the_navigation_to_the_five_pages(
    client: TestClient, path: str
) -> None:
    response = client.get(path)

    assert response.status_code == 200
    for link in ("/live", "/audit", "/contributors", "/models", "/backtests"):
        assert f'href="{link}"' in response.text


def test_root_redirects_to_the_live_page(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)

    assert response.status_code in (302, 307) and response.headers["location"] == "/live"


def test_live_page_shows_the_equity_agora_status_prints(
    client: TestClient, settings: Settings
) -> None:
    from agent.service.status import status

    equity = status(settings)["equity"]
    html = client.get("/live").text

    assert text_of(html, "equity-live") == equity["live"]
    assert text_of(html, "equity-hold") == equity["hold"]
    assert text_of(html, "equity-flat") == equity["flat"] == "10000.00"
    assert 'data-testid="equity-chart"' in html
    assert float(text_of(html, "exposure")) >= 0.0


def test_live_page_lists_the_newest_decisions_with_their_onchain_status(
    client: TestClient,
) -> None:
    html = client.get("/live?limit=5").text

    seqs = [int(s) for s in re.findall(r'data-testid="decision-row" data-seq="(\d+)"', html)]
    assert seqs == list(range(DECISIONS - 1, DECISIONS - 6, -1))
    rows = html[html.index("<tbody>") : html.index("</tbody>")]
    assert rows.count('data-state="confirmed"') == 5
    assert 'href="/decisions/24"' in html


def test_decision_pages_and_api_are_paged_by_seq(client: TestClient) -> None:
    html = client.get("/live?before=10&limit=3").text
    seqs = re.findall(r'data-testid="decision-row" data-seq="(\d+)"', html)
    after = client.get("/api/decisions?after=20").json()["decisions"]
    before = client.get("/api/decisions?before=3&limit=2").json()["decisions"]

    assert seqs == ["9", "8", "7"]
    assert [d["seq"] for d in after] == [21, 22, 23, 24]
    assert [d["seq"] for d in before] == [2, 1]
    assert after[0]["onchain"]["state"] == "confirmed" and after[0]["onchain"]["tx_hash"]


def test_decision_page_shows_the_record_its_hash_and_its_inclusion(
    client: TestClient, settings: Settings
) -> None:
    from agent.audit.outbox import read_decision

    with Store(settings.data.database_path) as store:
        stored = read_decision(store, 3)
    assert stored is not None
    html = client.get("/decisions/3").text

    assert text_of(html, "decision-hash") == stored.hash
    assert stored.tx_hash is not None and stored.tx_hash in html
    assert 'data-testid="inclusion"' in html
    record = json.loads(text_of(html, "decision-record").replace("&quot;", '"'))
    assert record["seq"] == 3
    assert client.get("/decisions/999").status_code == 404


def test_event_stream_sends_decisions_after_a_seq(client: TestClient) -> None:
    response = client.get("/api/events?after=22&max_events=5&timeout_s=1")

    events = [json.loads(line[5:]) for line in response.text.splitlines() if line[:5] == "data:"]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [e["seq"] for e in events] == [23, 24]
    assert "event: decision" in response.text


def test_contributors_page_shows_the_leaderboard_as_rewards_status_prints_it(
    client: TestClient, settings: Settings
) -> None:
    from agent.rewards.ledger import leaderboard
    from agent.rewards.units import format_amount

    with Store(settings.data.database_path) as store:
        rows = leaderboard(store)
    html = client.get("/contributors").text

    assert 'data-testid="leaderboard"' in html and 'data-testid="strategies"' in html
    assert 'data-testid="epochs"' in html
    for row in rows:
        found = re.search(
            rf'data-testid="leader-row" data-strategy="{re.escape(row["strategy"])}"(.*?)</tr>',
            html,
        )
        assert found
        assert f'data-field="earned">{format_amount(row["earned"])}<' in found.group(1)
        assert f'data-field="unclaimed">{format_amount(row["unclaimed"])}<' in found.group(1)


def test_models_page_names_the_live_model(client: TestClient, settings: Settings) -> None:
    from agent.learn.registry import live_model

    with Store(settings.data.database_path) as store:
        live = live_model(store)
    html = client.get("/models").text

    assert live is not None and text_of(html, "live-model") == live.id
    assert 'data-testid="models"' in html and 'data-testid="promotions"' in html


def test_backtests_page_links_the_recorded_report_and_serves_only_it(client: TestClient) -> None:
    html = client.get("/backtests").text

    assert 'data-testid="backtests"' in html and "1.23%" in html
    assert client.get("/backtests/run-1/report").text == "<html><body>the report</body></html>"
    assert client.get("/backtests/..%2F..%2Fetc%2Fpasswd/report").status_code == 404
    assert client.get("/backtests/unknown/report").status_code == 404


def test_plotly_is_served_from_the_package(client: TestClient) -> None:
    response = client.get("/static/plotly.min.js")

    assert response.status_code == 200 and "plotly" in response.text[:2000].lower()


def test_actions_are_refused_without_a_configured_token(settings: Settings) -> None:
    client = TestClient(create_app(settings, token=""))

    response = client.post("/api/audit/verify", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 403
    assert response.json()["error"] == "actions are disabled: set AGORA_DASHBOARD_TOKEN"
    assert client.post("/api/rewards/claim", json={"epoch": 0, "strategy": "x"}).status_code == 403


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
def test_actions_are_refused_with_a_wrong_or_missing_token(
    client: TestClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}

    assert client.post("/api/audit/verify", headers=headers).status_code == 401
    assert client.post("/api/rewards/claim", headers=headers, json={}).status_code == 401


def test_the_token_comes_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGORA_DASHBOARD_TOKEN", "from-env")
    client = TestClient(create_app(settings))

    assert client.post("/api/audit/verify").status_code == 401


def test_verify_action_gives_the_result_agora_audit_verify_gives(
    client: TestClient, settings: Settings
) -> None:
    from agent.audit.trail import open_trail
    from agent.audit.verify import verify

    with Store(settings.data.database_path) as store, open_trail(settings, store) as (b, loc):
        expected = verify(store, b, loc.address).to_json_data()
    response = client.post("/api/audit/verify", headers={"Authorization": f"Bearer {TOKEN}"})

    data = response.json()
    assert response.status_code == 200
    assert data["ok"] is True and expected["ok"] is True
    assert (data["stored"], data["verified"]) == (DECISIONS, DECISIONS)
    assert data["head_onchain"] == expected["head_onchain"]
    assert data["lines"][0].startswith(f"OK: {DECISIONS} decisions verified")
    assert data["head_onchain"] in client.get("/audit").text


def test_health_and_metrics_answer_from_a_runtime_as_the_service_endpoint_does(
    settings: Settings, tmp_path: Path
) -> None:
    from agent.service.http import PROMETHEUS_CONTENT_TYPE
    from agent.service.runtime import ServiceRuntime

    runtime = ServiceRuntime(service_settings(tmp_path))
    client = TestClient(create_app(settings, runtime=runtime, token=""))

    health = client.get("/health")
    metrics = client.get("/metrics")

    assert health.status_code in (200, 503) and "status" in health.json()
    assert metrics.headers["content-type"] == PROMETHEUS_CONTENT_TYPE
    assert metrics.text == runtime.metrics.render()
    assert TestClient(create_app(settings, token="")).get("/health").status_code == 404


def test_no_response_contains_the_private_key(client: TestClient) -> None:
    bodies: list[str] = []
    for path in (*PAGES, "/api/decisions", "/api/events?after=20&timeout_s=0.2"):
        bodies.append(client.get(path).text)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bodies.append(client.post("/api/audit/verify", headers=auth).text)
    bodies.append(client.post("/api/rewards/claim", headers=auth, json={"epoch": 0}).text)
    links = set(re.findall(r'href="(/[^"#]*)"', "".join(bodies)))
    bodies.extend(client.get(link).text for link in sorted(links))

    for body in bodies:
        assert PRIVATE_KEY not in body
        assert PRIVATE_KEY[2:] not in body


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_a_non_loopback_bind_without_a_token_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="AGORA_DASHBOARD_TOKEN") as caught:
        check_bind(host, None)

    assert caught.value.exit_code == 2
    check_bind(host, TOKEN)  # with a token it may


def test_loopback_addresses_need_no_token() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    check_bind("127.0.0.1", None)


def test_the_cli_refuses_a_public_bind_without_a_token(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from agent.cli.main import main

    monkeypatch.delenv("AGORA_DASHBOARD_TOKEN", raising=False)
    monkeypatch.setenv("AGORA__DATA__DIR", str(settings.data.dir))
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", "--host", "0.0.0.0", "--port", "0"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "AGORA_DASHBOARD_TOKEN" in err and len(err.strip().splitlines()) == 1


def test_dashboard_server_serves_in_a_thread_and_stops(settings: Settings) -> None:
    import urllib.request

    server = DashboardServer(settings, "127.0.0.1", 0, token="")
    try:
        with urllib.request.urlopen(f"{server.url}/live", timeout=10) as response:
            assert response.status == 200
    finally:
        server.close()
