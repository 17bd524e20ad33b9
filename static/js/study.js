// A study's page: each trial a point of its first two objectives (a third, if any, as the point's size), the front
// drawn as a line, the trials' table; live over /ws/studies/<id>/, where each message carries the trials that
// changed and the page puts them in place by number (a reconnect's snapshot replaces everything).
(function () {
  "use strict";
  const el = (id) => document.getElementById(id);
  const initial = JSON.parse(el("study-data").textContent);
  const study = { ...initial, trials: new Map(initial.trials.map((t) => [t.number, t])) };
  const objectives = study.objectives;
  const FINAL = ["finished", "failed", "cancelled"];
  const LABELS = { test_accuracy: "test accuracy", val_accuracy: "validation accuracy", fraction: "share kept Q",
    bytes_per_sample: "bytes per sample", seconds: "seconds" };
  const state = { draws: 0, live: 0, points: [] };
  window.maskselStudy = state;

  const fmt = (v) => (v === null || v === undefined ? "" : Math.abs(v) >= 100 ? v.toFixed(0) :
    Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3));
  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const arrow = (o) => (o.direction === "maximize" ? "↑" : "↓");

  function range(values) {
    if (!values.length) return [0, 1];
    let low = Math.min(...values), high = Math.max(...values);
    if (low === high) { low -= 0.5 * Math.abs(low || 1); high += 0.5 * Math.abs(high || 1); }
    const pad = (high - low) * 0.06;
    return [low - pad, high + pad];
  }

  function drawScatter() {
    const canvas = el("study-scatter");
    const width = Math.max(canvas.parentElement.clientWidth - 40, 240);
    if (canvas.width !== width) canvas.width = width;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const trials = [...study.trials.values()].filter((t) => t.state === "complete" && t.values);
    const [xo, yo] = [objectives[1], objectives[0]];
    const xs = trials.map((t) => t.values[1]), ys = trials.map((t) => t.values[0]);
    const [x0, x1] = range(xs), [y0, y1] = range(ys);
    const left = 56, bottom = 40, top = 16, right = 16;
    const w = canvas.width - left - right, h = canvas.height - top - bottom;
    const px = (v) => left + (v - x0) / (x1 - x0) * w, py = (v) => top + h - (v - y0) / (y1 - y0) * h;
    ctx.strokeStyle = "#9ca3af"; ctx.fillStyle = "#374151"; ctx.font = "12px sans-serif";
    ctx.strokeRect(left, top, w, h);
    for (let i = 0; i <= 4; i++) {
      const xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
      ctx.fillText(fmt(xv), px(xv) - 12, top + h + 16);
      ctx.fillText(fmt(yv), 4, py(yv) + 4);
    }
    ctx.fillText(`${LABELS[xo.metric]} ${arrow(xo)}`, left + w / 2 - 50, canvas.height - 6);
    el("scatter-title").textContent = `Trials: ${LABELS[yo.metric]} ${arrow(yo)} against ${LABELS[xo.metric]} ` +
      `${arrow(xo)}` + (objectives[2] ? `; size: ${LABELS[objectives[2].metric]} ${arrow(objectives[2])}` : "");
    const onFront = new Set(study.pareto);
    // The front as a staircase through its points, in the order of the x objective.
    const front = trials.filter((t) => onFront.has(t.run)).sort((a, b) => a.values[1] - b.values[1]);
    ctx.strokeStyle = "#ea580c"; ctx.lineWidth = 2; ctx.beginPath();
    front.forEach((t, k) => (k ? ctx.lineTo(px(t.values[1]), py(t.values[0])) :
      ctx.moveTo(px(t.values[1]), py(t.values[0]))));
    ctx.stroke(); ctx.lineWidth = 1;
    const sizes = objectives[2] ? range(trials.map((t) => t.values[2])) : null;
    state.points = trials.map((t) => {
      const share = sizes ? (t.values[2] - sizes[0]) / (sizes[1] - sizes[0]) : 0.5;
      const radius = 3 + 5 * (objectives[2] && objectives[2].direction === "minimize" ? 1 - share : share);
      const point = { x: px(t.values[1]), y: py(t.values[0]), r: radius, run: t.run, front: onFront.has(t.run) };
      ctx.fillStyle = point.front ? "#ea580c" : "#2563eb"; ctx.globalAlpha = point.front ? 1 : 0.55;
      ctx.beginPath(); ctx.arc(point.x, point.y, radius, 0, 2 * Math.PI); ctx.fill();
      return point;
    });
    ctx.globalAlpha = 1;
    state.draws += 1;
    state.drawnAt = performance.now();
  }

  function drawTable() {
    const names = [...new Set([...study.trials.values()].flatMap((t) => Object.keys(t.params)))].sort();
    el("trials-table").tHead.innerHTML = "<tr><th>Trial</th><th>Run</th><th>State</th>" +
      names.map((n) => `<th>${esc(n)}</th>`).join("") +
      objectives.map((o) => `<th>${LABELS[o.metric]} ${arrow(o)}</th>`).join("") + "<th>Front</th></tr>";
    const onFront = new Set(study.pareto);
    const body = el("trials-table").tBodies[0];
    body.replaceChildren(...[...study.trials.values()].sort((a, b) => a.number - b.number).map((t) => {
      const row = document.createElement("tr");
      row.dataset.trial = t.number;
      const cells = [t.number, t.run ? `<a href="/runs/${t.run}/">#${t.run}</a>` : "",
        `<span class="status status-${t.state === "complete" ? "succeeded" : t.state}" title="${esc(t.error || "")}">` +
        `${esc(t.state)}</span>`,
        ...names.map((n) => (n in t.params ? (typeof t.params[n] === "number" ? fmt(t.params[n]) :
          esc(JSON.stringify(t.params[n]))) : "")),
        ...objectives.map((_, i) => (t.values ? fmt(t.values[i]) : "")), onFront.has(t.run) ? "●" : ""];
      row.innerHTML = cells.map((c) => `<td>${c}</td>`).join("");
      if (onFront.has(t.run)) row.classList.add("on-front");
      return row;
    }));
  }

  function drawFacts() {
    const status = el("study-status");
    status.textContent = study.status; status.className = `status status-${study.status}`;
    el("study-progress").textContent = `${study.trials.size}/${study.n_trials}`;
    el("front-size").textContent = study.pareto.length;
    el("study-error").hidden = !study.error; el("study-error").textContent = study.error || "";
    const compare = el("compare-front");
    compare.hidden = !study.pareto.length;
    compare.href = `/compare/?runs=${study.pareto.join(",")}`;
    el("cancel-study").hidden = study.status !== "running";
  }

  function redraw() {
    const start = performance.now();
    drawFacts(); drawScatter(); drawTable();
    state.drawMs = performance.now() - start;  // the last redraw's own time (benchmarks read it)
  }

  el("study-scatter").addEventListener("click", (event) => {
    const box = event.target.getBoundingClientRect();
    const x = event.clientX - box.left, y = event.clientY - box.top;
    const hit = state.points.find((p) => (p.x - x) ** 2 + (p.y - y) ** 2 <= (p.r + 4) ** 2);
    if (hit && hit.run) window.location.href = `/runs/${hit.run}/`;
  });
  el("cancel-study").addEventListener("click", async () => {
    const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
    const reply = await fetch(`/api/studies/${study.id}/cancel/`, { method: "POST", headers: { "X-CSRFToken": token } });
    const body = await reply.json().catch(() => ({}));
    el("study-message").textContent = reply.ok ? "cancelled" : body.error || `HTTP ${reply.status}`;
    if (reply.ok) { study.status = body.status; drawFacts(); }
  });
  window.addEventListener("resize", drawScatter);

  function apply(message) {
    if (message.type === "snapshot") {
      Object.assign(study, message.study, { trials: new Map(message.study.trials.map((t) => [t.number, t])) });
    } else if (message.type === "study") {
      for (const t of message.trials) study.trials.set(t.number, t);
      Object.assign(study, { status: message.status, error: message.error, pareto: message.pareto });
      state.live += 1;
    } else {
      return;
    }
    redraw();
  }

  let attempts = 0;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/studies/${study.id}/`);
    socket.onopen = () => { el("live").classList.add("on"); attempts = 0; };
    socket.onmessage = (event) => apply(JSON.parse(event.data));
    socket.onclose = () => {
      el("live").classList.remove("on");
      if (FINAL.includes(study.status)) return;
      attempts += 1;
      setTimeout(connect, Math.min(10000, 500 * 2 ** Math.min(attempts, 5)));
    };
  }
  redraw();
  connect();
})();
