// Keeps the status, progress and metric cells of the run table current while runs train.
(function () {
  "use strict";
  const table = document.getElementById("runs-table");
  if (!table) return;
  const FINAL = ["succeeded", "failed", "cancelled"];
  const fmt = (v) => (v === null || v === undefined ? "" : Number(v).toFixed(3));
  async function refresh() {
    const rows = table.querySelectorAll("tr[data-run]");
    const open = Array.from(rows).some((row) => !FINAL.includes(row.querySelector("[data-field=status]").textContent));
    if (!open) return;
    const ids = Array.from(rows).map((row) => row.dataset.run).join(",");
    const runs = await fetch(`/api/runs/?ids=${ids}`).then((r) => r.json()).catch(() => []);
    for (const run of runs) {
      const row = table.querySelector(`tr[data-run="${run.id}"]`);
      if (!row) continue;
      const badge = row.querySelector("[data-field=status]");
      badge.textContent = run.status;
      badge.className = "status status-" + run.status;
      row.querySelector("[data-field=progress]").value = run.epoch;
      row.querySelector("[data-field=epoch]").textContent = run.epoch;
      row.querySelector("[data-field=val_accuracy]").textContent = fmt(run.best_accuracy);
      row.querySelector("[data-field=fraction]").textContent = fmt(run.fraction);
    }
  }
  setInterval(refresh, 3000);

  // Ticked runs go to /compare/?runs=... in the order they appear.
  const picks = () => Array.from(table.querySelectorAll(".compare-pick:checked")).map((box) => box.value);
  table.addEventListener("change", () => {
    const ids = picks();
    document.getElementById("compare-runs").value = ids.join(",");
    document.getElementById("compare-button").disabled = ids.length < 2;
  });
})();
