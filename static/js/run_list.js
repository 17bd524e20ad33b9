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
      const bar = row.querySelector("[data-field=progress]");
      const done = run.status === "succeeded";  // stopped early or not, it is complete
      bar.max = done ? Math.max(run.epoch, 1) : run.total_epochs;
      bar.value = run.epoch;
      row.querySelector("[data-field=epoch]").textContent = run.epoch;
      row.querySelector("[data-field=of]").textContent = done ? " epochs" : `/${run.total_epochs}`;
      row.querySelector("[data-field=val_accuracy]").textContent = fmt(run.best_accuracy);
      row.querySelector("[data-field=fraction]").textContent = fmt(run.fraction);
      const duration = row.querySelector("[data-field=duration]");
      duration.dataset.started = run.started_at || "";
      duration.dataset.finished = run.finished_at || "";
    }
    tick();
  }
  setInterval(refresh, 3000);

  // Durations count up every second while a run trains and stop at its finish.
  function tick() {
    for (const cell of table.querySelectorAll("[data-field=duration]")) {
      cell.textContent = window.maskselFormat.runDuration(cell.dataset.started, cell.dataset.finished);
    }
  }
  setInterval(tick, 1000);

  // Ticked runs go to /compare/?runs=... in the order they appear.
  const picks = () => Array.from(table.querySelectorAll(".compare-pick:checked")).map((box) => box.value);
  table.addEventListener("change", () => {
    const ids = picks();
    document.getElementById("compare-runs").value = ids.join(",");
    document.getElementById("compare-button").disabled = ids.length < 2;
    for (const button of document.querySelectorAll(".batch-action")) button.disabled = ids.length === 0;
  });

  // Batch actions: each run answers "ok" or why not; the page then reloads to show the result.
  for (const button of document.querySelectorAll(".batch-action")) {
    button.addEventListener("click", async () => {
      const ids = picks().map(Number);
      const action = button.dataset.action;
      const prompts = {
        cancel: `Cancel ${ids.length} run(s)? Their epochs so far and last masks are kept.`,
        requeue: `Train ${ids.length} failed or cancelled run(s) again? Each starts from epoch 0 as a new run ` +
                  "with the same options, name and tags; the old runs keep their epochs and files.",
        delete: `Delete ${ids.length} run(s) with their epochs and files? This cannot be undone.`,
      };
      if (!window.confirm(prompts[action])) return;
      const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
      const reply = await fetch("/api/runs/batch/", {
        method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": token },
        body: JSON.stringify({ action, ids }),
      });
      const body = await reply.json().catch(() => ({}));
      const refused = Object.entries(body.results || {}).filter(([, result]) => result !== "ok");
      const created = Object.entries(body.created || {}).map(([old, made]) => `#${old} as #${made}`);
      document.getElementById("batch-message").textContent = reply.ok
        ? (refused.length ? refused.map(([id, why]) => `#${id}: ${why}`).join("; ")
          : (created.length ? `requeued ${created.join(", ")}` : `${action}: done`))
        : (body.error || reply.statusText);
      if (reply.ok && !refused.length) setTimeout(() => location.reload(), 500);
    });
  }
})();
