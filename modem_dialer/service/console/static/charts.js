// Small inline-SVG charts for the console (no library): stacked bars, plain bars, and a flow graph.
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = { answered: "#1a7f37", busy: "#b35900", no_answer: "#9aa4b2", rejected: "#d97706",
    invalid_number: "#7c3aed", failed: "#c62828", machine: "#0e7490", interrupted: "#6b7280", "in progress": "#1f6feb" };
  const EXTRA = ["#1f6feb", "#db2777", "#0891b2", "#65a30d", "#ea580c", "#4f46e5", "#be123c", "#0d9488"];
  const color = (k, i) => PALETTE[k] || EXTRA[i % EXTRA.length];

  function el(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(w, h, label) {
    return el("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label });
  }
  function empty(label) {
    const s = svg(340, 60, label);
    s.appendChild(el("text", { x: 170, y: 35, "text-anchor": "middle", fill: "#667085", "font-size": 13 }, "no calls yet"));
    return s;
  }
  function legend(keys) {
    const d = document.createElement("div");
    d.className = "legend";
    keys.forEach((k, i) => {
      const s = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = color(k, i);
      s.append(sw, k.replace(/_/g, " "));
      d.appendChild(s);
    });
    return d;
  }

  // stacked bars: rows = [{x, parts: {key: n}}]
  function stacked(rows, label) {
    if (!rows.length) return { svg: empty(label), legend: legend([]) };
    const keys = [...new Set(rows.flatMap(r => Object.keys(r.parts)))];
    const W = 360, H = 190, L = 34, B = 34, T = 8;
    const max = Math.max(1, ...rows.map(r => Object.values(r.parts).reduce((a, b) => a + b, 0)));
    const s = svg(W, H, label);
    const bw = Math.min(48, (W - L - 6) / rows.length);
    axis(s, W, H, L, B, T, max);
    rows.forEach((r, i) => {
      let y = H - B;
      keys.forEach((k, ki) => {
        const n = r.parts[k] || 0;
        if (!n) return;
        const h = (H - B - T) * n / max;
        y -= h;
        const rect = el("rect", { x: L + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, fill: color(k, ki) });
        rect.appendChild(el("title", {}, `${r.x}: ${k} ${n}`));
        s.appendChild(rect);
      });
      if (rows.length <= 12 || i % Math.ceil(rows.length / 12) === 0)
        s.appendChild(el("text", { x: L + i * bw + bw / 2, y: H - B + 13, "text-anchor": "middle", "font-size": 9, fill: "#667085" }, r.label || r.x));
    });
    return { svg: s, legend: legend(keys) };
  }

  // plain bars with a value in 0..1 (rates): rows = [{x, v, note}]
  function rates(rows, label) {
    if (!rows.length) return empty(label);
    const W = 360, H = 190, L = 34, B = 40, T = 8;
    const s = svg(W, H, label);
    axis(s, W, H, L, B, T, 1, v => Math.round(v * 100) + "%");
    const bw = Math.min(48, (W - L - 6) / rows.length);
    rows.forEach((r, i) => {
      const h = (H - B - T) * r.v;
      const rect = el("rect", { x: L + i * bw + 2, y: H - B - h, width: Math.max(1, bw - 4), height: h, fill: "#1f6feb" });
      rect.appendChild(el("title", {}, `${r.x}: ${Math.round(r.v * 100)}% ${r.note || ""}`));
      s.appendChild(rect);
      if (rows.length <= 12 || i % Math.ceil(rows.length / 12) === 0)
        s.appendChild(el("text", { x: L + i * bw + bw / 2, y: H - B + 13, "text-anchor": "middle", "font-size": 9, fill: "#667085" }, String(r.x).slice(0, 10)));
    });
    return s;
  }

  // horizontal bars with counts: rows = [{x, n}]
  function counts(rows, label) {
    if (!rows.length) return empty(label);
    const W = 360, rowH = 22, L = 110, H = rows.length * rowH + 8;
    const max = Math.max(1, ...rows.map(r => r.n));
    const s = svg(W, H, label);
    rows.forEach((r, i) => {
      const y = 4 + i * rowH;
      const w = (W - L - 40) * r.n / max;
      s.appendChild(el("text", { x: L - 6, y: y + 14, "text-anchor": "end", "font-size": 11, fill: "#1d2430" }, String(r.x).slice(0, 18) || "(empty)"));
      s.appendChild(el("rect", { x: L, y: y + 3, width: Math.max(1, w), height: rowH - 8, fill: color(r.x, i), rx: 2 }));
      s.appendChild(el("text", { x: L + w + 4, y: y + 14, "font-size": 11, fill: "#667085" }, String(r.n)));
    });
    return s;
  }

  function axis(s, W, H, L, B, T, max, fmt) {
    fmt = fmt || (v => String(Math.round(v)));
    for (const f of [0, 0.5, 1]) {
      const y = H - B - (H - B - T) * f;
      s.appendChild(el("line", { x1: L, x2: W - 4, y1: y, y2: y, stroke: "#e5e7eb" }));
      s.appendChild(el("text", { x: L - 4, y: y + 3, "text-anchor": "end", "font-size": 9, fill: "#667085" }, fmt(max * f)));
    }
  }

  function progress(done, total) {
    const s = el("svg", { class: "progress", viewBox: "0 0 100 6", preserveAspectRatio: "none", role: "img",
      "aria-label": `${done} of ${total} contacts done` });
    s.appendChild(el("rect", { x: 0, y: 0, width: 100, height: 6, fill: "#e5e7eb" }));
    s.appendChild(el("rect", { x: 0, y: 0, width: total ? 100 * done / total : 0, height: 6, fill: "#1a7f37", class: "bar" }));
    return s;
  }

  // a flow as layers (longest path from the start, loops drawn back); one edge per target,
  // labelled with the keys or exits that lead there
  function exitLabel(k) {
    if (k.startsWith("choices.")) return k.slice(8);
    if (k.startsWith("cases.")) return k.slice(6);
    return { next: "", on_fail: "fail", on_invalid: "invalid", on_no_input: "no input", default: "else", fallback: "fallback" }[k] ?? k.replace(/_/g, " ");
  }
  function flow(graph) {
    const byName = Object.fromEntries(graph.nodes.map(n => [n.name, n]));
    const edges = [];
    for (const n of graph.nodes) {
      const grouped = {};
      for (const [k, t] of Object.entries(n.exits)) if (t && byName[t]) (grouped[t] = grouped[t] || []).push(exitLabel(k));
      for (const [t, labels] of Object.entries(grouped)) edges.push({ from: n.name, to: t, label: labels.filter(Boolean).join(" ") });
    }
    // depth-first from the start: edges back to a node on the current path are loops
    const state = {}, post = [];
    const visit = (n) => {
      state[n] = 1;
      for (const e of edges) if (e.from === n) {
        if (state[e.to] === 1) e.back = true;
        else if (!state[e.to]) visit(e.to);
      }
      state[n] = 2;
      post.push(n);
    };
    visit(graph.start);
    for (const n of graph.nodes) if (!state[n.name]) visit(n.name);
    const layer = {};
    for (const n of post.slice().reverse()) {
      layer[n] = layer[n] || 0;
      for (const e of edges) if (e.from === n && !e.back) layer[e.to] = Math.max(layer[e.to] || 0, layer[n] + 1);
    }
    const cols = {};
    for (const n of post.slice().reverse()) (cols[layer[n]] = cols[layer[n]] || []).push(n);
    const NW = 130, NH = 40, GX = 80, GY = 34;
    const depth = Object.keys(cols).length, width = Math.max(...Object.values(cols).map(c => c.length));
    const W = depth * (NW + GX) + 20, H = width * (NH + GY) + 50;
    const pos = {};
    for (const [l, names] of Object.entries(cols)) names.forEach((n, i) => { pos[n] = { x: 10 + l * (NW + GX), y: 10 + i * (NH + GY) }; });
    const s = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "flow graph" });
    const defs = el("defs");
    const m = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    m.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#667085" }));
    defs.appendChild(m);
    s.appendChild(defs);
    for (const e of edges) {
      const a = pos[e.from], b = pos[e.to];
      let d, lx, ly;
      if (e.back || b.x <= a.x) {
        const y = Math.max(a.y, b.y) + NH + 22;
        d = `M${a.x + NW / 2},${a.y + NH} C${a.x + NW / 2},${y} ${b.x + NW / 2},${y} ${b.x + NW / 2},${b.y + NH}`;
        lx = (a.x + b.x + NW) / 2; ly = y - 2;
      } else {
        const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
        d = `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
        lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 5;
      }
      s.appendChild(el("path", { d, fill: "none", stroke: "#98a2b3", "stroke-width": 1.4, "marker-end": "url(#arrow)" }));
      if (e.label) {
        const t = el("text", { x: lx, y: ly, "text-anchor": "middle", "font-size": 10, fill: "#b35900", "paint-order": "stroke", stroke: "#fff", "stroke-width": 3 }, e.label);
        s.appendChild(t);
      }
    }
    for (const node of graph.nodes) {
      const p = pos[node.name];
      const g = el("g");
      g.appendChild(el("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 8, fill: node.name === graph.start ? "#e8f0fe" : "#fff",
        stroke: node.name === graph.start ? "#1f6feb" : "#98a2b3" }));
      g.appendChild(el("text", { x: p.x + NW / 2, y: p.y + 17, "text-anchor": "middle", "font-size": 12, "font-weight": 600, fill: "#1d2430" }, node.name.slice(0, 18)));
      g.appendChild(el("text", { x: p.x + NW / 2, y: p.y + 31, "text-anchor": "middle", "font-size": 10, fill: "#667085" }, node.kind));
      s.appendChild(g);
    }
    return s;
  }

  return { stacked, rates, counts, progress, flow, color };
})();
