"""The screenshots of docs/console.md, taken from the real pages.

Starts the service on a simulated bank of 8 modems (real pseudo-terminals, a real SQLite
file), then drives Debian's headless chromium with playwright the way an operator would:
logs in, uploads a campaign with a mistake, then a survey campaign and a reminder
campaign, watches the bank while they call, opens the report, raises and acknowledges an
alert, plays a call's recording, fills the suppression list and consent records, and saves
each page to docs/img/console-*.png (desktop 1280 px wide, and a 390x844 phone for two pages).

Usage: .venv/bin/python scripts/console_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from modem_dialer.config import load_config
from modem_dialer.service.service import Service
from modem_dialer.sim.callee import Callee, Scenario
from modem_dialer.sim.sim_bank import SimBank
from modem_dialer.sim.voice import write_tone_wav

TOKEN = "screenshot-token"
ONCALL = "+33612340001"
SURVEY = [f"+336123456{i:02d}" for i in range(24)]
REMINDERS = [f"+3369800{i:04d}" for i in range(160)]

# two questions by key, then a message: three charts on the report
SURVEY_FLOW = """\
start: rate
nodes:
  rate:
    type: menu
    prompts: [{tone_hz: 440, tone_ms: 300}]
    choices: {1: recommend, 2: recommend, 3: recommend, 4: recommend, 5: recommend}
    answer: rating
    timeout: 4
    on_fail: bye
  recommend:
    type: menu
    prompts: [{tone_hz: 520, tone_ms: 200}]
    choices: {1: comment, 2: comment}
    answer: would_recommend
    timeout: 4
    on_fail: bye
  comment:
    type: record
    prompts: [{tone_hz: 500, tone_ms: 100}]
    answer: message
    max_seconds: 4
    silence_seconds: 0.5
    next: bye
  bye: {type: hangup}
"""

INBOUND_FLOW = """\
start: welcome
nodes:
  welcome:
    type: menu
    prompts: [{tone_hz: 440, tone_ms: 300}]
    choices: {1: advisor, 9: optout}
    timeout: 5
    on_fail: bye
  advisor: {type: hangup}
  optout: {type: optout}
  bye: {type: hangup}
"""


def scenario() -> Scenario:
    """Who answers what: survey people press 1 to 5 and leave a message (a tone), a few are
    busy or do not answer; the reminders are listened to for a few seconds."""
    numbers: dict[str, Callee] = {ONCALL: Callee("answer", answer_after=0.5)}
    for i, n in enumerate(SURVEY):
        if i % 8 == 6:
            numbers[n] = Callee("busy", end_after=0.6)
        elif i % 8 == 7:
            numbers[n] = Callee("no_answer", end_after=1.5)
        else:
            numbers[n] = Callee("answer", answer_after=0.6, keys=[(0.7, "54125344"[i % 8]), (1.5, "1121"[i % 4])],
                                tones=[(2.3, 0.8, 300.0 + 40 * i)])
    for i, n in enumerate(REMINDERS):
        numbers[n] = (Callee("no_answer", end_after=2.0) if i % 5 == 4 else
                      Callee("answer", answer_after=1.0 + i % 3, hangup_after=4.0 + i % 7))
    return Scenario(default=Callee("answer", answer_after=0.5), numbers=numbers)


def files(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    (d / "survey.yaml").write_text("name: survey-march\ncontacts: survey.csv\nflow: survey-flow.yaml\n"
                                   "purpose: survey\nrules: none\n")
    (d / "survey.csv").write_text("number,name\n" + "".join(f"{n},Person {i}\n" for i, n in enumerate(SURVEY)))
    (d / "survey-flow.yaml").write_text(SURVEY_FLOW)
    (d / "bad.csv").write_text("number,name\n+33612345600,Ann\nnot-a-number,Bob\n+33612345600,Ann again\n"
                               "06 12 34 5,Carl\n")
    (d / "reminders.yaml").write_text("name: reminders\ncontacts: reminders.csv\nmessage: reminder.wav\n"
                                      "purpose: informational\nrules: none\n")
    (d / "reminders.csv").write_text("number\n" + "".join(f"{n}\n" for n in REMINDERS))
    write_tone_wav(d / "reminder.wav", 6.0)
    (d / "inbound.yaml").write_text(INBOUND_FLOW)
    (d / "suppress.csv").write_text("number\n0612349990\n0612349991\n06 12 34 99 92\n")
    (d / "consent.csv").write_text("number,scope,source,given_at,proof_ref\n"
                                   "0612349980,automated_calls,web form,2026-01-12T10:04:00Z,form-2231\n"
                                   "0612349981,automated_calls,web form,2026-01-13T18:40:00Z,form-2240\n"
                                   "0612349982,out_of_hours,phone,2026-02-02T09:15:00Z,\n")
    return {p.name: p for p in d.iterdir()}


def config(bank: SimBank, d: Path) -> Path:
    doc: dict[str, Any] = yaml.safe_load(bank.config_yaml(database=str(d / "console.db")))
    doc["cache_dir"] = str(d / "cache")
    doc["limits"] = {"calls_per_hour": 60, "calls_per_day": 400, "minutes_per_day": 120}
    doc["alerting"] = {
        "people": {"oncall": ONCALL, "backup": "+33612340002"},
        "policies": {"default": {"steps": [{"to": "oncall", "delay": 120.0}, {"to": "backup", "delay": 120.0}],
                                 "message_repeat": 1, "sms_fallback": False}},
        "api": {"port": 0, "token": TOKEN}}
    doc["inbound"] = {"modems": {doc["modems"][0]["name"]: {"action": "answer", "flow": str(d / "in" / "inbound.yaml")}}}
    path = d / "config.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def shoot(page: Any, out: Path, name: str, full: bool = True) -> None:
    # no toast over the page: wait for the last one to fade
    await page.wait_for_function("!document.querySelector('#toast.show')")
    await page.wait_for_timeout(300)       # the fade
    await page.screenshot(path=str(out / f"console-{name}.png"), full_page=full)
    print(f"  {out / f'console-{name}.png'}")


async def run(out: Path, chromium: str, d: Path) -> None:
    from playwright.async_api import async_playwright

    f = files(d / "in")
    bank = await SimBank.of(8, "quectel,simcom", scenario()).start()
    try:
        svc = Service(load_config(str(config(bank, d))), port=0)
        svc.campaigns.poll = 0.2
        await svc.start()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                    "--autoplay-policy=no-user-gesture-required"])
                try:
                    await pages(browser, f"http://127.0.0.1:{svc.port}", f, out)
                finally:
                    await browser.close()
        finally:
            await svc.stop()
    finally:
        await bank.stop()


async def pages(browser: Any, base: str, f: dict[str, Path], out: Path) -> None:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page = await ctx.new_page()
    await page.goto(f"{base}/")
    await page.wait_for_selector("#token")
    await shoot(page, out, "login")
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_selector(".modem >> nth=7")

    # campaigns: a refused upload, then two campaigns started from the form
    await page.click("nav >> text=Campaigns")
    await page.wait_for_selector("#upload")
    await page.set_input_files("#f-campaign", str(f["survey.yaml"]))
    await page.set_input_files("#f-contacts", files=[{"name": "survey.csv", "mimeType": "text/csv",
                                                      "buffer": f["bad.csv"].read_bytes()}])
    await page.set_input_files("#f-flow", str(f["survey-flow.yaml"]))
    await page.click("#upload button[type=submit]")
    await page.wait_for_selector("#upload-result .errors")
    await shoot(page, out, "upload-errors")
    for camp, contacts, extra in (("survey.yaml", "survey.csv", ("#f-flow", "survey-flow.yaml")),
                                  ("reminders.yaml", "reminders.csv", ("#f-prompts", "reminder.wav"))):
        await page.click("nav >> text=Bank")             # a fresh form
        await page.click("nav >> text=Campaigns")
        await page.wait_for_selector("#upload")
        await page.set_input_files("#f-campaign", str(f[camp]))
        await page.set_input_files("#f-contacts", str(f[contacts]))
        await page.set_input_files(extra[0], str(f[extra[1]]))
        await page.click("#upload button[type=submit]")
        await page.wait_for_selector("#upload-result .ok-msg")
    await page.wait_for_selector('[data-campaign="survey-march"] .badge.done', timeout=120000)
    await page.wait_for_function("document.querySelector('[data-campaign=\"reminders\"]')"
                                 ".textContent.includes('ETA')", timeout=30000)
    await shoot(page, out, "campaigns")

    # the bank while the reminders call
    await page.click("nav >> text=Bank")
    await page.wait_for_function("document.querySelectorAll('.modem .badge.in-call').length >= 4", timeout=30000)
    await shoot(page, out, "bank")

    # the survey's report
    await page.goto(f"{base}/console/#/campaign/survey-march")
    await page.wait_for_selector(".chart svg rect")
    await page.wait_for_selector("td >> text=+33612345600")
    await shoot(page, out, "report")

    # an alert: raised with the form, its first call made, acknowledged with its button
    await page.click("nav >> text=Alerts")
    await page.wait_for_selector("#test-alert")
    await page.click("#test-alert button[type=submit]")
    await page.wait_for_selector("[data-alert] .timeline li", timeout=60000)
    await shoot(page, out, "alerts")
    await page.click("[data-alert] [data-act=ack]")
    await page.wait_for_selector("[data-alert] .badge.acknowledged")

    # the call journal, and one survey call with its recording
    await page.click("nav >> text=Calls")
    await page.wait_for_selector("tbody tr >> nth=20")
    await shoot(page, out, "calls", full=False)      # the first rows of fifty say it
    await page.goto(f"{base}/console/#/calls?campaign=survey-march&outcome=answered")
    await page.wait_for_selector("tbody tr")
    await page.locator("tbody tr >> nth=0").locator("a").first.click()
    await page.wait_for_selector("audio[data-recording]")
    await page.evaluate("() => document.querySelector('audio[data-recording]').load()")
    await page.wait_for_function("document.querySelector('audio[data-recording]').duration > 0")
    await shoot(page, out, "call")

    # suppression and consent
    await page.click("nav >> text=Suppression")
    await page.fill("input[aria-label='number to suppress']", "06 12 34 99 99")
    await page.click("#suppress-add button")
    await page.wait_for_selector("td >> text=+33612349999")
    await page.set_input_files("input[aria-label='suppression list file']", str(f["suppress.csv"]))
    await page.click("form:has(input[aria-label='suppression list file']) button")
    await page.wait_for_selector("td >> text=+33612349992")
    await page.fill("input[aria-label='consent number']", "06 12 34 99 83")
    await page.select_option("select[aria-label='consent scope']", "automated_calls")
    await page.click("#consent-add button")
    await page.wait_for_selector("td >> text=+33612349983")
    await page.set_input_files("input[aria-label='consent CSV file']", str(f["consent.csv"]))
    await page.click("#consent-import button")
    await page.wait_for_selector("td >> text=+33612349982")
    await shoot(page, out, "suppression")

    # flows: the survey's and the one answering incoming calls
    await page.click("nav >> text=Flows")
    await page.wait_for_selector(".flowsvg svg >> nth=1")
    await shoot(page, out, "flows")

    # a phone: the bank and the report
    phone = await browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    await phone.add_cookies(await ctx.cookies())
    p = await phone.new_page()
    await p.goto(f"{base}/console/#/bank")
    await p.wait_for_selector(".modem >> nth=7")
    await shoot(p, out, "bank-phone")
    await p.goto(f"{base}/console/#/campaign/survey-march")
    await p.wait_for_selector(".chart svg rect")
    await p.wait_for_selector("td >> text=+33612345600")
    await shoot(p, out, "report-phone")
    await phone.close()
    await ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "img"))
    args = ap.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit("chromium is not installed (bash scripts/setup.sh installs it)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(run(out, chromium, Path(d)))


if __name__ == "__main__":
    main()
