// Compare page: curves of every run with their mean (the paper's figure style), and accuracy
// against transferred fraction with each run's Pareto front (no point of the run is both more
// accurate and cheaper than a front point).
(function () {
  "use strict";
  const runs = JSON.parse(document.getElementById("compare-data").textContent);
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];
  const colour = (i) => PALETTE[i % PALETTE.length];
  const EPOCH_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
  // Q may pass 1 where a dynamic mask's bitmap rides along with everything: the fraction axes reach it.
  const TOP = Math.max(1, ...runs.flatMap((r) => r.fraction));
  window.maskselCompare = { runs: runs.length, drawn: 0 };

  // All runs on one x axis of epochs 1..max; missing epochs are gaps (null).
  function aligned(key) {
    const maxEpoch = Math.max(0, ...runs.map((r) => r.epoch.length ? r.epoch[r.epoch.length - 1] : 0));
    const x = Array.from({ length: maxEpoch }, (_, i) => i + 1);
    const ys = runs.map((r) => {
      const byEpoch = new Map(r.epoch.map((e, i) => [e, r[key][i]]));
      return x.map((e) => (byEpoch.has(e) ? byEpoch.get(e) : null));
    });
    const mean = x.map((_, i) => {
      const values = ys.map((y) => y[i]).filter((v) => v !== null);
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    });
    return [x, ...ys, mean];
  }

  function overlay(elementId, key) {
    const element = document.getElementById(elementId);
    const series = [{ label: "epoch" }, ...runs.map((r, i) => ({ label: r.label, stroke: colour(i), width: 1,
      alpha: 0.6 })), { label: "mean", stroke: "#111827", width: 3 }];
    new uPlot({
      width: Math.max(element.clientWidth, 240), height: 260, series,
      cursor: { sync: { key: "compare" } },
      scales: { x: { time: false }, y: { range: [0, key === "fraction" ? TOP : 1] } },
      axes: [{ label: "epoch", incrs: EPOCH_TICKS }, {}],
    }, aligned(key), element);
    window.maskselCompare.drawn += 1;
  }

  function paretoFront(points) {
    // Sort by fraction ascending (accuracy descending on ties) and keep points that beat every cheaper one.
    const sorted = points.slice().sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    const front = [];
    let best = -Infinity;
    for (const p of sorted) if (p[1] > best) { front.push(p); best = p[1]; }
    return front;
  }

  function scatter() {
    const canvas = document.getElementById("compare-scatter");
    canvas.width = Math.max(canvas.parentElement.clientWidth - 40, 240);
    const ctx = canvas.getContext("2d");
    const pad = 44, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
    // The accuracy axis starts a step below the lowest point: runs near 0.95 are not squeezed into its top tenth.
    const lowest = Math.min(1, ...runs.flatMap((r) => r.val_accuracy));
    const step = lowest >= 0.8 ? 0.05 : 0.1, floor = Math.max(0, Math.floor(lowest / step) * step - step);
    const px = (f) => pad + f / TOP * w, py = (a) => canvas.height - pad - (a - floor) / (1 - floor) * h;
    ctx.strokeStyle = "#9ca3af"; ctx.fillStyle = "#374151"; ctx.font = "12px sans-serif";
    ctx.strokeRect(pad, pad, w, h);
    for (let t = floor; t <= 1.0001; t += step) ctx.fillText(t.toFixed(2), pad - 36, py(t) + 4);
    for (let t = 0; t <= TOP + 1e-9; t += 0.2) ctx.fillText(t.toFixed(1), px(t) - 8, canvas.height - pad + 16);
    ctx.fillText("transferred fraction Q", pad + w / 2 - 60, canvas.height - 8);
    ctx.fillText("accuracy", 4, pad - 10);
    const fronts = [];
    runs.forEach((run, i) => {
      const points = run.fraction.map((f, k) => [f, run.val_accuracy[k]]);
      ctx.fillStyle = colour(i); ctx.globalAlpha = 0.35;
      for (const [f, a] of points) { ctx.beginPath(); ctx.arc(px(f), py(a), 3, 0, 2 * Math.PI); ctx.fill(); }
      ctx.globalAlpha = 1; ctx.strokeStyle = colour(i); ctx.lineWidth = 2;
      const front = paretoFront(points);
      fronts.push(front.length);
      ctx.beginPath();
      front.forEach(([f, a], k) => (k ? ctx.lineTo(px(f), py(a)) : ctx.moveTo(px(f), py(a))));
      ctx.stroke();
    });
    // The legend below the plot, as text: drawn inside, it covered the fronts it names.
    const legend = document.getElementById("compare-scatter-legend");
    legend.replaceChildren(...runs.map((run, i) => {
      const item = document.createElement("span");
      const dot = document.createElement("span");
      dot.className = "dot"; dot.style.background = colour(i);
      item.append(dot, run.label);
      return item;
    }));
    window.maskselCompare.fronts = fronts;
    window.maskselCompare.drawn += 1;
  }

  // Each run's last mask with its label: static and dynamic runs side by side.
  function lastMasks() {
    const box = document.getElementById("compare-masks");
    runs.forEach((run, i) => {
      if (!run.mask) return;
      const figure = document.createElement("figure");
      const view = document.createElement("div");
      view.className = "mask-view";
      const legend = window.maskselMaskView.draw(view, run.mask, 140);
      const caption = document.createElement("figcaption");
      caption.style.color = colour(i);
      caption.textContent = `${run.label}: Q ${run.mask.fraction.toFixed(3)}`;
      caption.title = legend.map(([, text]) => text).join("; ");
      figure.append(view, caption);
      box.appendChild(figure);
    });
  }

  overlay("compare-accuracy", "val_accuracy");
  overlay("compare-fraction", "fraction");
  scatter();
  lastMasks();
  window.maskselCompare.drawnAt = performance.now();  // ms since navigation started (benchmarks read it)
})();
