// nbray TaskStream view (anywidget): one row per worker, one bar per task attempt,
// drawn on a canvas. Bars thinner than a pixel are merged per pixel column; failed
// attempts are outlined in red. Wheel zooms, drag pans, double-click follows now
// again; hover shows a bar, click asks the kernel for its details.
const LABEL_PX = 92, ROW_PX = 12, GAP_PX = 2, NODE_GAP_PX = 6, AXIS_PX = 16, FAILED = "#d62728";
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
  "#86bcb6", "#8cd17d", "#a0cbe8", "#d4a6c8"];

function colour(func) {  // the same hash as the JupyterLab panel's, so colours match
  let hash = 0;
  for (let i = 0; i < func.length; i++) hash = (Math.imul(hash, 31) + func.charCodeAt(i)) | 0;
  return PALETTE[Math.abs(hash) % PALETTE.length];
}

function render({ model, el }) {
  const wrap = document.createElement("div");
  wrap.className = "nbray-task-stream-view";
  const legend = document.createElement("div");
  legend.className = "nbray-task-stream-legend";
  const canvas = document.createElement("canvas");
  const tip = document.createElement("div");
  tip.className = "nbray-task-stream-tip";
  const info = document.createElement("div");
  wrap.append(legend, canvas, tip, info);
  el.append(wrap);

  // Clock offset: the kernel's now against this browser's, so "now" lines up.
  let skew = 0;
  let view = { end: 0, span: model.get("window_s") * 1000, follow: true };
  let rows = [], tops = [], bars = null, byRow = [], segments = [], t0 = 0, funcs = [], shortFuncs = [];
  let raf = null, drag = null;
  const now = () => Date.now() + skew;

  function load() {
    const data = model.get("layout_data") || {};
    rows = data.rows || [];
    bars = data.bars || { row: [], start: [], end: [], func: [], failed: [], key: [] };
    t0 = data.t0_ms || 0;
    funcs = data.funcs || [];
    shortFuncs = data.short_funcs || funcs;
    byRow = rows.map(() => []);
    for (let i = 0; i < bars.row.length; i++) byRow[bars.row[i]].push(i);  // already sorted by start
    tops = [];
    let y = AXIS_PX;
    rows.forEach((r, i) => { if (r.node_first && i > 0) y += NODE_GAP_PX; tops.push(y); y += ROW_PX + GAP_PX; });
    skew = model.get("now_ms") - Date.now();
    request();
  }

  function request() {
    if (raf === null) raf = requestAnimationFrame(() => { raf = null; draw(); });
  }

  function windowNow() {
    const end = view.follow ? now() : view.end;
    return [end - view.span, end];
  }

  function draw() {
    const width = Math.max(LABEL_PX + 100, wrap.clientWidth || 600);
    const height = (tops.length ? tops[tops.length - 1] + ROW_PX + GAP_PX : AXIS_PX + 20) + 2;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
      canvas.style.width = width + "px"; canvas.style.height = height + "px";
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const fg = getComputedStyle(wrap).color || "#222";
    const [start, end] = windowNow();
    const timeWidth = width - LABEL_PX, msPerPx = view.span / timeWidth, t = now();
    ctx.font = "10px sans-serif"; ctx.textBaseline = "middle"; ctx.fillStyle = fg;
    // axis: a tick every 1/2/5 x 10^k ms
    const raw = view.span / Math.max(2, Math.floor(timeWidth / 80)), pow = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw);
    ctx.globalAlpha = 0.6;
    for (let tick = Math.ceil(start / step) * step; tick <= end; tick += step) {
      const x = LABEL_PX + (tick - start) / msPerPx;
      ctx.fillRect(x, AXIS_PX - 4, 1, height);
      ctx.fillText(new Date(tick).toLocaleTimeString(), Math.min(x + 2, width - 50), AXIS_PX / 2);
    }
    ctx.globalAlpha = 1;
    rows.forEach((r, i) => {
      const y = tops[i] + ROW_PX / 2;
      if (r.node_first) { ctx.font = "bold 10px sans-serif"; ctx.fillText(r.node_id.slice(0, 8), 2, y); ctx.font = "10px sans-serif"; }
      ctx.fillText(String(r.pid || r.worker_id.slice(0, 6)), 58, y);
    });
    segments = [];
    const counts = new Map();
    let failedInView = 0;
    byRow.forEach((indices, r) => {
      let merged = null;
      const flush = () => { if (merged) { segments.push(merged); merged = null; } };
      for (const i of indices) {
        const s = t0 + bars.start[i];
        if (s > end) break;
        const e = bars.end[i] < 0 ? t : t0 + bars.end[i];
        if (e < start) continue;
        counts.set(bars.func[i], (counts.get(bars.func[i]) || 0) + 1);
        if (bars.failed[i]) failedInView++;
        const x0 = (Math.max(s, start) - start) / msPerPx, x1 = (Math.min(e, end) - start) / msPerPx;
        if (x1 - x0 >= 1) { segments.push({ r, x0, x1, func: bars.func[i], failed: bars.failed[i], i, n: 1 }); continue; }
        const px = Math.floor(x0);
        if (merged && px <= merged.x1) {
          merged.x1 = Math.max(merged.x1, px + 1); merged.n++; merged.failed = merged.failed || bars.failed[i]; merged.i = -1;
          continue;
        }
        flush();
        merged = { r, x0: px, x1: px + 1, func: bars.func[i], failed: bars.failed[i], i, n: 1 };
      }
      flush();
    });
    const selected = model.get("selected");
    for (const s of segments) {
      const x = LABEL_PX + s.x0, w = Math.max(1, s.x1 - s.x0), y = tops[s.r];
      ctx.fillStyle = colour(funcs[s.func]);
      ctx.fillRect(x, y, w, ROW_PX);
      if (s.failed) {
        ctx.fillStyle = FAILED; ctx.fillRect(x, y, w, 3);
        if (w > 3) { ctx.strokeStyle = FAILED; ctx.lineWidth = 1.5; ctx.strokeRect(x + 0.75, y + 0.75, w - 1.5, ROW_PX - 1.5); }
      }
      if (s.i >= 0 && bars.key[s.i] === selected) { ctx.strokeStyle = fg; ctx.lineWidth = 2; ctx.strokeRect(x - 1, y - 1, w + 2, ROW_PX + 2); }
    }
    ctx.fillStyle = fg;
    if (t >= start && t <= end) ctx.fillRect(LABEL_PX + (t - start) / msPerPx - 1, AXIS_PX, 1, height);
    canvas.dataset.barsInView = String([...counts.values()].reduce((a, b) => a + b, 0));
    canvas.dataset.failedInView = String(failedInView);
    const key = [...counts].map(([f, n]) => f + ":" + n).join("|") + "|" + failedInView;
    if (legend.dataset.key !== key) {
      legend.dataset.key = key;
      legend.textContent = "";
      const items = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([f, n]) => [colour(funcs[f]), `${shortFuncs[f]} ×${n}`]);
      if (failedInView) items.push([FAILED, `failed ×${failedInView}`]);
      for (const [c, text] of items) {
        const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = c;
        legend.append(sw, document.createTextNode(text));
      }
    }
    if (view.follow && rows.length) setTimeout(request, 100);
  }

  function hit(event) {
    const rect = canvas.getBoundingClientRect();
    const x = event.clientX - rect.left - LABEL_PX, y = event.clientY - rect.top;
    const r = tops.findIndex((top) => y >= top - 1 && y < top + ROW_PX + 1);
    if (r < 0 || x < 0) return null;
    let best = null, dist = 3;
    for (const s of segments) {
      if (s.r !== r) continue;
      const d = x < s.x0 ? s.x0 - x : x > s.x1 ? x - s.x1 : 0;
      if (d < dist) { best = s; dist = d; }
    }
    return best;
  }

  canvas.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, view: { ...view }, moved: false }; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => {
    if (drag) {
      const dx = e.clientX - drag.x;
      if (Math.abs(dx) > 3) drag.moved = true;
      if (!drag.moved) return;
      const timeWidth = canvas.clientWidth - LABEL_PX;
      const end = (drag.view.follow ? now() : drag.view.end) - dx * drag.view.span / timeWidth;
      view = end >= now() ? { end: now(), span: view.span, follow: true } : { end, span: view.span, follow: false };
      tip.style.display = "none";
      request();
      return;
    }
    const s = hit(e);
    if (!s) { tip.style.display = "none"; return; }
    if (s.i >= 0) {
      const i = s.i, endMs = bars.end[i] < 0 ? now() - t0 : bars.end[i], row = rows[bars.row[i]];
      tip.textContent = `${shortFuncs[bars.func[i]]} · ${((endMs - bars.start[i]) / 1000).toFixed(3)} s · node ${row.node_id.slice(0, 8)} · pid ${row.pid || "–"}${bars.failed[i] ? " · FAILED" : ""}`;
    } else {
      tip.textContent = `${s.n} tasks, mostly ${shortFuncs[s.func]}${s.failed ? ", some FAILED" : ""}`;
    }
    const rect = wrap.getBoundingClientRect();
    tip.style.display = "block";
    tip.style.left = Math.min(e.clientX - rect.left + 8, rect.width - 200) + "px";
    tip.style.top = (e.clientY - rect.top + 12) + "px";
  });
  canvas.addEventListener("pointerup", (e) => {
    const d = drag; drag = null;
    if (!d || d.moved) return;
    const s = hit(e);
    if (s && s.i >= 0) { model.set("selected", bars.key[s.i]); model.save_changes(); request(); }
  });
  canvas.addEventListener("pointerleave", () => { tip.style.display = "none"; });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const anchor = Math.min(1, Math.max(0, (e.clientX - rect.left - LABEL_PX) / (rect.width - LABEL_PX)));
    const [start] = windowNow();
    const span = Math.min(6 * 3600e3, Math.max(20, view.span * (e.deltaY < 0 ? 0.8 : 1.25)));
    if (view.follow) { view = { end: now(), span, follow: true }; }
    else {
      const end = start + anchor * view.span + (1 - anchor) * span;
      view = end >= now() ? { end: now(), span, follow: true } : { end, span, follow: false };
    }
    request();
  }, { passive: false });
  canvas.addEventListener("dblclick", () => { view = { ...view, follow: true }; request(); });

  model.on("change:layout_data", load);
  model.on("change:now_ms", () => { skew = model.get("now_ms") - Date.now(); });
  model.on("change:details", () => { info.innerHTML = model.get("details"); });
  load();
  info.innerHTML = model.get("details");
}

export default { render };
