"""The console's doors without a browser: CSRF, Host/Origin, sessions, uploads confined, recordings by id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
import yaml
from conftest import wait_until
from helpers import ALICE, TOKEN, write_config
from test_console_browser import BAD_CSV, FLOW, campaign_files, console_service

from modem_dialer.config import load_config
from modem_dialer.service.console import live
from modem_dialer.service.service import Service


@pytest.fixture
async def console(tmp_path, monkeypatch):
    """The service with its console, on this test's event loop (test_console_browser's setup).
    The bank stream ticks every 0.2 s (its setting, 0.5 s by default): the stream tests see
    their ticks sooner."""
    monkeypatch.setattr(live, "TICK", 0.2)
    async with console_service(tmp_path, monkeypatch) as c:
        yield c


async def login(s: aiohttp.ClientSession, base: str) -> str:
    async with s.post(f"{base}/console/login", data={"token": TOKEN}, allow_redirects=False) as r:
        assert r.status == 303
    return next(c.value for c in s.cookie_jar if c.key == "md_csrf")


async def test_csrf_and_foreign_host_are_refused(console):
    svc, _loaded, _tmp = console
    base = f"http://127.0.0.1:{svc.port}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.get(f"{base}/console/api/bank") as r:
            assert r.status == 401                                   # no session
        async with s.get(f"{base}/console/api/bank", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 401                                   # the API token is not a session
        async with s.post(f"{base}/console/login", data={"token": TOKEN}, allow_redirects=False) as r:
            assert r.status == 303
            cookie = r.headers.getall("Set-Cookie")
        assert any("md_session=" in c and "HttpOnly" in c and "SameSite=Strict" in c for c in cookie)
        csrf = next(c.value for c in jar if c.key == "md_csrf")
        await svc.runner.submit(to=["alice"], say="csrf test", source="test")
        alert_id = svc.runner.alerts.live_alerts()[0]["id"]
        url = f"{base}/console/api/alerts/{alert_id}/resolve"
        async with s.post(url) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
        async with s.post(url, headers={"X-CSRF-Token": "forged"}) as r:
            assert r.status == 403
        # a page on another site: the browser sends its Origin (and no SameSite=Strict cookie, tested above)
        async with s.post(url, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}) as r:
            assert r.status == 403 and "Origin" in (await r.json())["error"]
        async with s.get(f"{base}/console/api/bank", headers={"Host": "evil.example"}) as r:
            assert r.status == 403 and "Host" in (await r.json())["error"]        # DNS rebinding
        assert svc.runner.alerts.get_alert(alert_id)["status"] == "open"      # nothing was done
        async with s.post(url, headers={"X-CSRF-Token": csrf, "Origin": base}) as r:
            assert r.status == 200 and (await r.json())["status"] == "resolved"
        async with s.get(f"{base}/console/api/suppression/export.csv") as r:
            assert r.status == 200 and (await r.text()).splitlines() == ["number,reason,source,added_at"]
        # a recording is asked for by call and index, never by path
        async with s.get(f"{base}/console/api/calls/1/recordings/..%2F..%2Fetc%2Fpasswd") as r:
            assert r.status == 404


async def test_uploads_are_confined_sanitised_and_capped(console):
    svc, _loaded, tmp = console
    base = f"http://127.0.0.1:{svc.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        csrf = await login(s, base)
        h = {"X-CSRF-Token": csrf}

        async def upload(parts: list[tuple[str, str, bytes]]) -> tuple[int, dict]:
            form = aiohttp.FormData()
            for field, name, data in parts:
                form.add_field(field, data, filename=name)
            async with s.post(f"{base}/console/api/campaigns", data=form, headers=h) as r:
                return r.status, await r.json()

        # a campaign file naming a file outside the upload is refused before anything is read
        status, r = await upload([("campaign", "c.yaml", b"name: x\ncontacts: ../../../../etc/passwd\n"
                                   b"say: hi\npurpose: survey\nrules: none\n")])
        assert status == 400 and r["errors"] == ["c.yaml: contacts: '../../../../etc/passwd' is not one of the "
                                                  "uploaded files"], r
        # a path in the file name is cut to its last part; a wrong extension is named
        status, r = await upload([("campaign", "../../evil.sh", b"x")])
        assert status == 400 and r["errors"][0].endswith("evil.sh: expected a .yaml or .yml file"), r
        assert "/" not in r["errors"][0] and ": ." not in r["errors"][0]
        status, r = await upload([("contacts", "c.csv", b"number\n")])
        assert status == 400 and "choose the campaign file" in r["errors"][0]
        # a YAML mistake: one line naming file, line and key, as the CLI says it
        status, r = await upload([("campaign", "c.yaml", b"name: x\ncontacts: c.csv\nsay: hi\npurpose: nope\n"
                                   b"rules: none\n"), ("contacts", "c.csv", b"number\n+33612345620\n")])
        assert status == 400 and r["errors"][0].startswith("c.yaml:4: purpose"), r
        # bad rows: listed, nothing started until the operator accepts them
        files = campaign_files(tmp / "up", BAD_CSV)
        parts = [(k, p.name, p.read_bytes()) for k, p in files.items()]
        status, r = await upload(parts)
        assert status == 422 and r["bad_rows"] == 2 and r["can_accept"], r
        assert svc.campaigns.store.get_campaign("webtest") is None
        form = aiohttp.FormData()
        for k, name, data in parts:
            form.add_field(k, data, filename=name)
        form.add_field("accept_bad", "1")
        async with s.post(f"{base}/console/api/campaigns", data=form, headers=h) as resp:
            assert resp.status == 202, await resp.text()
            assert (await resp.json())["contacts"] == 1
        for d in (svc.loaded.resolve(svc.loaded.config.cache_dir) / "uploads").iterdir():
            assert d.stat().st_mode & 0o777 == 0o700


async def test_consent_add_and_import(console, monkeypatch):
    from modem_dialer.service.console import views
    from modem_dialer.store import Compliance

    svc, _loaded, _tmp = console
    base = f"http://127.0.0.1:{svc.port}"
    comp = Compliance(svc.conn)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        csrf = await login(s, base)
        h = {"X-CSRF-Token": csrf}
        async with s.get(f"{base}/console/api/consent") as r:
            assert (await r.json())["scopes"] == ["automated_calls", "political_automated",
                                                 "telemarketing_robocalls", "out_of_hours"]
        # no CSRF header: refused, nothing recorded
        async with s.post(f"{base}/console/api/consent", json={"number": "0612345601", "scope": "automated_calls"}) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
        form = aiohttp.FormData()
        form.add_field("file", b"number,scope,source,given_at\n0612345602,automated_calls,web,2026-01-01\n",
                       filename="consent.csv")
        async with s.post(f"{base}/console/api/consent/import", data=form) as r:
            assert r.status == 403
        assert comp.find_consent("+33612345601", "automated_calls") is None
        assert comp.find_consent("+33612345602", "automated_calls") is None

        # add: the number read in the default region, the scope from the closed set
        async with s.post(f"{base}/console/api/consent", headers=h,
                          json={"number": "06 12 34 56 01", "scope": "automated_calls", "source": "phone",
                                "note": "ticket 42"}) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        assert body["number"] == "+33612345601" and body["scope"] == "automated_calls"
        rec = comp.find_consent("+33612345601", "automated_calls")
        assert rec is not None and rec["source"] == "phone" and rec["proof_ref"] == "ticket 42"
        assert rec["collector"].startswith("console")
        async with s.post(f"{base}/console/api/consent", headers=h,
                          json={"number": "12", "scope": "automated_calls"}) as r:
            assert r.status == 400 and (await r.json())["error"].startswith("number:")
        async with s.post(f"{base}/console/api/consent", headers=h,
                          json={"number": "0612345603", "scope": "automated_cals"}) as r:
            assert r.status == 400
            err = (await r.json())["error"]
        assert err.startswith("scope: unknown consent scope 'automated_cals'") and "out_of_hours" in err
        assert comp.find_consent("+33612345603", "automated_cals") is None

        async def upload(data: bytes, name: str = "consent.csv") -> tuple[int, dict]:
            form = aiohttp.FormData()
            form.add_field("file", data, filename=name)
            async with s.post(f"{base}/console/api/consent/import", data=form, headers=h) as r:
                return r.status, await r.json()

        # import: the good rows recorded, the bad one named with its line as `consent import` prints it
        status, r = await upload(b"number,scope,source,given_at,proof_ref\n"
                                 b"0612345610,automated_calls,web,2026-01-01T10:00:00Z,f1\n"
                                 b"0612345611,automated_cals,web,2026-01-01T10:00:00Z,f2\n"
                                 b"0612345612,out_of_hours,web,2026-01-02T10:00:00Z,\n")
        assert status == 200, r
        assert r["added"] == 2 and r["bad"] == 1, r
        assert r["errors"] == ["consent.csv:3: scope: unknown consent scope 'automated_cals' (one of automated_calls, "
                               "political_automated, telemarketing_robocalls, out_of_hours)"]
        assert r["summary"] == "consent.csv: 2 consent record(s) added, 1 bad row(s)"
        assert comp.find_consent("+33612345610", "automated_calls")["proof_ref"] == "f1"
        assert comp.find_consent("+33612345612", "out_of_hours") is not None
        assert comp.find_consent("+33612345611", "automated_calls") is None
        # a wrong header: one line naming file:1, nothing recorded
        status, r = await upload(b"number,scope,source\n0612345620,automated_calls,web\n")
        assert status == 400 and r["error"] == "consent.csv:1: missing column(s): given_at", r
        status, r = await upload(b"x", name="consent.sh")
        assert status == 400 and r["error"].endswith("consent.sh: expected a .csv or .txt file"), r
        # capped like the suppression import
        monkeypatch.setattr(views, "MAX_IMPORT", 64)
        status, r = await upload(b"number,scope,source,given_at\n" + b"0612345630,automated_calls,web,2026-01-01\n" * 4)
        assert status == 400 and "larger than" in r["error"], r
        assert comp.find_consent("+33612345630", "automated_calls") is None


async def test_a_latin1_consent_csv_from_excel_reads_as_the_cli_reads_it(console):
    """The console finds an upload's encoding as the CLI does (textfile.detect_encoding): a
    Windows-1252 file keeps its accents instead of becoming replacement characters."""
    from modem_dialer.store import Compliance

    svc, _loaded, _tmp = console
    base = f"http://127.0.0.1:{svc.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        csrf = await login(s, base)
        form = aiohttp.FormData()
        form.add_field("file", "number,scope,source,given_at\n0612345609,automated_calls,"
                       "formulaire Hélène (boutique de Besançon),2026-01-01\n".encode("cp1252"),
                       filename="consent.csv")
        async with s.post(f"{base}/console/api/consent/import", data=form, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200, await r.text()
    found = Compliance(svc.conn).find_consent("+33612345609", "automated_calls")
    assert found is not None and "Hélène" in str(dict(found)) and "Besançon" in str(dict(found)), found


async def _sse_event(r: aiohttp.ClientResponse) -> tuple[str, dict]:
    """The next server-sent event of a stream: (event name, its JSON data)."""
    name, data = "", ""
    while True:
        line = (await r.content.readline()).decode().rstrip("\n")
        if not line:
            if name:
                return name, json.loads(data)
            continue
        key, _, value = line.partition(": ")
        if key == "event":
            name = value
        elif key == "data":
            data = value


async def test_bank_stream_sends_the_bank_then_only_changes_shared_by_all_watchers(console):
    from modem_dialer.service.console.app import BANK_STREAM, BANK_VIEW

    svc, _loaded, _tmp = console
    sub = next(a for a in svc._runner_web.app._subapps if BANK_STREAM in a)
    stream, view = sub[BANK_STREAM], sub[BANK_VIEW]
    base = f"http://127.0.0.1:{svc.port}"
    names = set(svc.bank.slots)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await login(s, base)
        async with s.get(f"{base}/console/api/bank/stream") as a, s.get(f"{base}/console/api/bank/stream") as b:
            # each watcher's first event is the whole bank; a call's start is a time, not an age
            for r in (a, b):
                kind, doc = await _sse_event(r)
                assert kind == "bank" and {m["name"] for m in doc["modems"]} == names
                assert all("since" in m and "for_s" not in m for m in doc["modems"])
            # then changes only; with nothing happening on the bank, no modem and no query.
            # (today's counts are first read in a worker: wait until they are in)
            while True:
                kind, doc = await _sse_event(a)
                assert kind == "changes"
                if all(m["calls_today"] is not None for m in view.rows()["modems"]):
                    break
            await _sse_event(a)
            await _sse_event(b)
            built, queried = stream.built, view.queried
            for _ in range(4):
                for r in (a, b):
                    kind, doc = await _sse_event(r)
                    assert (kind, doc["modems"]) == ("changes", []) and doc["at"]
            # both watchers were served from one snapshot per tick
            assert stream.built - built <= 5, (stream.built, built)
            assert view.queried == queried, "the database did not change: no query"

            # a call starts: its modem comes as a change, with the number and the call's start,
            # and only the fields that changed (its port and limits did not)
            await svc.runner.submit(to=["alice"], say="stream test", source="test")
            while True:
                kind, doc = await _sse_event(a)
                assert kind == "changes"
                calling = [m for m in doc["modems"] if m.get("state") in ("dialing", "in call")]
                if calling:
                    break
            m = calling[0]
            assert m["peer"] == ALICE and m["since"] and m["call_id"] and m["name"] in names
            assert "port" not in m and "limits" not in m, m
            assert len(doc["modems"]) < len(names), "only the modems that changed"
            assert view.queried > queried
            assert stream.sent_full == 2, "each watcher got the whole bank once, then changes"
    await wait_until(lambda: stream.listeners == 0)


async def test_flows_page_lists_the_flow_that_answers_incoming_calls(make_bank, tmp_path):
    bank = await make_bank("quectel", n=2)
    loaded = write_config(bank, tmp_path, api={"port": 0, "token": TOKEN})
    doc = yaml.safe_load(Path(loaded.path).read_text())
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "in.yaml").write_text(FLOW)
    first = doc["modems"][0]["name"]
    doc["inbound"] = {"modems": {first: {"action": "answer", "flow": "flows/in.yaml"}}}
    Path(loaded.path).write_text(yaml.safe_dump(doc))
    svc = Service(load_config(loaded.path), port=0)
    await svc.start()
    try:
        base = f"http://127.0.0.1:{svc.port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            await login(s, base)
            async with s.get(f"{base}/console/api/flows") as r:
                assert r.status == 200
                flows = await r.json()
        assert [(f["file"], f["used_by"], f["ok"]) for f in flows] == [
            ("in.yaml", [f"incoming calls on {first}"], True)], flows
        assert flows[0]["campaign"] is None and flows[0]["check"].startswith("in.yaml: ok (3 nodes")
        assert {n["name"] for n in flows[0]["graph"]["nodes"]} == {"rate", "rec", "bye"}
    finally:
        await svc.stop()


async def test_bank_stream_ends_when_its_session_is_logged_out(console):
    svc, _loaded, _tmp = console
    base = f"http://127.0.0.1:{svc.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        csrf = await login(s, base)
        async with s.get(f"{base}/console/api/bank/stream") as r:
            # the browser is told to reconnect 1 s after the stream ends (its default: 3 s)
            # the stream tells the browser how long to wait before reconnecting (the setting)
            assert await r.content.readline() == f"retry: {live.RECONNECT_MS}\n".encode()
            assert (await _sse_event(r))[0] == "bank"
            # logged out from another tab: the open stream ends at its next update
            async with s.post(f"{base}/console/logout", headers={"X-CSRF-Token": csrf}) as out:
                assert out.status == 200
            rest = await asyncio.wait_for(r.content.read(), 10)    # b"" at the end of the stream
            assert rest.count(b"event: ") <= 1, rest
        async with s.get(f"{base}/console/api/bank/stream") as r:
            assert r.status == 401                              # the browser's reconnection is refused


def test_a_modem_in_a_call_with_its_next_call_armed_shows_the_call_it_has(tmp_path):
    """A line's next call is armed (its row written, not dialed) while its current call
    plays: the bank shows the modem in that call, not dialing the armed number (it did, for
    the whole call, whenever a campaign armed ahead)."""
    from modem_dialer.store import open_db
    from modem_dialer.store.console import ConsoleQueries

    conn = open_db(tmp_path / "j.db")
    at = "2026-01-01T10:00:00.000Z"
    ins = ("INSERT INTO calls (number, modem, created_at, started_at, answered_at) VALUES (?, ?, ?, ?, ?)")
    conn.execute(ins, ("+33612345601", "gsm0", at, at, at))          # in a call
    conn.execute(ins, ("+33612345602", "gsm0", at, None, None))      # its next one, armed
    conn.execute(ins, ("+33612345603", "gsm1", at, None, None))      # armed on a free line
    conn.execute(ins, ("+33612345604", "gsm2", at, at, None))        # dialing
    conn.commit()
    got = {m: (c.number, c.started_at is not None, c.answered_at is not None)
           for m, c in ConsoleQueries(conn).open_calls().items()}
    assert got == {"gsm0": ("+33612345601", True, True), "gsm1": ("+33612345603", False, False),
                   "gsm2": ("+33612345604", True, False)}
    conn.close()
