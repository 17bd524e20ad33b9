// New-run form: the mask it offers fits the data set (pixels for one channel, channels for several).
// Picking another data set changes the mask too, until a mask has been chosen (by hand or by what pre-filled it).
(function () {
  "use strict";
  const dataset = document.getElementById("id_dataset");
  const mask = document.getElementById("id_mask_type");
  const defaults = JSON.parse(document.getElementById("default-masks").textContent);
  if (!dataset || !mask) return;
  // A clone or a saved configuration chose its mask already: keep it (an attribute: on a form, .dataset is
  // its field named "dataset").
  let chosenByHand = document.getElementById("new-run-form").hasAttribute("data-mask-chosen");
  mask.addEventListener("change", () => { chosenByHand = true; });
  dataset.addEventListener("change", () => {
    const fitting = defaults[dataset.value];
    if (!chosenByHand && fitting) mask.value = fitting;
  });

  // A sweep says how many runs it will start before it is sent (and when that passes the limit).
  const count = document.getElementById("sweep-count");
  if (count) {
    const form = document.getElementById("new-run-form");
    const values = (id) => document.getElementById(id).value.split(/[,;]/).filter((v) => v.trim() !== "").length;
    const update = () => {
      const inits = values("id_lambda_inits"), factors = values("id_lambda_factors");
      const seeds = Math.max(Number(document.getElementById("id_seeds").value) || 0, 0);
      // getAttribute: on a form, .dataset is its field named "dataset"
      const runs = inits * factors * seeds, limit = Number(form.getAttribute("data-max-runs"));
      count.textContent = `This sweep starts ${runs} run${runs === 1 ? "" : "s"}: ${inits} lambda_init x ` +
        `${factors} lambda_factor x ${seeds} per cell` + (runs > limit ? ` (more than the limit of ${limit})` : "");
      count.classList.toggle("error", runs > limit);
    };
    for (const id of ["id_lambda_inits", "id_lambda_factors", "id_seeds"]) {
      document.getElementById(id).addEventListener("input", update);
    }
    update();
  }
})();
