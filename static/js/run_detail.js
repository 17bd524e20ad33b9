// Live run page: the snapshot on connect, then one message per epoch, pushed by the server.
// Epoch numbers make the stream idempotent: an epoch already drawn is ignored, so a reconnect
// (which sends a fresh snapshot) never duplicates points. If the socket cannot connect at all,
// the page falls back to polling the REST API. One epoch slider drives the mask panel and the
// charts' cursor, exact to the epoch: every epoch's mask is kept (compact packed bits).
(function () {
  "use strict";
  const root = document.getElementById("run");
  const runId = root.dataset.runId;
  const FINAL = ["succeeded", "failed", "cancelled", "deleted"];
  const masks = window.maskselMaskView;
  const PALETTE = masks.PALETTE;
  const state = {
    epochs: [], acc: [], frac: [], taskLoss: [], lambda: [], tau: [], phases: [], masks: {},
    status: null, live: 0, snapshots: 0, selectedEpoch: null, followLatest: true,
  };
  window.maskselRun = state;  // read by tests and handy in the console

  const el = (id) => document.getElementById(id);
  const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(4));
  // What the run is doing, in words (jobs/templatetags/run_display.py says the same on the server).
  const PHASE_TEXT = { warmup: "warm-up", select: "selection", finalize: "finalize", final: "done" };
  const EPOCH_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];  // whole epochs only

  // Phases as shaded bands behind every chart: warm-up, selection, finalize (the closing "final" row
  // belongs to finalize's band).
  const PHASE_FILL = { warmup: "rgba(100, 116, 139, 0.14)", select: "rgba(37, 99, 235, 0.05)",
                       finalize: "rgba(22, 163, 74, 0.14)", final: "rgba(22, 163, 74, 0.14)" };
  function phaseBands(u) {
    const { ctx, bbox } = u;
    let start = 0;
    for (let i = 1; i <= state.epochs.length; i++) {
      const phase = state.phases[start];
      if (i < state.epochs.length && state.phases[i] === phase) continue;
      const half = 0.5;
      const left = u.valToPos(state.epochs[start] - half, "x", true);
      const right = u.valToPos(state.epochs[i - 1] + half, "x", true);
      const from = Math.max(left, bbox.left);
      const width = Math.min(right, bbox.left + bbox.width) - from;
      if (width > 0) {  // a band outside the visible range (zoomed in) is not drawn
        ctx.fillStyle = PHASE_FILL[phase] || "transparent";
        ctx.fillRect(from, bbox.top, width, bbox.height);
      }
      start = i;
    }
  }

  function makeChart(element, series, yScale, yLabel) {
    const width = () => Math.max(element.clientWidth, 240);
    const chart = new uPlot({
      width: width(), height: 220,
      hooks: { drawClear: [phaseBands] },
      cursor: { sync: { key: `run-${runId}` }, y: false },  // no horizontal line: it read as a threshold
      scales: { x: { time: false }, y: yScale },
      axes: [{ label: "epoch", incrs: EPOCH_TICKS }, { label: yLabel }],
      series: [{ label: "epoch" }, ...series],
    }, [[], ...series.map(() => [])], element);
    window.addEventListener("resize", () => chart.setSize({ width: width(), height: 220 }));
    return chart;
  }

  const charts = {
    share: makeChart(el("chart"), [
      { label: "val accuracy", stroke: PALETTE[0], width: 2, points: { show: true } },
      { label: "fraction (Q)", stroke: PALETTE[1], width: 2, points: { show: true } },
    ], { range: [0, 1] }, "share"),
    loss: makeChart(el("chart-loss"), [{ label: "task loss", stroke: PALETTE[3], width: 2 }], {}, "loss"),
    schedule: makeChart(el("chart-schedule"), [
      { label: "lambda", stroke: PALETTE[4], width: 2 },
      { label: "tau", stroke: PALETTE[5], width: 2 },
    ], { distr: 3 }, "value (log)"),
  };

  function redraw() {
    const x = state.epochs.slice();
    charts.share.setData([x, state.acc.slice(), state.frac.slice()]);
    charts.loss.setData([x, state.taskLoss.slice()]);
    charts.schedule.setData([x, state.lambda.slice(), state.tau.slice()]);
    el("chart").dataset.points = String(state.epochs.length);
    const slider = el("epoch-slider");
    slider.max = String(Math.max(state.epochs.length, 1));
    slider.disabled = state.epochs.length === 0;
    if (state.followLatest && state.epochs.length) selectEpoch(state.epochs[state.epochs.length - 1]);
  }

  function addEpoch(msg, live) {
    const last = state.epochs.length ? state.epochs[state.epochs.length - 1] : 0;
    if (msg.epoch <= last) return false;
    const m = msg.metrics;
    state.epochs.push(msg.epoch);
    state.acc.push(m.val_accuracy);
    state.frac.push(m.fraction);
    state.taskLoss.push(m.task_loss);
    state.lambda.push(m.lambda);
    state.tau.push(m.tau);
    state.phases.push(m.phase || msg.phase || "select");
    if (msg.mask) state.masks[msg.epoch] = msg.mask;
    if (live) state.live += 1;
    el("run-epoch").textContent = msg.epoch;
    el("run-accuracy").textContent = fmt(m.val_accuracy);
    el("run-fraction").textContent = fmt(m.fraction);
    const phase = state.phases[state.phases.length - 1];
    el("run-phase").dataset.phase = phase;
    el("run-phase").textContent = PHASE_TEXT[phase] || phase;
    return true;
  }

  // The slider: epoch N shows N's mask and puts every chart's cursor on N.
  function selectEpoch(epoch) {
    state.selectedEpoch = epoch;
    const index = state.epochs.indexOf(epoch);
    el("epoch-slider").value = String(index + 1);
    el("mask-epoch").textContent = epoch;
    const mask = state.masks[epoch];
    if (mask) drawMask(mask);
    for (const chart of Object.values(charts)) {
      if (index >= 0) chart.setCursor({ left: chart.valToPos(epoch, "x"), top: 10 });
    }
  }

  el("epoch-slider").addEventListener("input", (event) => {
    const index = Number(event.target.value) - 1;
    state.followLatest = index === state.epochs.length - 1;
    selectEpoch(state.epochs[index]);
  });

  // What the core says of a finished run (an empty mask, accuracy near chance, a target not reached).
  function showOutcome(warnings, testAccuracy, phases) {
    if (testAccuracy !== undefined && testAccuracy !== null) el("run-test-accuracy").textContent = fmt(testAccuracy);
    const spent = window.maskselFormat.phaseSeconds(phases);
    if (spent) el("run-phase-seconds").textContent = spent;
    if (!warnings) return;
    const box = el("run-warnings");
    const list = box.querySelector("ul");
    list.textContent = "";
    for (const text of warnings) {
      const item = document.createElement("li");
      item.textContent = text;
      list.appendChild(item);
    }
    box.hidden = warnings.length === 0;
  }

  // Elapsed time, and the time left if every remaining epoch runs (early stopping may end the run sooner).
  function showTimes() {
    const { started, finished } = root.dataset;
    el("run-elapsed").textContent = window.maskselFormat.runDuration(started, finished) || "–";
    const eta = el("run-eta");
    const done = state.epochs.length ? state.epochs[state.epochs.length - 1] : 0;
    if (FINAL.includes(state.status)) eta.textContent = "none";
    else if (!started || done === 0) eta.textContent = "–";
    else {
      const perEpoch = (Date.now() - Date.parse(started)) / 1000 / done;
      const left = Math.max(Number(root.dataset.totalEpochs) - done, 0);
      eta.textContent = "at most " + window.maskselFormat.duration(perEpoch * left);
    }
  }
  setInterval(showTimes, 1000);

  function setTimes(run) {
    if (run.started_at) root.dataset.started = run.started_at;
    if (run.finished_at) root.dataset.finished = run.finished_at;
    showTimes();
  }

  function setStatus(status, error) {
    state.status = status;
    if (FINAL.includes(status) && root.dataset.started && !root.dataset.finished) {
      root.dataset.finished = new Date().toISOString();  // until a snapshot brings the stored time
    }
    if (status === "running" && !root.dataset.started) root.dataset.started = new Date().toISOString();
    const badge = el("run-status");
    badge.textContent = status;
    badge.className = "status status-" + status;
    if (error) { const e = el("run-error"); e.textContent = error; e.hidden = false; }
    el("downloads").classList.toggle("pending", !FINAL.includes(status));
    el("cancel-run").hidden = FINAL.includes(status);
    el("run-epoch-of").hidden = FINAL.includes(status);  // a finished run shows the epochs it ran
    el("run-phase-label").textContent = FINAL.includes(status) ? "Last phase" : "Now";
    showTimes();
  }

  // Cancel: the worker notices within a batch or so; the status message then arrives as usual.
  el("cancel-run").addEventListener("click", async () => {
    if (!window.confirm(`Cancel run ${runId}? Its epochs so far and its last mask are kept.`)) return;
    const token = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
    const reply = await fetch(`/api/runs/${runId}/cancel/`, { method: "POST", headers: { "X-CSRFToken": token } });
    const body = await reply.json().catch(() => ({}));
    if (reply.ok) setStatus(body.status); else window.alert(body.error || reply.statusText);
  });

  // Name, tags and notes: saved with the API's PATCH, as a script would.
  el("run-annotations").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
    const tags = el("run-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
    const reply = await fetch(`/api/runs/${runId}/`, {
      method: "PATCH", headers: { "Content-Type": "application/json", "X-CSRFToken": token },
      body: JSON.stringify({ name: el("run-name").value, tags, notes: el("run-notes").value }),
    });
    const body = await reply.json().catch(() => ({}));
    const message = el("annotations-message");
    message.className = reply.ok ? "ok" : "error";
    message.textContent = reply.ok ? "saved" : (body.error || reply.statusText);
    if (reply.ok) {
      el("run-title").textContent = body.name;
      el("run-tags").value = body.tags.join(", ");
      document.title = `Run #${runId}${body.name ? " " + body.name : ""} · masksel`;
    }
  });

  // A run whose worker stopped renewing its lease: say so until a worker takes it back.
  function showWorkerLost(run) {
    const warning = el("run-warning");
    warning.hidden = !run.worker_lost;
    if (run.worker_lost) {
      warning.textContent = `No heartbeat from worker ${run.worker} since ${run.heartbeat_at}: ` +
        "the run will be requeued and resume from its last epoch when a worker is up.";
    }
  }

  // What the mask's colours mean, under the picture; an entry without a colour is plain text.
  function legend(entries) {
    const box = el("mask-legend");
    box.textContent = "";
    for (const [colour, text] of entries) {
      const item = document.createElement("span");
      if (colour) {
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = colour;
        item.append(swatch);
      }
      item.append(text);
      box.appendChild(item);
    }
  }

  function drawMask(mask) {
    const view = el("mask-view");
    view.textContent = "";
    legend(masks.draw(view, mask, 240));
    if (mask.frequency) drawGallery(mask);
  }

  // A dynamic mask: each gallery input's picture, the cells it sends tinted green and the others faded
  // (channel 0).
  const galleryData = el("run-gallery") ? JSON.parse(el("run-gallery").textContent) : null;
  function drawGallery(mask) {
    if (!galleryData || !mask.gallery_bits) return;
    const [C, GH, GW] = mask.shape;
    const view = el("gallery-view");
    view.textContent = "";
    const { height: H, width: W, images } = galleryData;
    const bits = masks.unpackBits(mask.gallery_bits, images.length * C * GH * GW);
    const scale = Math.max(1, Math.floor(112 / Math.max(H, W)));
    images.forEach((channels, i) => {
      const canvas = document.createElement("canvas");
      canvas.width = W * scale; canvas.height = H * scale;
      let sent = 0;
      const grey = atob(channels[0]);
      const ctx = canvas.getContext("2d");
      for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
        const k = Math.floor(h * GH / H) * GW + Math.floor(w * GW / W);  // the cell this pixel lies in (channel 0)
        const on = bits[i * C * GH * GW + k];
        const hex = "#" + grey.charCodeAt(h * W + w).toString(16).padStart(2, "0").repeat(3);
        sent += on;
        ctx.fillStyle = on ? masks.mix(hex, masks.KEPT, 0.45) : masks.mix(hex, "#ffffff", 0.75);
        ctx.fillRect(w * scale, h * scale, scale, scale);
      }
      canvas.title = `input ${i + 1}: ${Math.round(100 * sent / (H * W))} % of channel 0 sent`;
      view.appendChild(canvas);
    });
  }

  function onMessage(msg) {
    if (msg.type === "snapshot") {
      state.snapshots += 1;
      let added = false;
      for (const e of msg.epochs) added = addEpoch(e, false) || added;
      if (added) redraw();
      setStatus(msg.run.status, msg.run.error);
      setTimes(msg.run);
      showOutcome(msg.run.warnings, msg.run.test_accuracy, msg.run.seconds_per_phase);
      if (msg.run.device) el("run-device").textContent = msg.run.device;
      showWorkerLost(msg.run);
    } else if (msg.type === "epoch") {
      if (addEpoch(msg, true)) redraw();
    } else if (msg.type === "status") {
      setStatus(msg.status, msg.error);
      showOutcome(msg.warnings, msg.test_accuracy, msg.seconds_per_phase);
    }
  }

  let attempts = 0;
  let polling = null;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/runs/${runId}/`);
    // A socket counts as working once the snapshot arrived: some proxies accept websockets and
    // drop them at once, which must fall back to polling too.
    let delivered = false;
    socket.onopen = () => el("live").classList.add("on");
    socket.onmessage = (event) => {
      if (!delivered) { delivered = true; attempts = 0; stopPolling(); }
      onMessage(JSON.parse(event.data));
    };
    socket.onclose = (event) => {
      el("live").classList.remove("on");
      if (event.code === 4401 || event.code === 4404) return;
      if (FINAL.includes(state.status) && delivered) return;
      attempts += 1;
      if (!delivered && attempts >= 3) startPolling();
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
      setTimes(run);
      showOutcome(run.warnings, run.test_accuracy, run.seconds_per_phase);
      showWorkerLost(run);
      if (FINAL.includes(run.status)) stopPolling();
    } catch (err) { /* keep trying */ }
  }
  function startPolling() { if (!polling) { state.polling = true; polling = setInterval(poll, 3000); poll(); } }
  function stopPolling() { if (polling) { clearInterval(polling); polling = null; } }

  connect();
})();
