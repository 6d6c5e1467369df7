"""Event webhooks: outbox first, signed POSTs to a real aiohttp server on localhost, retried
while the target is down, delivered after it comes back, across a service restart."""

from __future__ import annotations

import yaml
from aiohttp import web
from helpers import ALICE, Api, wait_until, write_config
from ports import free_port
from test_service_alerts import services  # noqa: F401

from modem_dialer import webhooks
from modem_dialer.config import load_config
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.store import open_db
from modem_dialer.store.twoway import Outbox

SECRET = "whsec-test"


def with_webhook(loaded, url: str):
    doc = yaml.safe_load(loaded.path.read_text())
    doc["webhooks"] = [{"url": url, "secret": SECRET, "events": ["alert.raised", "alert.acknowledged"]}]
    loaded.path.write_text(yaml.safe_dump(doc))
    return load_config(str(loaded.path))


def test_signature_round_trip_and_tampering():
    body = b'{"event":"alert.raised"}'
    header = webhooks.sign(SECRET.encode(), 1_700_000_000, body)
    assert webhooks.verify(SECRET.encode(), header, body, now=1_700_000_010)
    assert not webhooks.verify(SECRET.encode(), header, body + b" ", now=1_700_000_010)
    assert not webhooks.verify(b"other", header, body, now=1_700_000_010)
    assert not webhooks.verify(SECRET.encode(), header, body, now=1_700_001_000)     # replayed later
    assert not webhooks.verify(SECRET.encode(), "garbage", body)


async def test_target_down_then_back_across_a_restart(make_bank, tmp_path, services, monkeypatch):  # noqa: F811
    monkeypatch.setattr(webhooks, "BACKOFF_FIRST", 0.2)
    monkeypatch.setattr(webhooks, "BACKOFF_MAX", 0.4)
    monkeypatch.setattr(webhooks, "IDLE_POLL", 0.2)
    port = free_port()
    bank = await make_bank("quectel", Scenario(numbers={ALICE: Callee("no_answer", end_after=0.2)}))
    loaded = with_webhook(write_config(bank, tmp_path), f"http://127.0.0.1:{port}/hook")
    svc = await services(loaded)
    _, r = await Api(svc).req("POST", "/v1/alerts", {"text": "db1 down", "to": [ALICE]})
    await Api(svc).req("POST", f"/v1/alerts/{r['id']}/ack", {"by": "carol"})
    box = Outbox(svc.conn)
    # the target is down: both events wait in the outbox, retried
    await wait_until(lambda: all(x["attempts"] >= 2 for x in box.list()) and len(box.list()) == 2)
    assert {x["status"] for x in box.list()} == {"pending"} and "ClientConnectorError" in box.list()[0]["last_error"]
    await svc.stop()                       # a restart loses nothing
    got: list[tuple[dict, str, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        got.append((dict(request.headers), request.headers.get(webhooks.SIGNATURE_HEADER, ""), body))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        svc2 = await services(loaded)
        await wait_until(lambda: len(got) >= 2)
        await wait_until(lambda: {x["status"] for x in Outbox(svc2.conn).list()} == {"delivered"})
        status, box = await Api(svc2).req("GET", "/v1/webhooks")
        assert status == 200 and box["counts"] == {"delivered": 2} and box["items"][0]["attempts"] >= 3
        assert (await Api(svc2).req("GET", "/v1/webhooks?status=nope"))[0] == 400
    finally:
        await runner.cleanup()
    events = [h["X-Modem-Dialer-Event"] for h, _, _ in got]
    assert sorted(events) == ["alert.acknowledged", "alert.raised"]
    for _, sig, body in got:
        assert webhooks.verify(SECRET.encode(), sig, body)
    conn = open_db(loaded.database_path)
    assert conn.execute("SELECT COUNT(*) FROM webhook_outbox WHERE status = 'delivered'").fetchone()[0] == 2


async def test_campaign_run_delivers_call_ended_and_opt_out(make_bank, tmp_path):
    from test_campaign_run import run_cli as campaign_cli
    from test_campaign_run import setup

    got: list[tuple[str, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((request.headers.get(webhooks.SIGNATURE_HEADER, ""), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        a, b = "+33612345901", "+33612345902"
        bank = await make_bank("quectel", Scenario(numbers={a: Callee("answer", answer_after=0.1, keys=[(0.1, "9")]),
                                                            b: Callee("busy", end_after=0.1)}))
        cfg, camp = setup(tmp_path, bank, [a, b], extra="opt_out_key: 9\n")
        doc = yaml.safe_load(cfg.read_text())
        doc["webhooks"] = [{"url": f"http://127.0.0.1:{port}/hook", "secret": SECRET}]
        cfg.write_text(yaml.safe_dump(doc))
        code, _, err = await campaign_cli(cfg, "campaign", "run", str(camp))
        assert code == 0, err
        await wait_until(lambda: len(got) >= 3)
    finally:
        await runner.cleanup()
    import json

    bodies = [json.loads(b) for _, b in got]
    assert all(webhooks.verify(SECRET.encode(), sig, b) for sig, b in got)
    ended = {d["data"]["number"]: d["data"]["outcome"] for d in bodies if d["event"] == "call.ended"}
    assert ended == {a: "answered", b: "busy"}
    assert [d["data"]["number"] for d in bodies if d["event"] == "opt_out"] == [a]
