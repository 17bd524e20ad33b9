// One sample per class, each channel drawn as a grey image (scaled per sample to its own range).
(function () {
  "use strict";
  const id = document.getElementById("dataset").dataset.datasetId;
  const target = document.getElementById("preview");
  fetch(`/api/datasets/${id}/preview/`).then((r) => r.json()).then((preview) => {
    target.textContent = "";
    const scale = Math.max(2, Math.floor(64 / Math.max(preview.height, preview.width)));
    const shown = preview.samples.length ? preview.samples[0].channels.length : 0;
    const header = document.createElement("div");  // the channels' names over their columns
    header.className = "preview-row preview-names";
    header.appendChild(document.createElement("span"));
    for (let c = 0; c < shown; c++) {
      const name = document.createElement("b");
      name.textContent = preview.channel_names[c] || `channel ${c}`;
      name.style.width = `${preview.width * scale + 2}px`;  // the canvas and its border
      header.appendChild(name);
    }
    target.appendChild(header);
    for (const sample of preview.samples) {
      const row = document.createElement("div");
      row.className = "preview-row";
      const label = document.createElement("span");
      label.textContent = `class ${sample.label}`;
      row.appendChild(label);
      sample.channels.forEach((b64, c) => {
        const raw = atob(b64);
        const canvas = document.createElement("canvas");
        canvas.width = preview.width * scale; canvas.height = preview.height * scale;
        canvas.title = preview.channel_names[c] || `channel ${c}`;
        const ctx = canvas.getContext("2d");
        for (let h = 0; h < preview.height; h++) for (let w = 0; w < preview.width; w++) {
          const v = raw.charCodeAt(h * preview.width + w);
          ctx.fillStyle = `rgb(${v},${v},${v})`;
          ctx.fillRect(w * scale, h * scale, scale, scale);
        }
        row.appendChild(canvas);
      });
      target.appendChild(row);
    }
    if (preview.channels_total > preview.samples[0]?.channels.length) {
      const note = document.createElement("p");
      note.className = "muted";
      note.textContent = `First ${preview.samples[0].channels.length} of ${preview.channels_total} channels shown.`;
      target.appendChild(note);
    }
    target.dataset.samples = String(preview.samples.length);
  }).catch(() => { target.textContent = "The preview could not be loaded."; });

  // Delete: the server refuses while runs use it, and says which.
  const remove = document.getElementById("delete-dataset");
  if (remove) {
    remove.addEventListener("click", async () => {
      if (!window.confirm("Delete this data set and its file? This cannot be undone.")) return;
      const token = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
      const reply = await fetch(`/api/datasets/${id}/`, { method: "DELETE", headers: { "X-CSRFToken": token } });
      if (reply.ok) { location.assign("/datasets/?deleted"); return; }
      const body = await reply.json().catch(() => ({}));
      const message = document.getElementById("dataset-message");
      message.textContent = `Not deleted: ${body.error || reply.statusText}`;
      message.hidden = false;
    });
  }
})();
