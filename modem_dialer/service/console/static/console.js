// The modem-dialer console: hash-routed pages built with the DOM (never innerHTML with data).
"use strict";
(() => {
  const main = document.getElementById("main");
  let cleanup = [];          // timers and streams of the page on screen
  let token = 0;             // bumps on every navigation: late answers of the old page are dropped

  // ---- helpers ----------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const csrf = () => (document.cookie.match(/(?:^|; )md_csrf=([^;]*)/) || [])[1] || "";
  async function api(path, opts) {
    opts = opts || {};
    const init = { method: opts.method || "GET", headers: {}, credentials: "same-origin" };
    if (init.method !== "GET") init.headers["X-CSRF-Token"] = decodeURIComponent(csrf());
    if (opts.json !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(opts.json); }
    if (opts.form) init.body = opts.form;
    const r = await fetch("/console/api" + path, init);
    if (r.status === 401) { location.href = "/console/login"; throw new Error("log in first"); }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok && !opts.allowError) throw new Error((body && (body.error || (body.errors || []).join("\n"))) || r.statusText);
    return opts.allowError ? { status: r.status, body } : body;
  }
  function toast(msg) {
    const t = document.getElementById("toast");
    t.textContent = msg;
    t.classList.add("show");
    setTimeout(() => t.classList.remove("show"), 2500);
  }
  const cls = s => String(s || "").replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  const badge = s => h("span", { class: "badge " + cls(s) }, s || "-");
  function dur(s) {
    if (s === null || s === undefined) return "-";
    s = Math.round(s);
    if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
    return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
  }
  function when(ts) {
    if (!ts) return "-";
    const d = new Date(ts);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }
  // a page's polling period, as the service wrote it into the page (data-*-ms on <body>)
  const refreshMs = (key, dflt) => Number(document.body.dataset[key]) || dflt;
  function every(ms, fn) {
    const my = token;
    const tick = async () => { if (my !== token) return; try { await fn(); } catch (e) { console.warn(e); } };
    const id = setInterval(tick, ms);
    cleanup.push(() => clearInterval(id));
    return tick();
  }
  function setPage(title, ...kids) {
    main.replaceChildren(h("h1", {}, title), ...kids);
    document.title = `${title} · modem-dialer`;
  }
  function table(heads, rows, stack) {
    return h("div", { class: "scroll" }, h("table", { class: stack ? "stack" : "" },
      h("thead", {}, h("tr", {}, heads.map(x => h("th", {}, x)))),
      h("tbody", {}, rows.map(r => h("tr", {}, r.map((c, i) => h("td", { "data-h": heads[i] }, c)))))));
  }
  function signalBars(dbm) {
    const n = dbm === null || dbm === undefined ? 0 : dbm >= -73 ? 4 : dbm >= -83 ? 3 : dbm >= -93 ? 2 : dbm >= -105 ? 1 : 0;
    const b = h("span", { class: "bars", title: dbm === null ? "no signal reading" : `${dbm} dBm` });
    for (let i = 0; i < 4; i++) { const x = h("i", { class: i < n ? "on" : "" }); x.style.height = `${4 + i * 3}px`; b.append(x); }
    return b;
  }
  function errorBox(lines) { return h("div", { class: "errors", role: "alert" }, lines.join("\n")); }

  // ---- bank (home) ------------------------------------------------------------------
  // the row gives when the call started (it does not change each tick); its age is counted here
  const callAge = (m, at) => dur(m.since ? Math.max(0, (Date.parse(at) - Date.parse(m.since)) / 1000) : null);
  function modemCard(m, at) {
    const lim = m.limits || {}, used = m.used || {};
    const limits = [
      lim.calls_per_hour ? `${used.calls_hour ?? "?"}/${lim.calls_per_hour} per hour` : null,
      lim.calls_per_day ? `${m.calls_today ?? "…"}/${lim.calls_per_day} per day` : null,
      lim.minutes_per_day ? `${used.minutes_today ?? "?"}/${lim.minutes_per_day} min` : null].filter(Boolean).join(" · ") || "none";
    const peer = m.peer ? h("div", { class: "peer" }, m.state === "in call" ? `☎ ${m.peer} · ` : `→ ${m.peer} · `,
      h("span", { class: "age" }, callAge(m, at)),
      m.call_id ? [" ", h("a", { href: `#/call/${m.call_id}`, class: "small" }, "call")] : null) : null;
    return h("div", { class: "modem", "data-modem": m.name },
      h("div", { class: "head" }, h("span", { class: "name" }, m.name), badge(m.state)),
      peer,
      h("dl", {},
        h("dt", {}, "signal"), h("dd", {}, signalBars(m.signal_dbm), " ", m.signal_dbm !== null ? `${m.signal_dbm} dBm` : "-"),
        h("dt", {}, "network"), h("dd", {}, [m.registration || "-", m.operator].filter(Boolean).join(" · ")),
        h("dt", {}, "SIM"), h("dd", { class: "num" }, m.sim === "ready" ? (m.iccid || "ready") : (m.sim || "-")),
        h("dt", {}, "today"), h("dd", { class: "num" }, m.calls_today === null ? "counting…" : `${m.calls_today} call(s)`),
        h("dt", {}, "limits"), h("dd", {}, limits),
        m.rotation && m.rotation.state === "out" ? [h("dt", {}, "rotation"), h("dd", {}, `out: ${m.rotation.reason || ""}`)] : null,
        h("dt", {}, "port"), h("dd", { class: "small muted" }, m.port)),
      m.error ? h("div", { class: "err" }, "last error: " + m.error) : null);
  }
  // The stream sends the whole bank first ("bank"), then only what changed ("changes": the
  // modems whose row changed, each with its changed fields): the page keeps the bank and
  // redraws only those cards, and the age of the calls going on.
  function renderBank(bank, changed) {
    const counts = {};
    for (const m of bank.modems.values()) counts[m.state] = (counts[m.state] || 0) + 1;
    const key = JSON.stringify(counts), updated = `updated ${new Date(bank.at).toLocaleTimeString()}`;
    const box = document.getElementById("bank");
    if (!box) return;
    if (key !== bank.countsKey || !changed || !bank.cards) {
      bank.countsKey = key;
      bank.updated = h("span", { class: "muted small" }, updated);
      const sum = h("div", { class: "summary" },
        h("span", {}, h("b", {}, bank.modems.size), " modems"),
        Object.entries(counts).map(([k, v]) => h("span", {}, badge(k), " ", v)), bank.updated);
      if (changed && bank.cards) box.firstChild.replaceWith(sum);
      else {
        bank.cards = new Map();
        for (const m of bank.modems.values()) bank.cards.set(m.name, modemCard(m, bank.at));
        box.replaceChildren(sum, h("div", { class: "modems" }, [...bank.cards.values()]));
        return;
      }
    } else if (bank.updated.textContent !== updated) bank.updated.textContent = updated;
    for (const m of bank.modems.values()) {
      if (changed.has(m.name)) {
        const card = modemCard(m, bank.at);
        bank.cards.get(m.name).replaceWith(card);
        bank.cards.set(m.name, card);
      } else if (m.since) {
        // a call going on: only its age moves (the text, once a second; no new card, no layout of the rest)
        const age = bank.cards.get(m.name).querySelector(".age"), text = callAge(m, bank.at);
        if (age && age.textContent !== text) age.textContent = text;
      }
    }
  }
  function bankFrom(doc) {
    return { at: doc.at, modems: new Map(doc.modems.map(m => [m.name, m])), cards: null };
  }
  async function pageBank() {
    setPage("Modem bank", h("div", { id: "bank" }, h("p", { class: "muted" }, "connecting…")));
    let bank = bankFrom(await api("/bank"));
    renderBank(bank, null);
    const live = document.getElementById("live");
    const es = new EventSource("/console/api/bank/stream");
    es.addEventListener("bank", ev => { live.classList.add("on"); bank = bankFrom(JSON.parse(ev.data)); renderBank(bank, null); });
    es.addEventListener("changes", ev => {
      live.classList.add("on");
      const d = JSON.parse(ev.data);
      bank.at = d.at;
      // each change names a modem and carries only the fields of its row that changed
      const known = d.modems.every(m => bank.modems.has(m.name));
      for (const m of d.modems) bank.modems.set(m.name, Object.assign({}, bank.modems.get(m.name), m));
      renderBank(bank, known ? new Set(d.modems.map(m => m.name)) : null);
    });
    es.onerror = () => {
      live.classList.remove("on");
      // a refused reconnection (the session ended: logged out elsewhere, or the service
      // restarted) closes the stream for good: api() then takes the page to the login
      if (es.readyState === EventSource.CLOSED) api("/bank").catch(() => {});
    };
    cleanup.push(() => { es.close(); live.classList.remove("on"); });
  }

  // ---- campaigns ----------------------------------------------------------------------
  function campaignCard(c) {
    const act = async (a) => {
      try { await api(`/campaigns/${encodeURIComponent(c.name)}/${a}`, { method: "POST" }); toast(`${c.name}: ${a}`); refreshCampaigns(); }
      catch (e) { toast(e.message); }
    };
    const live = c.running || c.status === "running" || c.status === "paused";
    if (c.total === null) c.total = c.finished = 0;
    const pct = c.total ? Math.floor(100 * c.finished / c.total) : 0;
    return h("div", { class: "card camp", "data-campaign": c.name },
      h("div", {},
        h("div", { class: "row" }, h("a", { href: `#/campaign/${encodeURIComponent(c.name)}`, class: "name" }, h("b", {}, c.name)), badge(c.status),
          c.running ? null : (c.status === "running" ? h("span", { class: "small muted" }, "(not running in this service)") : null)),
        h("div", { class: "row small muted" }, c.counting ? "counting contacts…" : `${c.finished.toLocaleString()} / ${c.total.toLocaleString()} contacts · ${pct}%`,
          c.eta_s ? ` · ETA ${dur(c.eta_s)}` : "", c.waiting_until ? ` · waiting until ${when(c.waiting_until)}` : ""),
        Charts.progress(c.finished, c.total),
        h("div", { class: "counts" }, Object.entries(c.outcomes).map(([k, v]) => h("span", {}, badge(k), " ", v)),
          Object.keys(c.outcomes).length ? null : h("span", { class: "muted" }, "no calls yet"))),
      h("div", { class: "actions" },
        c.status === "paused" ? h("button", { onclick: () => act("resume"), "data-act": "resume" }, "Resume")
          : h("button", { onclick: () => act("pause"), "data-act": "pause", disabled: !live }, "Pause"),
        c.status === "stopped" ? h("button", { onclick: () => act("resume"), "data-act": "restart" }, "Restart") : null,
        h("button", { class: "danger", onclick: () => { if (confirm(`Stop ${c.name}? Calls in progress finish.`)) act("stop"); }, "data-act": "stop", disabled: !live }, "Stop")));
  }
  let refreshCampaigns = () => {};
  function uploadForm() {
    const out = h("div", { id: "upload-result" });
    const accept = h("input", { type: "checkbox", name: "accept_bad", value: "1", id: "accept_bad" });
    const acceptRow = h("div", { class: "field", hidden: true }, h("label", { for: "accept_bad" }, accept, " import the good rows anyway (the bad rows are left out, as campaign run does)"));
    const form = h("form", { id: "upload", class: "card" },
      h("h2", {}, "Start a campaign"),
      h("p", { class: "small muted" }, "Upload the campaign file with the files it names (contacts CSV, WAV prompts, flow). They are checked as ",
        h("code", {}, "modem-dialer campaign run"), " checks them."),
      h("div", { class: "row" },
        h("div", { class: "field grow" }, h("label", { for: "f-campaign" }, "campaign file (.yaml)"), h("input", { id: "f-campaign", type: "file", name: "campaign", accept: ".yaml,.yml", required: true })),
        h("div", { class: "field grow" }, h("label", { for: "f-contacts" }, "contacts (.csv)"), h("input", { id: "f-contacts", type: "file", name: "contacts", accept: ".csv,.txt" })),
        h("div", { class: "field grow" }, h("label", { for: "f-prompts" }, "prompts (.wav)"), h("input", { id: "f-prompts", type: "file", name: "prompts", accept: ".wav", multiple: true })),
        h("div", { class: "field grow" }, h("label", { for: "f-flow" }, "flow (.yaml, optional)"), h("input", { id: "f-flow", type: "file", name: "flow", accept: ".yaml,.yml" }))),
      acceptRow,
      h("button", { type: "submit", class: "primary" }, "Check and start"), out);
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const btn = form.querySelector("button[type=submit]");
      btn.disabled = true;
      out.replaceChildren(h("p", { class: "muted" }, "checking…"));
      try {
        const { status, body } = await api("/campaigns", { method: "POST", form: new FormData(form), allowError: true });
        if (status === 202 || status === 200) {
          out.replaceChildren(h("div", { class: "ok-msg" }, `${body.name}: ${body.started ? "started" : "already running"} (${body.contacts} contacts)`),
            body.warnings && body.warnings.length ? errorBox(body.warnings) : "");
          form.reset();
          acceptRow.hidden = true;
          refreshCampaigns();
        } else {
          const errs = (body && (body.errors || [body.error])) || ["upload failed"];
          if (body && body.can_accept) acceptRow.hidden = false;
          out.replaceChildren(h("p", { class: "error" }, body && body.can_accept ? `${body.bad_rows} bad row(s): nothing started` : "Not started:"), errorBox(errs));
        }
      } catch (e) { out.replaceChildren(errorBox([e.message])); }
      btn.disabled = false;
    });
    return form;
  }
  async function pageCampaigns() {
    const list = h("div", { id: "campaign-list" }, h("p", { class: "muted" }, "loading…"));
    setPage("Campaigns", list, uploadForm());
    // the cards are drawn again only when what they show changed: a card redrawn at every poll
    // replaced its buttons under the pointer (a click between press and release was lost)
    let shown = null;
    refreshCampaigns = async () => {
      const cs = await api("/campaigns");
      const seen = JSON.stringify(cs);
      if (seen === shown) return;
      shown = seen;
      list.replaceChildren(...(cs.length ? cs.map(campaignCard) : [h("p", { class: "muted" }, "No campaign yet: start one below.")]));
    };
    await every(refreshMs("campaignsMs", 1000), refreshCampaigns);
  }

  // ---- campaign report -----------------------------------------------------------------
  async function pageReport(name) {
    const enc = encodeURIComponent(name);
    const head = h("div", { id: "report-head" });
    const chartsBox = h("div", { class: "charts" });
    const tableBox = h("div", {});
    const q = h("input", { type: "search", placeholder: "number, e.g. +3361", "aria-label": "search number" });
    const status = h("select", { "aria-label": "status" }, h("option", { value: "" }, "any status"),
      ["pending", "in_progress", "answered", "exhausted", "suppressed", "no_consent", "invalid", "refused", "opted_out", "cancelled"].map(s => h("option", { value: s }, s.replace(/_/g, " "))));
    const outcome = h("select", { "aria-label": "outcome" }, h("option", { value: "" }, "any outcome"),
      ["answered", "busy", "no_answer", "rejected", "invalid_number", "failed", "machine", "interrupted"].map(s => h("option", { value: s }, s.replace(/_/g, " "))));
    setPage(`Campaign ${name}`, head,
      h("div", { class: "row" }, h("a", { class: "btn", href: `/console/api/campaigns/${enc}/report.csv`, download: "" }, "Download CSV"),
        h("a", { class: "btn", href: `/console/api/campaigns/${enc}/report.json`, download: "" }, "Download JSON")),
      h("h2", {}, "Charts"), chartsBox,
      h("h2", {}, "Contacts"), h("div", { class: "row card" }, q, status, outcome), tableBox);
    let c = await api(`/campaigns/${enc}`);
    for (let i = 0; c.counting && i < 60; i++) { await new Promise(r => setTimeout(r, 500)); c = await api(`/campaigns/${enc}`); }
    head.replaceChildren(h("div", { class: "row" }, badge(c.status), h("span", {}, `${c.finished.toLocaleString()} / ${c.total.toLocaleString()} contacts done`)),
      Charts.progress(c.finished, c.total),
      h("div", { class: "counts" }, Object.entries(c.statuses).map(([k, v]) => h("span", {}, badge(k), " ", v.toLocaleString()))));
    const loadCharts = async () => {
      chartsBox.replaceChildren(h("p", { class: "muted" }, "counting…"));
      let ch = await api(`/campaigns/${enc}/charts`);
      for (let i = 0; ch.pending && i < 120; i++) { await new Promise(r => setTimeout(r, 1000)); ch = await api(`/campaigns/${enc}/charts`); }
      if (ch.pending) { chartsBox.replaceChildren(h("p", { class: "muted" }, "the charts are still being counted: reload later")); return; }
      const hours = {};
      for (const r of ch.outcomes_over_time) (hours[r.hour] = hours[r.hour] || {})[r.outcome] = r.n;
      const over = Charts.stacked(Object.entries(hours).map(([x, parts]) => ({ x, label: x.slice(11, 13) + "h", parts })), "outcomes over time");
      const chart = (title, svg, legend) => h("div", { class: "card chart" }, h("h3", {}, title), svg, legend || "");
      chartsBox.replaceChildren(
        chart("Outcomes per hour", over.svg, over.legend),
        chart("Answer rate by hour of day (UTC)", Charts.rates(ch.answer_rate_by_hour.map(r => ({ x: `${r.hour_of_day}h`, v: r.calls ? r.answered / r.calls : 0, note: `${r.answered}/${r.calls}` })), "answer rate by hour")),
        chart("Answer rate by modem / SIM", Charts.rates(ch.answer_rate_by_modem.map(r => ({ x: r.modem, v: r.calls ? r.answered / r.calls : 0, note: `${r.iccid || ""} ${r.answered}/${r.calls}` })), "answer rate by modem")),
        ...Object.entries(ch.questions).map(([qn, answers]) => chart(`Question: ${qn}`, Charts.counts(Object.entries(answers).map(([x, n]) => ({ x, n })), qn))));
    };
    let stack = [""];
    const load = async () => {
      const p = new URLSearchParams({ after: stack[stack.length - 1], q: q.value.trim(), status: status.value, outcome: outcome.value, limit: 50 });
      const r = await api(`/campaigns/${enc}/contacts?${p}`);
      const fields = r.rows.length ? Object.keys(r.rows[0].fields).slice(0, 3) : [];
      tableBox.replaceChildren(
        table(["line", "number", ...fields, "status", "attempts", "last outcome", "last call"],
          r.rows.map(x => [x.line_no ?? "", x.number, ...fields.map(f => x.fields[f] ?? ""), badge(x.status), x.attempts, x.last_outcome || "-",
            x.last_call_id ? h("a", { href: `#/call/${x.last_call_id}` }, `#${x.last_call_id}`) : "-"]), true),
        h("div", { class: "pager" },
          h("button", { disabled: stack.length < 2, onclick: () => { stack.pop(); load(); } }, "‹ Previous"),
          h("span", { class: "muted small" }, `page ${stack.length}`),
          h("button", { disabled: !r.next, onclick: () => { stack.push(r.next); load(); } }, "Next ›")));
    };
    const reset = () => { stack = [""]; load(); };
    q.addEventListener("change", reset);
    status.addEventListener("change", reset);
    outcome.addEventListener("change", reset);
    await Promise.all([load(), loadCharts()]);
  }

  // ---- alerts -------------------------------------------------------------------------
  function alertCard(a) {
    const act = async (x) => {
      try { await api(`/alerts/${a.id}/${x}`, { method: "POST" }); toast(`alert #${a.id}: ${x === "ack" ? "acknowledged" : "resolved"}`); refreshAlerts(); }
      catch (e) { toast(e.message); }
    };
    const live = a.status === "open" || a.status === "acknowledged";
    const steps = (a.history || []).map(e => h("li", {}, h("div", { class: "t" }, when(e.at)),
      `${e.via || ""} ${e.who || ""} ${e.number || ""} → `, badge(e.outcome), e.acknowledged ? " (acknowledged)" : "",
      e.call_id ? [" ", h("a", { href: `#/call/${e.call_id}` }, `call #${e.call_id}`)] : null));
    return h("div", { class: "card", "data-alert": a.id },
      h("div", { class: "row" }, h("b", {}, `#${a.id}`), badge(a.status), h("span", { class: "grow" }, a.text),
        a.status === "open" ? h("button", { class: "primary", onclick: () => act("ack"), "data-act": "ack" }, "Acknowledge") : null,
        live ? h("button", { onclick: () => act("resolve"), "data-act": "resolve" }, "Resolve") : null),
      h("div", { class: "small muted" }, `policy ${a.policy} · raised ${when(a.created_at)}`,
        a.acknowledged_by ? ` · acknowledged by ${a.acknowledged_by} ${when(a.acknowledged_at)}` : "",
        a.next_at && a.status === "open" ? ` · next step ${when(a.next_at)}` : ""),
      a.plan && a.plan.steps ? h("div", { class: "plan" }, "escalation: ", a.plan.steps.map((st, i) =>
        `${i + 1}. ${(st.targets || []).map(t => t.who || t.number).join(", ")} by ${st.via || "call"}` +
        (a.position && a.position.step === i && a.status === "open" ? " ◀ now" : "")).join(" → ")) : null,
      steps.length ? h("ul", { class: "timeline" }, steps) : h("p", { class: "small muted" }, "no attempt yet"),
      a.sms && a.sms.length ? h("div", { class: "small" }, "SMS: ", a.sms.map(s => `${s.number} ${s.status}`).join(", ")) : null);
  }
  let refreshAlerts = () => {};
  async function pageAlerts() {
    const which = h("select", { "aria-label": "which alerts" }, h("option", { value: "live" }, "live"), h("option", { value: "all" }, "all (latest 50)"));
    const list = h("div", { id: "alert-list" });
    const choices = await api("/alert-choices");
    const to = h("input", { name: "to", placeholder: "person, group or number", list: "who" });
    const text = h("input", { name: "text", value: "Test alert from the console", required: true });
    const policy = h("select", { name: "policy" }, h("option", { value: "" }, "default policy"), choices.policies.map(p => h("option", { value: p }, p)));
    const form = h("form", { class: "card", id: "test-alert" }, h("h2", {}, "Raise a test alert"),
      h("datalist", { id: "who" }, [...choices.people, ...choices.groups].map(p => h("option", { value: p }))),
      h("div", { class: "row" }, h("div", { class: "field grow" }, h("label", {}, "to"), to),
        h("div", { class: "field grow" }, h("label", {}, "text"), text), h("div", { class: "field" }, h("label", {}, "policy"), policy)),
      h("button", { class: "primary", type: "submit" }, "Raise"));
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      try { const r = await api("/alerts", { method: "POST", json: { to: to.value, text: text.value, policy: policy.value } }); toast(`alert #${r.id} ${r.created ? "raised" : "already live"}`); refreshAlerts(); }
      catch (e) { toast(e.message); }
    });
    setPage("Alerts", h("div", { class: "row" }, h("label", {}, "show "), which), list, form);
    let shown = null;       // (redrawn only on a change, as the campaigns)
    refreshAlerts = async () => {
      const as = await api(`/alerts?status=${which.value}`);
      const seen = which.value + JSON.stringify(as);
      if (seen === shown) return;
      shown = seen;
      list.replaceChildren(...(as.length ? as.map(alertCard) : [h("p", { class: "muted" }, which.value === "live" ? "No live alert." : "No alert yet.")]));
    };
    which.addEventListener("change", () => refreshAlerts());
    await every(refreshMs("alertsMs", 1500), refreshAlerts);
  }

  // ---- call journal -----------------------------------------------------------------------
  async function pageCalls(params) {
    const choices = await api("/call-choices");
    const f = {
      number: h("input", { type: "search", placeholder: "+33612…", "aria-label": "number" }),
      campaign: h("select", { "aria-label": "campaign" }, h("option", { value: "" }, "any campaign"), choices.campaigns.map(c => h("option", { value: c }, c))),
      modem: h("select", { "aria-label": "modem" }, h("option", { value: "" }, "any modem"), choices.modems.map(c => h("option", { value: c }, c))),
      outcome: h("select", { "aria-label": "outcome" }, h("option", { value: "" }, "any outcome"),
        ["in progress", "answered", "busy", "no_answer", "rejected", "invalid_number", "failed", "machine", "interrupted"].map(s => h("option", { value: s }, s.replace(/_/g, " ")))),
      day: h("input", { type: "date", "aria-label": "day" }),
    };
    for (const [k, v] of Object.entries(params)) if (f[k]) f[k].value = v;
    const box = h("div", {});
    setPage("Call journal", h("div", { class: "card row" }, Object.values(f)), box);
    let stack = [""];
    const load = async () => {
      const p = new URLSearchParams({ before: stack[stack.length - 1], limit: 50 });
      for (const [k, v] of Object.entries(f)) if (v.value) p.set(k, v.value.trim());
      const r = await api(`/calls?${p}`);
      box.replaceChildren(table(["call", "when", "number", "modem", "campaign / alert", "outcome", "duration"],
        r.rows.map(c => [h("a", { href: `#/call/${c.id}` }, `#${c.id}`), when(c.created_at), c.number, c.modem,
          c.campaign ? h("a", { href: `#/campaign/${encodeURIComponent(c.campaign)}` }, c.campaign) : (c.alert_id ? `alert #${c.alert_id}` : "-"),
          badge(c.outcome || "in progress"), c.duration_s ? dur(c.duration_s) : "-"]), true),
        h("div", { class: "pager" }, h("button", { disabled: stack.length < 2, onclick: () => { stack.pop(); load(); } }, "‹ Newer"),
          h("span", { class: "muted small" }, `page ${stack.length}`),
          h("button", { disabled: !r.next, onclick: () => { stack.push(r.next); load(); } }, "Older ›")));
    };
    for (const v of Object.values(f)) v.addEventListener("change", () => { stack = [""]; load(); });
    await load();
  }
  async function pageCall(id) {
    const d = await api(`/calls/${id}`);
    const c = d.call;
    const t0 = new Date(c.created_at).getTime();
    const rel = ts => `+${((new Date(ts).getTime() - t0) / 1000).toFixed(1)} s`;
    const describe = e => Object.entries(e.data).filter(([k]) => k !== "path").map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
    setPage(`Call #${c.id}`,
      h("div", { class: "card" }, h("div", { class: "row" }, badge(c.outcome || "in progress"), h("b", {}, c.number), `on ${c.modem}`,
        c.campaign ? [" · campaign ", h("a", { href: `#/campaign/${encodeURIComponent(c.campaign)}` }, c.campaign)] : "", c.alert_id ? ` · alert #${c.alert_id}` : ""),
        h("div", { class: "small muted" }, `${when(c.created_at)} · ${c.duration_s ? "talked " + dur(c.duration_s) : "not connected"}`,
          c.cause_text ? ` · ${c.cause_text}` : "", c.hangup_by ? ` · hung up by ${c.hangup_by}` : "")),
      d.recordings.length ? h("div", { class: "card" }, h("h2", {}, "Recordings"),
        d.recordings.map(r => h("div", { class: "field" }, h("label", {}, `${r.node} (${r.seconds ?? "?"} s)`),
          h("audio", { controls: true, preload: "none", src: r.url, "data-recording": r.index })))) : null,
      d.keys.length || d.answers.length ? h("div", { class: "card" },
        d.keys.length ? h("p", {}, "Keys: ", h("b", { class: "num" }, d.keys.map(k => k.key).join(" "))) : null,
        d.answers.length ? table(["question", "answer", "at"], d.answers.map(a => [a.name, /\.wav$/.test(a.value || "") ? "(the recording above)" : (a.value ?? ""), rel(a.at)])) : null) : null,
      h("div", { class: "card" }, h("h2", {}, "Timeline"),
        h("ul", { class: "timeline" }, d.events.map(e => h("li", {}, h("span", { class: "t" }, rel(e.at)), " ", h("b", {}, e.kind), " ", h("span", { class: "small" }, describe(e)))))));
  }

  // ---- suppression and consent --------------------------------------------------------------
  async function pageSuppression() {
    const q = h("input", { type: "search", placeholder: "+3361…", "aria-label": "search number" });
    const box = h("div", {}), cbox = h("div", {}), importOut = h("div", {});
    const addNum = h("input", { placeholder: "number to suppress", "aria-label": "number to suppress" });
    const addForm = h("form", { class: "row", id: "suppress-add" }, addNum, h("button", { class: "primary", type: "submit" }, "Add"));
    const file = h("input", { type: "file", name: "file", accept: ".csv,.txt", "aria-label": "suppression list file" });
    const impForm = h("form", { class: "row" }, file, h("button", { type: "submit" }, "Import"));
    const cNum = h("input", { placeholder: "number", "aria-label": "consent number" });
    const cScope = h("select", { "aria-label": "consent scope" });
    const cSource = h("input", { placeholder: "source (e.g. web form)", "aria-label": "consent source" });
    const cNote = h("input", { placeholder: "note / proof reference", "aria-label": "consent note" });
    const cForm = h("form", { class: "row", id: "consent-add" }, cNum, cScope, cSource, cNote, h("button", { class: "primary", type: "submit" }, "Add consent"));
    const cFile = h("input", { type: "file", name: "file", accept: ".csv,.txt", "aria-label": "consent CSV file" });
    const cImpForm = h("form", { class: "row", id: "consent-import" }, cFile, h("button", { type: "submit" }, "Import CSV"));
    const cImportOut = h("div", {});
    setPage("Suppression and consent",
      h("div", { class: "card" }, h("div", { class: "row" }, q, h("a", { class: "btn", href: "/console/api/suppression/export.csv", download: "" }, "Export suppression"),
        h("a", { class: "btn", href: "/console/api/consent/export.csv", download: "" }, "Export consent"))),
      h("div", { class: "card" }, h("h2", {}, "Add"), addForm, h("h2", {}, "Import a list (CSV with a number column, or one number a line)"), impForm, importOut),
      h("div", { class: "card" }, h("h2", {}, "Add consent"), cForm,
        h("h2", {}, "Import consent (CSV: number, scope, source, given_at; as consent import reads it)"), cImpForm, cImportOut),
      h("h2", {}, "Suppressed numbers"), box, h("h2", {}, "Consent records"), cbox);
    let stack = [""];
    const load = async () => {
      const p = new URLSearchParams({ q: q.value.trim(), after: stack[stack.length - 1] });
      const r = await api(`/suppression?${p}`);
      box.replaceChildren(h("p", { class: "small muted" }, `${r.total.toLocaleString()} number(s) on the list`),
        table(["number", "reason", "source", "added", ""], r.rows.map(x => [x.number, x.reason, x.source, when(x.added_at),
          h("button", { class: "danger", onclick: async () => { if (!confirm(`Take ${x.number} off the list?`)) return; await api("/suppression/remove", { method: "POST", json: { number: x.number } }); toast(`${x.number} removed`); load(); } }, "Remove")]), true),
        h("div", { class: "pager" }, h("button", { disabled: stack.length < 2, onclick: () => { stack.pop(); load(); } }, "‹ Previous"),
          h("button", { disabled: r.rows.length < 50, onclick: () => { stack.push(r.next); load(); } }, "Next ›")));
      const cr = await api(`/consent?q=${encodeURIComponent(q.value.trim())}`);
      if (!cScope.options.length) cScope.replaceChildren(...cr.scopes.map(s => h("option", { value: s }, s.replace(/_/g, " "))));
      cbox.replaceChildren(cr.rows.length ? table(["number", "scope", "source", "given", "revoked", ""], cr.rows.map(x => [x.number, x.scope, x.source, when(x.given_at),
        x.revoked_at ? `${when(x.revoked_at)} (${x.revoked_via})` : "-",
        x.revoked_at ? "" : h("button", { class: "danger", onclick: async () => { await api("/consent/revoke", { method: "POST", json: { number: x.number, scope: x.scope } }); toast("revoked"); load(); } }, "Revoke")]), true)
        : h("p", { class: "muted" }, "No consent record."));
    };
    addForm.addEventListener("submit", async ev => {
      ev.preventDefault();
      try { const r = await api("/suppression", { method: "POST", json: { number: addNum.value } }); toast(`${r.number} ${r.added ? "added" : "already on the list"}`); addNum.value = ""; load(); }
      catch (e) { toast(e.message); }
    });
    impForm.addEventListener("submit", async ev => {
      ev.preventDefault();
      try { const r = await api("/suppression/import", { method: "POST", form: new FormData(impForm) });
        importOut.replaceChildren(h("div", { class: "ok-msg" }, `${r.added} added of ${r.read} read, ${r.bad} bad line(s)`), r.errors.length ? errorBox(r.errors) : ""); load(); }
      catch (e) { importOut.replaceChildren(errorBox([e.message])); }
    });
    cForm.addEventListener("submit", async ev => {
      ev.preventDefault();
      try { const r = await api("/consent", { method: "POST", json: { number: cNum.value, scope: cScope.value, source: cSource.value, note: cNote.value } });
        toast(`consent added: ${r.number} (${r.scope})`); cNum.value = ""; cNote.value = ""; load(); }
      catch (e) { toast(e.message); }
    });
    cImpForm.addEventListener("submit", async ev => {
      ev.preventDefault();
      try { const r = await api("/consent/import", { method: "POST", form: new FormData(cImpForm) });
        cImportOut.replaceChildren(h("div", { class: "ok-msg" }, r.summary), r.errors.length ? errorBox(r.errors) : ""); load(); }
      catch (e) { cImportOut.replaceChildren(errorBox([e.message])); }
    });
    q.addEventListener("change", () => { stack = [""]; load(); });
    await load();
  }

  // ---- flows ---------------------------------------------------------------------------------
  async function pageFlows() {
    setPage("Flows", h("p", { class: "muted" }, "checking…"));
    const fl = await api("/flows");
    main.replaceChildren(h("h1", {}, "Flows"), ...(fl.length ? fl.map(f => h("div", { class: "card" },
      h("div", { class: "row" }, h("b", {}, f.file), badge(f.ok ? "ok" : "failed"), h("span", { class: "small muted" }, f.used_by.join(" · "))),
      h("pre", { class: f.ok ? "ok-msg" : "errors" }, f.check),
      f.graph ? h("div", { class: "flowsvg" }, Charts.flow(f.graph)) : null)) : [h("p", { class: "muted" }, "No campaign runs a flow yet, and no modem answers incoming calls with one.")]));
  }

  // ---- router --------------------------------------------------------------------------------
  const routes = [
    [/^#\/?(bank)?$/, () => pageBank(), "bank"],
    [/^#\/campaigns$/, () => pageCampaigns(), "campaigns"],
    [/^#\/campaign\/(.+)$/, m => pageReport(decodeURIComponent(m[1])), "campaigns"],
    [/^#\/alerts$/, () => pageAlerts(), "alerts"],
    [/^#\/calls(?:\?(.*))?$/, m => pageCalls(Object.fromEntries(new URLSearchParams(m[1] || ""))), "calls"],
    [/^#\/call\/(\d+)$/, m => pageCall(m[1]), "calls"],
    [/^#\/suppression$/, () => pageSuppression(), "suppression"],
    [/^#\/flows$/, () => pageFlows(), "flows"],
  ];
  async function route() {
    cleanup.forEach(f => f());
    cleanup = [];
    token++;
    const hash = location.hash || "#/bank";
    for (const [re, fn, nav] of routes) {
      const m = hash.match(re);
      if (!m) continue;
      document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("on", a.dataset.page === nav));
      try { await fn(m); } catch (e) { main.replaceChildren(h("h1", {}, "Error"), errorBox([e.message])); }
      main.dataset.ready = hash;
      return;
    }
    main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/bank" }, "back to the bank")));
  }
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", headers: { "X-CSRF-Token": decodeURIComponent(csrf()) } });
    location.href = "/console/login";
  });
  window.addEventListener("hashchange", route);
  route();
})();
