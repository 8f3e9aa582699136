// charts.js: a small line chart of the last N values on a canvas. Colours
// come from CSS (the canvas's `color` and `border-color`), so the style
// sheet themes them. The caption next to the canvas carries the value for
// screen readers; the canvas itself is decoration (aria-hidden).

export class Spark {
  constructor(canvas, keep = 30) {
    this.canvas = canvas;
    this.keep = keep;
    this.values = [];
  }

  push(v) {
    this.values.push(v);
    if (this.values.length > this.keep) this.values.shift();
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || c.width, h = c.clientHeight || c.height;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const style = getComputedStyle(c);
    ctx.strokeStyle = style.borderTopColor;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, h - 0.5);
    ctx.lineTo(w, h - 0.5);
    ctx.stroke();
    const vals = this.values;
    if (vals.length < 2) return;
    const max = Math.max(...vals, 1e-9);
    const step = w / (this.keep - 1);
    const x0 = w - step * (vals.length - 1);
    ctx.strokeStyle = style.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    vals.forEach((v, i) => {
      const x = x0 + i * step, y = h - 2 - (v / max) * (h - 6);
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}
