// The run page's trade-off curve in bytes: accuracy of each epoch's mask against its bytes per sample.
(function () {
  const points = JSON.parse(document.getElementById("transfer-curve").textContent)
    .slice().sort((a, b) => a.bytes - b.bytes || a.epoch - b.epoch);
  const element = document.getElementById("chart-bytes");
  const width = () => Math.max(element.clientWidth, 300);
  const chart = new uPlot({
    width: width(), height: 220,
    scales: { x: { time: false }, y: { range: [0, 1] } },
    axes: [{ label: "bytes per sample" }, { label: "val accuracy" }],
    series: [
      { label: "bytes", value: (u, v) => (v == null ? "–" : v.toFixed(1)) },
      { label: "val accuracy", stroke: "#2563eb", width: 0, points: { show: true, size: 6 } },
    ],
  }, [points.map((p) => p.bytes), points.map((p) => p.accuracy)], element);
  element.dataset.points = String(points.length);
  window.addEventListener("resize", () => chart.setSize({ width: width(), height: 220 }));
})();
