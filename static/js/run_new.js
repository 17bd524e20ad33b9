// New-run form: the mask it offers fits the data set (pixels for one channel, channels for several).
// Picking another data set changes the mask too, until a mask has been chosen (by hand or by what pre-filled it).
(function () {
  "use strict";
  const dataset = document.getElementById("id_dataset");
  const mask = document.getElementById("id_mask_type");
  const defaults = JSON.parse(document.getElementById("default-masks").textContent);
  if (!dataset || !mask) return;
  // A clone or a saved configuration chose its mask already: keep it.
  let chosenByHand = document.getElementById("new-run-form").hasAttribute("data-mask-chosen");
  mask.addEventListener("change", () => { chosenByHand = true; });
  dataset.addEventListener("change", () => {
    const fitting = defaults[dataset.value];
    if (!chosenByHand && fitting) mask.value = fitting;
  });
})();
