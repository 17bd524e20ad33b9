// How durations read on every page; jobs/templatetags/run_display.py writes the same text on the server.
window.maskselFormat = {
  duration(seconds) {
    const whole = Math.max(Math.floor(seconds), 0);
    const hours = Math.floor(whole / 3600), minutes = Math.floor((whole % 3600) / 60), secs = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (hours) return `${hours} h ${two(minutes)} min`;
    if (minutes) return `${minutes} min ${two(secs)} s`;
    return `${secs} s`;
  },
  // Where a finished run's time went, as the run_display.phase_seconds filter writes it.
  phaseSeconds(seconds) {
    const names = { warmup: "warm-up", select: "selection", swap_check: "swap check", finalize: "finalize" };
    const spent = (v) => (v < 0.1 ? "<0.1 s" : v < 10 ? `${v.toFixed(1)} s` : this.duration(v));
    return Object.keys(names).filter((k) => (seconds || {})[k] > 0)
      .map((k) => `${names[k]} ${spent(seconds[k])}`.replaceAll(" ", "\u00a0"))
      .join(" · ");
  },
  // Started to finished, or to now while it runs; "" before it started.
  runDuration(started, finished) {
    if (!started) return "";
    const end = finished ? Date.parse(finished) : Date.now();
    return this.duration((end - Date.parse(started)) / 1000);
  },
};
