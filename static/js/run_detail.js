// Live run page: the snapshot on connect, then one message per epoch, pushed by the server.
// Epoch numbers make the stream idempotent: an epoch already drawn is ignored, so a reconnect
// (which sends a fresh snapshot) never duplicates points. If the socket cannot connect at all,
// the page falls back to polling the REST API.
(function () {
  "use strict";
  const root = document.getElementById("run");
  const runId = root.dataset.runId;
  const FINAL = ["succeeded", "failed", "cancelled"];
  const state = { epochs: [], acc: [], frac: [], status: null, live: 0, snapshots: 0, lastMask: null };
  window.maskselRun = state;  // read by tests and handy in the console

  const el = (id) => document.getElementById(id);
  const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(4));

  const chartEl = el("chart");
  const chart = new uPlot({
    width: Math.max(chartEl.clientWidth, 320), height: 280,
    scales: { x: { time: false }, y: { range: [0, 1] } },
    // Epochs are whole numbers: ticks at 1, 2, 5, 10, ... never at 2.5.
    axes: [{ label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] }, { label: "share" }],
    series: [
      { label: "epoch" },
      { label: "val accuracy", stroke: "#2563eb", width: 2, points: { show: true } },
      { label: "fraction", stroke: "#ea580c", width: 2, points: { show: true } },
    ],
  }, [[], [], []], chartEl);
  window.addEventListener("resize", () => chart.setSize({ width: Math.max(chartEl.clientWidth, 320), height: 280 }));

  function redraw() {
    chart.setData([state.epochs.slice(), state.acc.slice(), state.frac.slice()]);
    chartEl.dataset.points = String(state.epochs.length);
  }

  function addEpoch(msg, live) {
    const last = state.epochs.length ? state.epochs[state.epochs.length - 1] : 0;
    if (msg.epoch <= last) return false;
    state.epochs.push(msg.epoch);
    state.acc.push(msg.metrics.val_accuracy);
    state.frac.push(msg.metrics.fraction);
    if (live) state.live += 1;
    el("run-epoch").textContent = msg.epoch;
    el("run-accuracy").textContent = fmt(msg.metrics.val_accuracy);
    el("run-fraction").textContent = fmt(msg.metrics.fraction);
    if (msg.mask) { state.lastMask = msg.mask; drawMask(msg.mask, msg.epoch); }
    return true;
  }

  function setStatus(status, error) {
    state.status = status;
    const badge = el("run-status");
    badge.textContent = status;
    badge.className = "status status-" + status;
    if (error) { const e = el("run-error"); e.textContent = error; e.hidden = false; }
    el("downloads").classList.toggle("pending", !FINAL.includes(status));
  }

  // A run whose worker stopped renewing its lease: say so until a worker takes it back.
  function showWorkerLost(run) {
    const warning = el("run-warning");
    warning.hidden = !run.worker_lost;
    if (run.worker_lost) {
      warning.textContent = `No heartbeat from worker ${run.worker} since ${run.heartbeat_at}: ` +
        "the run will be requeued and resume from its last epoch when a worker is up.";
    }
  }

  function unpackBits(b64, count) {
    const raw = atob(b64);
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) out[i] = (raw.charCodeAt(i >> 3) >> (7 - (i & 7))) & 1;
    return out;
  }

  // Channel masks as a strip of cells, pixel masks as one heatmap per channel.
  function drawMask(mask, epoch) {
    el("mask-epoch").textContent = epoch;
    const view = el("mask-view");
    const shape = mask.shape;
    const count = shape.reduce((a, b) => a * b, 1);
    const bits = unpackBits(mask.bits, count);
    view.textContent = "";
    const [C, H, W] = shape.length === 3 ? shape : [shape[0], 1, 1];
    const cell = Math.max(4, Math.min(24, Math.floor(240 / Math.max(H, W))));
    for (let c = 0; c < C; c++) {
      const canvas = document.createElement("canvas");
      canvas.width = W * cell; canvas.height = H * cell;
      canvas.title = "channel " + c;
      const ctx = canvas.getContext("2d");
      for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
        ctx.fillStyle = bits[(c * H + h) * W + w] ? "#16a34a" : "#e5e7eb";
        ctx.fillRect(w * cell, h * cell, cell - 1, cell - 1);
      }
      view.appendChild(canvas);
    }
  }

  function onMessage(msg) {
    if (msg.type === "snapshot") {
      state.snapshots += 1;
      let added = false;
      for (const e of msg.epochs) added = addEpoch(e, false) || added;
      if (added) redraw();
      setStatus(msg.run.status, msg.run.error);
      if (msg.run.device) el("run-device").textContent = msg.run.device;
      showWorkerLost(msg.run);
    } else if (msg.type === "epoch") {
      if (addEpoch(msg, true)) redraw();
    } else if (msg.type === "status") {
      setStatus(msg.status, msg.error);
    }
  }

  let attempts = 0;
  let polling = null;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/runs/${runId}/`);
    let opened = false;
    socket.onopen = () => { opened = true; attempts = 0; el("live").classList.add("on"); stopPolling(); };
    socket.onmessage = (event) => onMessage(JSON.parse(event.data));
    socket.onclose = (event) => {
      el("live").classList.remove("on");
      if (event.code === 4401 || event.code === 4404) return;
      if (FINAL.includes(state.status) && opened) return;
      attempts += 1;
      if (!opened && attempts >= 3) startPolling();
      setTimeout(connect, Math.min(10000, 500 * 2 ** Math.min(attempts, 5)));
    };
  }

  async function poll() {
    try {
      const [run, metrics] = await Promise.all([
        fetch(`/api/runs/${runId}/`).then((r) => r.json()),
        fetch(`/api/runs/${runId}/metrics/`).then((r) => r.json()),
      ]);
      let added = false;
      for (const m of metrics) added = addEpoch({ epoch: m.epoch, metrics: m }, false) || added;
      if (added) redraw();
      setStatus(run.status, run.error);
      showWorkerLost(run);
      if (FINAL.includes(run.status)) stopPolling();
    } catch (err) { /* keep trying */ }
  }
  function startPolling() { if (!polling) { polling = setInterval(poll, 3000); poll(); } }
  function stopPolling() { if (polling) { clearInterval(polling); polling = null; } }

  connect();
})();
