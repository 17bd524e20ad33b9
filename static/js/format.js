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
  // Started to finished, or to now while it runs; "" before it started.
  runDuration(started, finished) {
    if (!started) return "";
    const end = finished ? Date.parse(finished) : Date.now();
    return this.duration((end - Date.parse(started)) / 1000);
  },
};
