// New-study form: a small editor of the search space (one row per run option: a range, a log-scaled range, or
// choices) that writes the JSON field the form sends; the JSON stays editable by hand, and the form works
// without this script.
(function () {
  "use strict";
  const options = JSON.parse(document.getElementById("searchable-options").textContent);
  const field = document.getElementById("id_space");
  const editor = document.getElementById("space-editor");
  if (!field || !editor) return;
  const body = editor.querySelector("tbody");
  editor.hidden = false;

  function parseChoice(text, name) {
    const trimmed = text.trim();
    if (options[name] && options[name].numeric && trimmed !== "" && !Number.isNaN(Number(trimmed))) {
      return Number(trimmed);
    }
    if (/^[[{]/.test(trimmed) || ["true", "false", "null"].includes(trimmed)) {
      try { return JSON.parse(trimmed); } catch (_) { /* plain text */ }
    }
    return trimmed;
  }

  function write() {
    const space = {};
    for (const row of body.rows) {
      const name = row.querySelector(".space-option").value;
      const kind = row.querySelector(".space-kind").value;
      const from = row.querySelector(".space-from").value, to = row.querySelector(".space-to").value;
      if (kind === "choices") {
        space[name] = { choices: from.split(/;|,(?![^[]*\])/).filter((t) => t.trim() !== "")
          .map((t) => parseChoice(t, name)) };
      } else {
        space[name] = { low: Number(from), high: Number(to), log: kind === "log" };
      }
    }
    field.value = JSON.stringify(space);
  }

  function addRow(name, entry) {
    const row = body.insertRow();
    const optionSelect = Object.keys(options).map((n) => `<option${n === name ? " selected" : ""}>${n}</option>`);
    row.innerHTML = `<td><select class="space-option" aria-label="option">${optionSelect.join("")}</select></td>` +
      '<td><select class="space-kind" aria-label="how to search"><option value="range">range</option>' +
      '<option value="log">log range</option><option value="choices">choices</option></select></td>' +
      '<td data-label="from / choices"><input class="space-from" aria-label="from, or the choices separated by commas"></td>' +
      '<td data-label="to"><input class="space-to" aria-label="to"></td>' +
      '<td><button type="button" class="link-button space-remove" aria-label="remove">×</button></td>';
    const kind = row.querySelector(".space-kind"), from = row.querySelector(".space-from");
    const to = row.querySelector(".space-to"), option = row.querySelector(".space-option");
    function fit(reset) {
      const known = options[option.value];
      kind.querySelector("[value=range]").disabled = !known.numeric;
      kind.querySelector("[value=log]").disabled = !known.numeric;
      if (!known.numeric) kind.value = "choices";
      to.hidden = kind.value === "choices";
      row.classList.toggle("choices", kind.value === "choices");
      from.placeholder = kind.value === "choices" ? (known.choices.join(", ") || "values, comma-separated") : "from";
      if (reset) {
        from.value = kind.value === "choices" ? known.choices.slice(0, 2).join(", ") : known.default ?? "";
        to.value = kind.value === "choices" ? "" : known.default ? known.default * 4 : "";
      }
    }
    if (entry && "choices" in entry) {
      kind.value = "choices";
      from.value = entry.choices.map((c) => (typeof c === "string" ? c : JSON.stringify(c))).join(", ");
    } else if (entry) {
      kind.value = entry.log ? "log" : "range";
      from.value = entry.low; to.value = entry.high;
    }
    fit(!entry);
    option.addEventListener("change", () => { fit(true); write(); });
    kind.addEventListener("change", () => { fit(false); write(); });
    for (const input of [from, to]) input.addEventListener("input", write);
    row.querySelector(".space-remove").addEventListener("click", () => { row.remove(); write(); });
  }

  let initial = {};
  try { initial = JSON.parse(field.value || "{}"); } catch (_) { editor.hidden = true; return; }
  for (const [name, entry] of Object.entries(initial)) if (options[name]) addRow(name, entry);
  document.getElementById("space-add").addEventListener("click", () => {
    const used = new Set([...body.rows].map((r) => r.querySelector(".space-option").value));
    addRow(Object.keys(options).find((n) => !used.has(n) && options[n].numeric), null);
    write();
  });
})();
