// Small time-series charts on a canvas: the dashboard's last minutes of one
// figure each, no library. A series keeps at most `capacity` points (one a
// second: 300 = 5 minutes); a chart draws its line, its largest value and
// its latest one.

/** The last `capacity` (time ms, value) points of one figure. */
export class TimeSeries {
  constructor(capacity = 300) {
    this.capacity = capacity;
    this.points = [];
  }

  push(t, v) {
    this.points.push([t, v]);
    if (this.points.length > this.capacity) this.points.shift();
  }

  get last() {
    return this.points.length ? this.points[this.points.length - 1][1] : undefined;
  }
}

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** Draws `series` on `canvas`, over the last `span` ms, with values formatted by `fmt`. */
export function drawChart(canvas, series, { span = 300_000, fmt = String, color = css('--accent') } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 4, r: 4, t: 16, b: 14 };
  const pts = series.points;
  const muted = css('--muted');
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = muted;
  g.strokeStyle = css('--line');
  g.lineWidth = 1;
  g.beginPath();
  g.moveTo(pad.l, h - pad.b + 0.5);
  g.lineTo(w - pad.r, h - pad.b + 0.5);
  g.stroke();
  g.textBaseline = 'alphabetic';
  g.textAlign = 'left';
  g.fillText(`−${Math.round(span / 60_000)} min`, pad.l, h - 2);
  g.textAlign = 'right';
  g.fillText('now', w - pad.r, h - 2);
  if (pts.length === 0) return;
  const now = pts[pts.length - 1][0];
  let max = 0;
  for (const [, v] of pts) if (Number.isFinite(v)) max = Math.max(max, v);
  const top = max > 0 ? max * 1.1 : 1;
  const x = (t) => pad.l + (w - pad.l - pad.r) * (1 - (now - t) / span);
  const y = (v) => h - pad.b - (h - pad.t - pad.b) * (v / top);
  g.strokeStyle = color;
  g.lineWidth = 1.5;
  g.beginPath();
  let started = false;
  for (const [t, v] of pts) {
    if (!Number.isFinite(v) || now - t > span) {
      started = false;
      continue;
    }
    if (started) g.lineTo(x(t), y(v));
    else g.moveTo(x(t), y(v));
    started = true;
  }
  g.stroke();
  g.textAlign = 'left';
  g.fillStyle = muted;
  g.fillText(`max ${fmt(max)}`, pad.l, 11);
  g.textAlign = 'right';
  g.fillStyle = color;
  g.fillText(fmt(series.last), w - pad.r, 11);
}
