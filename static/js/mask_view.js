// Drawing a mask (the run page's panel, the compare page's final masks): channel masks as a strip (paper
// Fig. 7), pixel and block masks as a map per channel (Fig. 8), pixel-xor as one map coloured by the chosen
// channel, a dynamic mask as how often each cell is sent. `draw` returns the legend's entries.
window.maskselMaskView = (function () {
  "use strict";
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];
  const KEPT = "#16a34a", DROPPED = "#e5e7eb";

  function unpackBits(b64, count) {
    const raw = atob(b64);
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) out[i] = (raw.charCodeAt(i >> 3) >> (7 - (i & 7))) & 1;
    return out;
  }

  function mix(from, to, share) {
    const parse = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    const [a, b] = [parse(from), parse(to)];
    return `rgb(${a.map((v, i) => Math.round(v + (b[i] - v) * share)).join(",")})`;
  }

  // `side`: the most pixels a map may take across (240 on the run page).
  function draw(container, mask, side) {
    const canvasFor = (width, height, cell, title) => {
      const canvas = document.createElement("canvas");
      canvas.width = width * cell; canvas.height = height * cell; canvas.title = title;
      container.appendChild(canvas);
      return canvas.getContext("2d");
    };
    const shape = mask.shape;
    if (mask.frequency) return drawFrequency(mask, canvasFor, side);
    const bits = unpackBits(mask.bits, shape.reduce((a, b) => a * b, 1));
    if (shape.length === 1) {
      const ctx = canvasFor(shape[0], 1, 22, "channels");
      for (let c = 0; c < shape[0]; c++) {
        ctx.fillStyle = bits[c] ? KEPT : DROPPED;
        ctx.fillRect(c * 22, 0, 21, 21);
      }
      return [[KEPT, "channel kept: transferred"], [DROPPED, "channel dropped: never sent"],
              [null, "channels 0 to " + (shape[0] - 1) + ", left to right"]];
    }
    const [C, H, W] = shape;
    const cell = Math.max(3, Math.min(24, Math.floor(side / Math.max(H, W))));
    if (mask.mask_type === "pixel-xor") {
      const ctx = canvasFor(W, H, cell, "chosen channel per pixel");
      for (let c = 0; c < C; c++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
        if (!bits[(c * H + h) * W + w]) continue;
        ctx.fillStyle = PALETTE[c % PALETTE.length];
        ctx.fillRect(w * cell, h * cell, cell - 1, cell - 1);
      }
      return [...Array.from({ length: C }, (_, c) => [PALETTE[c % PALETTE.length], `pixel sent from channel ${c}`]),
              ["#ffffff", "not sent"]];
    }
    for (let c = 0; c < C; c++) {
      const ctx = canvasFor(W, H, cell, "channel " + c);
      for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
        ctx.fillStyle = bits[(c * H + h) * W + w] ? KEPT : DROPPED;
        ctx.fillRect(w * cell, h * cell, cell - 1, cell - 1);
      }
    }
    return [[KEPT, "kept: transferred"], [DROPPED, "dropped: never sent"],
            [null, C > 1 ? `one map per channel, channels 0 to ${C - 1} left to right` : "one map of the input"]];
  }

  function drawFrequency(mask, canvasFor, side) {
    const [C, GH, GW] = mask.shape;
    const raw = atob(mask.frequency);
    const cell = Math.max(3, Math.min(24, Math.floor(side / Math.max(GH, GW))));
    let most = 0;
    for (let i = 0; i < raw.length; i++) most = Math.max(most, raw.charCodeAt(i));
    for (let c = 0; c < C; c++) {
      const ctx = canvasFor(GW, GH, cell, "channel " + c + ": share of inputs that send each cell");
      for (let h = 0; h < GH; h++) for (let w = 0; w < GW; w++) {
        ctx.fillStyle = mix(DROPPED, KEPT, raw.charCodeAt((c * GH + h) * GW + w) / 255);
        ctx.fillRect(w * cell, h * cell, cell - 1, cell - 1);
      }
    }
    return [[DROPPED, "never sent"], [KEPT, "sent for every input"],
            [null, "how often each cell is sent" + (C > 1 ? `, channels 0 to ${C - 1} left to right` : "") +
             `; the most sent cell: ${Math.round(100 * most / 255)} % of inputs`]];
  }

  return { PALETTE, KEPT, DROPPED, unpackBits, mix, draw };
})();
