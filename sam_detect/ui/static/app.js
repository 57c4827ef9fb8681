// sam-detect annotation UI: plain JavaScript, no build step.
// Talks to the JSON API under /api (see sam_detect/ui/server.py). Image coordinates are
// original pixels; masks arrive as {x, y, w, h, runs} (row-major runs over the box,
// background first).
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  config: null,
  images: [],
  current: null,        // relative path of the open image
  info: null,           // /api/image/info answer
  view: { frame: 0, channel: "", merge: "max" },
  contrast: { lo: 1, hi: 99.8 },
  anns: [],             // annotations of the open image (examples, negatives, detections)
  pending: null,        // candidate from a click/box, not yet accepted
  selected: null,       // id of a selected annotation
  labels: [],           // [{label, count, color}]
  filterLabel: null,
  img: null,            // HTMLImageElement of the rendering
  t: { s: 1, ox: 0, oy: 0 },
  busy: 0,
  showOverlay: true,
  drag: null,
  thresholdSet: false,  // the slider moved (or --threshold given): detect sends it; else each class's own
};
window.samDetect = S;  // for tests and the console

// ------------------------------------------------------------------ api -------------
async function api(method, url, body) {
  const opt = { method, headers: {} };
  if (body !== undefined) {
    opt.headers["Content-Type"] = "application/json";
    opt.body = JSON.stringify(body);
  }
  if (method !== "GET") opt.headers["X-SAM-Detect"] = "1";
  let r;
  try {
    r = await fetch(url, opt);
  } catch (e) {
    throw new Error(`the server does not answer (${e.message}); is sam-detect ui still running?`);
  }
  let data = null;
  const type = r.headers.get("content-type") || "";
  if (type.includes("application/json")) data = await r.json();
  if (!r.ok) throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
  return data;
}

function q(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
}

function viewBody() {
  const ch = S.view.channel;
  let channel = null;
  if (ch !== "" && ch !== null) channel = String(ch).includes(",") ? String(ch).split(",").map(Number) : Number(ch);
  return { path: S.current, frame: S.view.frame, channel, merge: S.view.merge };
}

function showError(e) {
  $("error-text").textContent = e instanceof Error ? e.message : String(e);
  $("error").hidden = false;
}
function clearError() { $("error").hidden = true; }

function status(text, busy = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("busy", busy);
}

async function work(label, fn) {
  S.busy++;
  status(label, true);
  clearError();
  try {
    return await fn();
  } catch (e) {
    showError(e);
    status("");
    return undefined;
  } finally {
    S.busy--;
    $("status").classList.toggle("busy", S.busy > 0);
  }
}

// ------------------------------------------------------------------ masks -----------
function decodeMask(m, color, fill = 0.45) {
  const n = m.w * m.h;
  const bits = new Uint8Array(n);
  let p = 0, on = false;
  for (const r of m.runs) {
    if (on) bits.fill(1, p, p + r);
    p += r;
    on = !on;
  }
  const c = document.createElement("canvas");
  c.width = Math.max(1, m.w); c.height = Math.max(1, m.h);
  if (n > 0) {
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(m.w, m.h);
    const a = Math.round(fill * 255);
    for (let y = 0; y < m.h; y++) {
      for (let x = 0; x < m.w; x++) {
        const i = y * m.w + x;
        if (!bits[i]) continue;
        const edge = x === 0 || y === 0 || x === m.w - 1 || y === m.h - 1 ||
          !bits[i - 1] || !bits[i + 1] || !bits[i - m.w] || !bits[i + m.w];
        const o = i * 4;
        img.data[o] = color[0]; img.data[o + 1] = color[1]; img.data[o + 2] = color[2];
        img.data[o + 3] = edge ? 255 : a;
      }
    }
    ctx.putImageData(img, 0, 0);
  }
  return { canvas: c, bits, ...m };
}

function hit(dm, x, y) {
  const ix = Math.floor(x) - dm.x, iy = Math.floor(y) - dm.y;
  return ix >= 0 && iy >= 0 && ix < dm.w && iy < dm.h && dm.bits[iy * dm.w + ix] === 1;
}

function prepare(ann) {
  const neg = ann.kind === "negative";
  const color = neg ? [150, 150, 150] : ann.color;
  ann._dm = decodeMask(ann.mask, color, ann.kind === "detection" ? 0.35 : 0.5);
  return ann;
}

function setAnnotations(list) {
  S.anns = (list || []).map(prepare);
  if (S.selected && !S.anns.find((a) => a.id === S.selected)) S.selected = null;
  renderSelection();
  draw();
}

// ------------------------------------------------------------------ canvas ----------
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

function resizeCanvas() {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(r.width * dpr));
  canvas.height = Math.max(1, Math.round(r.height * dpr));
  draw();
}

function fit() {
  if (!S.info) return;
  const r = canvas.getBoundingClientRect();
  const s = Math.min(r.width / S.info.width, r.height / S.info.height) * 0.98;
  S.t = { s, ox: (r.width - S.info.width * s) / 2, oy: (r.height - S.info.height * s) / 2 };
  draw();
}

function toImage(clientX, clientY) {
  const r = canvas.getBoundingClientRect();
  return [(clientX - r.left - S.t.ox) / S.t.s, (clientY - r.top - S.t.oy) / S.t.s];
}

// For tests: client coordinates of an image pixel.
S.imageToClient = (x, y) => {
  const r = canvas.getBoundingClientRect();
  return [r.left + S.t.ox + x * S.t.s, r.top + S.t.oy + y * S.t.s];
};

function draw() {
  const dpr = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  $("empty").hidden = !!S.img;
  if (!S.img || !S.info) return;
  const { s, ox, oy } = S.t;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.imageSmoothingEnabled = s < 1;
  ctx.drawImage(S.img, ox, oy, S.info.width * s, S.info.height * s);
  if (S.showOverlay) {
    for (const a of S.anns) {
      const d = a._dm;
      ctx.drawImage(d.canvas, ox + d.x * s, oy + d.y * s, d.w * s, d.h * s);
    }
    // captions only where they stay readable: few objects, or zoomed in
    const many = S.anns.length > 60 && s < 1.5;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    for (const a of S.anns) {
      if (many && a.id !== S.selected) continue;
      let text = a.kind === "negative" ? "✗ not" : a.label;
      if (a.kind === "example") text = "✓ " + text;
      if (a.kind === "detection" && a.confidence !== null) text += " " + a.confidence.toFixed(2);
      const x = ox + a.box[0] * s, y = oy + a.box[1] * s;
      ctx.lineWidth = 3; ctx.strokeStyle = "rgba(0,0,0,0.8)"; ctx.strokeText(text, x, y - 1);
      ctx.fillStyle = a.kind === "negative" ? "#bbb" : `rgb(${a.color.join(",")})`;
      ctx.fillText(text, x, y - 1);
    }
  }
  const sel = S.anns.find((a) => a.id === S.selected);
  if (sel) strokeBox(sel.box, "#ffffff", [5, 3]);
  if (S.pending) {
    const d = S.pending._dm;
    ctx.drawImage(d.canvas, ox + d.x * s, oy + d.y * s, d.w * s, d.h * s);
    strokeBox(S.pending.box, "#00e5ff", [6, 3]);
  }
  if (S.drag && S.drag.box) {
    const [x0, y0] = S.drag.start, [x1, y1] = S.drag.end;
    strokeBox([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)], "#ffd400", [4, 4]);
  }
}

function strokeBox(b, color, dash) {
  const { s, ox, oy } = S.t;
  ctx.save();
  ctx.setLineDash(dash);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = color;
  ctx.strokeRect(ox + b[0] * s, oy + b[1] * s, (b[2] - b[0]) * s, (b[3] - b[1]) * s);
  ctx.restore();
}

canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("wheel", (e) => {
  if (!S.info) return;
  e.preventDefault();
  const r = canvas.getBoundingClientRect();
  const mx = e.clientX - r.left, my = e.clientY - r.top;
  const k = Math.exp(-e.deltaY * 0.0015);
  const s = Math.min(40, Math.max(0.05, S.t.s * k));
  S.t.ox = mx - ((mx - S.t.ox) * s) / S.t.s;
  S.t.oy = my - ((my - S.t.oy) * s) / S.t.s;
  S.t.s = s;
  draw();
}, { passive: false });

canvas.addEventListener("mousedown", (e) => {
  if (!S.info) return;
  canvas.focus();
  if (e.button === 1 || e.button === 2 || e.altKey) {
    S.drag = { pan: true, x: e.clientX, y: e.clientY, ox: S.t.ox, oy: S.t.oy };
  } else if (e.button === 0) {
    const p = toImage(e.clientX, e.clientY);
    S.drag = { start: p, end: p, cx: e.clientX, cy: e.clientY, box: false };
  }
});
window.addEventListener("mousemove", (e) => {
  if (!S.drag) return;
  if (S.drag.pan) {
    S.t.ox = S.drag.ox + e.clientX - S.drag.x;
    S.t.oy = S.drag.oy + e.clientY - S.drag.y;
  } else {
    S.drag.end = toImage(e.clientX, e.clientY);
    if (Math.hypot(e.clientX - S.drag.cx, e.clientY - S.drag.cy) > 5) S.drag.box = true;
  }
  draw();
});
window.addEventListener("mouseup", (e) => {
  const d = S.drag;
  S.drag = null;
  if (!d || d.pan) return;
  const W = S.info.width, H = S.info.height;
  const clampX = (v) => Math.min(W, Math.max(0, v)), clampY = (v) => Math.min(H, Math.max(0, v));
  if (d.box) {
    const [x0, y0] = d.start, [x1, y1] = toImage(e.clientX, e.clientY);
    const box = [clampX(Math.min(x0, x1)), clampY(Math.min(y0, y1)), clampX(Math.max(x0, x1)), clampY(Math.max(y0, y1))];
    draw();
    if (box[2] - box[0] >= 2 && box[3] - box[1] >= 2) promptAt({ box });
    return;
  }
  const [x, y] = d.start;
  if (x < 0 || y < 0 || x >= W || y >= H) return;
  const under = S.anns.filter((a) => hit(a._dm, x, y));
  if (under.length && !e.shiftKey) {
    // the smallest object under the pointer; shift-click asks for a new mask instead
    under.sort((a, b) => a.area - b.area);
    select(under[0].id);
    return;
  }
  promptAt({ point: [Math.floor(x) + 0.5, Math.floor(y) + 0.5] });
});

// ------------------------------------------------------------------ actions ---------
async function promptAt(where) {
  if (!S.current) return;
  const t0 = performance.now();
  await work("finding the object…", async () => {
    // the label the object will likely get: a click then follows that class's examples
    const label = $("label").value || lastLabel();
    const r = await api("POST", "/api/prompt", { ...viewBody(), ...where, ...(label ? { label } : {}) });
    const c = r.candidate;
    S.pending = { ...c, _dm: decodeMask(c.mask, [0, 229, 255], 0.45) };
    S.selected = null;
    const ms = Math.round(performance.now() - t0);
    status(`mask of ${c.area} px in ${ms} ms (server ${Math.round(r.seconds * 1000)} ms)`);
    renderSelection();
    draw();
    const inp = $("label");
    if (!inp.value && S.labels.length) inp.value = lastLabel() || "";
    if (!inp.value) {
      inp.focus();  // the first label must be typed; later ones are prefilled (Enter, 1-9, N work at once)
    } else {
      canvas.focus();
    }
  });
}

function lastLabel() {
  return localStorage.getItem("samdetect.lastLabel") || (S.labels[0] && S.labels[0].label) || "";
}

function select(id) {
  S.selected = id;
  S.pending = null;
  const a = S.anns.find((x) => x.id === id);
  if (a) $("label").value = a.kind === "negative" ? "" : a.label;
  renderSelection();
  draw();
}

function discard() {
  S.pending = null;
  S.selected = null;
  renderSelection();
  draw();
}

async function accept(label) {
  label = (label ?? $("label").value).trim();
  const negative = label === S.config.negative_label;
  if (!label) { showError("type a label first (or pick one below)"); $("label").focus(); return; }
  let candidates = [];
  let mask;
  if (S.pending) {
    candidates = [S.pending.id];
  } else {
    const a = S.anns.find((x) => x.id === S.selected);
    if (!a) return;
    if (a.candidate) candidates = [a.candidate];
    else mask = a.mask;
  }
  const res = await work(negative ? "storing a negative example…" : `adding "${label}"…`, async () => {
    const body = { ...viewBody(), label, candidates };
    if (mask) body.mask = mask;
    return api("POST", "/api/examples", body);
  });
  if (!res) return;
  if (!negative) localStorage.setItem("samdetect.lastLabel", label);
  S.pending = null;
  S.selected = null;
  setAnnotations(res.annotations);
  const n = res.ids.length;
  // an object the library held already (an earlier session's accept) is not stored twice, as `add` does
  status(!n && res.already ? `already in ${res.library}: not added again`
    : negative ? "stored as a negative example"
    : res.relabelled ? `relabelled ${res.relabelled} as "${label}" in ${res.library}`
      : `added ${n} example${n === 1 ? "" : "s"} "${label}" to ${res.library}`);
  await refreshLibrary();
}

async function undo() {
  const res = await work("undoing…", () => api("POST", "/api/undo"));
  if (!res) return;
  // the undo steps span the session's libraries: say which one a step changed when it is not
  // the one shown (an undo there changed nothing in view)
  const shown = $("library-select").value;
  status(res.library && res.library !== shown ? `undone in library "${res.library}": ${res.undone}`
                                              : `undone: ${res.undone}`);
  await loadAnnotations();
  await refreshLibrary();
}

function detectBody() {
  const body = viewBody();
  if (S.thresholdSet) body.threshold = Number($("threshold").value);
  const border = $("border").value;
  if (border !== "auto") body.drop_border = border === "drop";
  return body;
}

async function detect() {
  if (!S.current) return;
  const t0 = performance.now();
  const res = await work("detecting…", () =>
    // each class's own calibrated threshold unless the slider was moved (S.thresholdSet); the
    // border's objects as the library's examples say unless the border menu says otherwise
    api("POST", "/api/detect", detectBody()));
  if (!res) return;
  S.pending = null;
  setAnnotations(res.annotations);
  const counts = {};
  for (const a of res.annotations) if (a.kind === "detection") counts[a.label] = (counts[a.label] || 0) + 1;
  const parts = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ") || "nothing";
  const ms = Math.round(performance.now() - t0);
  // what detect says of this image, as the command line's stderr
  const notes = (res.notes || []).length ? ` — ${res.notes.join("; ")}` : "";
  status(`detected ${parts} (${res.candidates} candidates) in ${ms} ms${notes}`);
}

async function deleteExample(id) {
  const res = await work("deleting…", () => api("DELETE", `/api/examples/${encodeURIComponent(id)}`));
  if (!res) return;
  status("example deleted");
  await loadAnnotations();
  await refreshLibrary();
}

async function exportAs(format) {
  $("export-menu").hidden = true;
  if (!S.current) return;
  await work("exporting…", async () => {
    const url = "/api/export?" + q({ path: S.current, frame: S.view.frame, channel: S.view.channel, merge: S.view.merge, format });
    const r = await fetch(url);
    if (!r.ok) {
      let msg = `${r.status} ${r.statusText}`;
      try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    const cd = r.headers.get("content-disposition") || "";
    const utf8 = /filename\*=UTF-8''([^;]+)/i.exec(cd);  // the name in any script; filename="...": in ASCII
    const name = (utf8 && decodeURIComponent(utf8[1])) || (/filename="([^"]+)"/.exec(cd) || [])[1] || `export.${format}`;
    const blob = await r.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    status(`exported ${name}`);
  });
}

// ------------------------------------------------------------------ side panel ------
function renderSelection() {
  const a = S.anns.find((x) => x.id === S.selected);
  const has = !!(S.pending || a);
  $("sel-body").hidden = !has;
  $("hint").hidden = has;
  $("example-actions").hidden = !(a && a.example_ids && a.example_ids.length);
  $("neighbours").innerHTML = "";
  $("negative").textContent = a && a.kind === "detection" ? "Wrong" : "Not this";
  $("accept").textContent = "Accept";
  if (S.pending) {
    $("sel-title").textContent = `New object · ${S.pending.area} px`;
    $("sel-details").textContent = `box ${S.pending.box.join(", ")}`;
  } else if (a) {
    const kind = { detection: "Detection", example: "Example", negative: "Negative example" }[a.kind];
    $("sel-title").textContent = a.kind === "negative" ? kind : `${kind} · ${a.label}`;
    const bits = [`${a.area} px`];
    if (a.confidence !== null) bits.push(`confidence ${a.confidence.toFixed(2)}`);
    if (a.similarity !== null && a.similarity !== undefined) bits.push(`similarity ${a.similarity.toFixed(2)}`);
    $("sel-details").textContent = bits.join(" · ");
    $("accept").textContent = a.kind === "detection" ? "Accept / relabel" : "Relabel";
    for (const n of a.neighbours || []) {
      const li = document.createElement("li");
      li.textContent = `${n.label === S.config.negative_label ? "not" : n.label}  ${n.score.toFixed(3)}`;
      $("neighbours").appendChild(li);
    }
  }
  $("accept").insertAdjacentHTML("beforeend", " <kbd>⏎</kbd>");
  $("negative").insertAdjacentHTML("beforeend", " <kbd>N</kbd>");
}

function renderChips() {
  const box = $("chips");
  box.innerHTML = "";
  const list = $("label-list");
  list.innerHTML = "";
  S.labels.filter((l) => l.label !== S.config.negative_label).forEach((l, i) => {
    const b = document.createElement("button");
    b.className = "chip";
    b.title = i < 9 ? `accept the selection as "${l.label}" (${i + 1})` : `accept as "${l.label}"`;
    b.innerHTML = `<span class="swatch"></span>${i < 9 ? `<kbd>${i + 1}</kbd>` : ""}`;
    b.querySelector(".swatch").style.background = `rgb(${l.color.join(",")})`;
    b.appendChild(document.createTextNode(l.label));
    b.addEventListener("click", () => {
      $("label").value = l.label;
      if (S.pending || S.selected) accept(l.label);
    });
    box.appendChild(b);
    const opt = document.createElement("option");
    opt.value = l.label;
    list.appendChild(opt);
  });
}

async function refreshLibrary() {
  const lib = await api("GET", "/api/library").catch((e) => { showError(e); return null; });
  if (!lib) return;
  S.labels = lib.labels;
  const sel = $("library-select");
  sel.innerHTML = "";
  for (const name of lib.libraries) {
    const o = document.createElement("option");
    o.value = o.textContent = name;
    o.selected = name === lib.library;
    sel.appendChild(o);
  }
  $("library-meta").textContent = lib.exists
    ? `${lib.count} example${lib.count === 1 ? "" : "s"} · ${lib.embedder} · ${lib.store}`
    : `empty: accept an object to start library "${lib.library}"`;
  const ul = $("label-counts");
  ul.innerHTML = "";
  for (const l of lib.labels) {
    const li = document.createElement("li");
    li.dataset.label = l.label;
    li.className = S.filterLabel === l.label ? "active" : "";
    li.innerHTML = `<span class="swatch"></span><span class="name"></span><span class="count"></span>`;
    li.querySelector(".swatch").style.background = l.label === S.config.negative_label ? "#999" : `rgb(${l.color.join(",")})`;
    li.querySelector(".name").textContent = l.label === S.config.negative_label ? "not (negatives)" : l.label;
    li.querySelector(".count").textContent = l.count;
    li.title = "show only these examples";
    li.addEventListener("click", () => {
      S.filterLabel = S.filterLabel === l.label ? null : l.label;
      refreshLibrary();
    });
    ul.appendChild(li);
  }
  const ex = $("examples");
  ex.innerHTML = "";
  for (const e of lib.examples) {
    if (S.filterLabel && e.label !== S.filterLabel) continue;
    const d = document.createElement("div");
    d.className = "example";
    d.dataset.id = e.id;
    d.title = `${e.label === S.config.negative_label ? "negative" : e.label}${e.source ? " · " + e.source : ""}`;
    const color = e.label === S.config.negative_label ? [150, 150, 150] : (lib.labels.find((l) => l.label === e.label) || { color: [128, 128, 128] }).color;
    d.style.borderColor = `rgb(${color.join(",")})`;
    if (e.thumbnail) {
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = e.label;
      img.src = `/api/examples/${encodeURIComponent(e.id)}/thumb`;
      d.appendChild(img);
    } else {
      const ph = document.createElement("div");
      ph.className = "ph";
      ph.textContent = e.label;
      d.appendChild(ph);
    }
    const del = document.createElement("button");
    del.textContent = "×";
    del.title = "delete this example from the library";
    del.addEventListener("click", (ev) => { ev.stopPropagation(); deleteExample(e.id); });
    d.appendChild(del);
    ex.appendChild(d);
  }
  if (lib.truncated) ex.insertAdjacentHTML("beforeend", `<div class="muted small">newest ${lib.examples.length} shown</div>`);
  renderChips();
}

// ------------------------------------------------------------------ images ----------
async function loadImages() {
  const r = await api("GET", "/api/images");
  S.images = r.images;
  renderImageList();
  $("image-count").textContent = `${r.images.length}${r.truncated ? "+" : ""}`;
}

function renderImageList() {
  const ul = $("images");
  ul.innerHTML = "";
  const f = $("image-filter").value.toLowerCase();
  for (const im of S.images) {
    if (f && !im.path.toLowerCase().includes(f)) continue;
    const li = document.createElement("li");
    li.dataset.path = im.path;
    li.title = im.path;
    li.className = im.path === S.current ? "current" : "";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = "";
    img.src = "/api/image/thumb?" + q({ path: im.path });
    const span = document.createElement("span");
    span.textContent = im.path;
    li.append(img, span);
    li.addEventListener("click", () => openImage(im.path));
    ul.appendChild(li);
  }
}

function loadImg(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = async () => {
      try {
        const r = await fetch(url);
        const d = await r.json();
        reject(new Error(d.error || `cannot show the image (${r.status})`));
      } catch (e) {
        reject(new Error("cannot show the image"));
      }
    };
    img.src = url;
  });
}

async function openImage(path) {
  const same = path === S.current;
  if (!same) S.view = { frame: 0, channel: "", merge: "max" };
  await work(`opening ${path}…`, async () => {
    const vq = { path, frame: S.view.frame, channel: S.view.channel, merge: S.view.merge };
    const info = await api("GET", "/api/image/info?" + q(vq));
    const img = await loadImg("/api/image/render?" + q({ ...vq, lo: S.contrast.lo, hi: S.contrast.hi }));
    const first = !S.info || !same || S.info.width !== info.width || S.info.height !== info.height;
    S.current = path;
    S.info = info;
    S.img = img;
    S.pending = null;
    S.selected = null;
    localStorage.setItem("samdetect.image", path);
    renderControls();
    if (first) fit();
    await loadAnnotations();
    renderImageList();
    const li = document.querySelector(`#images li.current`);
    if (li) li.scrollIntoView({ block: "nearest" });
    status(`${info.width}×${info.height} ${info.dtype}`);
  });
}

async function rerender() {
  if (!S.current) return;
  await work("rendering…", async () => {
    const vq = { path: S.current, frame: S.view.frame, channel: S.view.channel, merge: S.view.merge };
    S.img = await loadImg("/api/image/render?" + q({ ...vq, lo: S.contrast.lo, hi: S.contrast.hi }));
    draw();
    status("");
  });
}

async function loadAnnotations() {
  if (!S.current) return;
  const r = await api("GET", "/api/annotations?" + q({ path: S.current, frame: S.view.frame }));
  setAnnotations(r.annotations);
}

function renderControls() {
  const info = S.info;
  $("image-name").textContent = S.current;
  $("image-meta").textContent = `${info.width}×${info.height} · ${info.dtype} · ${info.source_axes} ${JSON.stringify(info.source_shape)}`;
  $("frame-box").hidden = info.n_frames <= 1;
  $("frame").max = String(info.n_frames - 1);
  $("frame").value = String(S.view.frame);
  $("frame-out").textContent = String(S.view.frame);
  const multi = info.n_channels > 1 && !info.rgb;
  $("channel-box").hidden = !multi;
  if (multi) {
    const sel = $("channel");
    sel.innerHTML = "";
    const opts = [["", "max", "all (max)"], ["", "mean", "all (mean)"]];
    if (info.n_channels <= 3) opts.push(["", "rgb", "all (colour)"]);
    for (let c = 0; c < info.n_channels; c++) opts.push([String(c), "max", `channel ${c}`]);
    for (const [ch, merge, text] of opts) {
      const o = document.createElement("option");
      o.value = `${ch}|${merge}`;
      o.textContent = text;
      o.selected = String(S.view.channel) === ch && S.view.merge === merge;
      sel.appendChild(o);
    }
  }
}

function step(delta) {
  if (!S.images.length) return;
  const i = S.images.findIndex((im) => im.path === S.current);
  const j = i < 0 ? 0 : Math.min(S.images.length - 1, Math.max(0, i + delta));
  if (S.images[j].path !== S.current) openImage(S.images[j].path);
}

// ------------------------------------------------------------------ wiring ----------
$("detect").addEventListener("click", detect);
$("undo").addEventListener("click", undo);
$("accept").addEventListener("click", () => accept());
$("negative").addEventListener("click", () => accept(S.config.negative_label));
$("discard").addEventListener("click", discard);
$("delete-example").addEventListener("click", async () => {
  const a = S.anns.find((x) => x.id === S.selected);
  if (!a) return;
  for (const id of a.example_ids) await deleteExample(id);
});
$("error-close").addEventListener("click", clearError);
$("prev").addEventListener("click", () => step(-1));
$("next").addEventListener("click", () => step(1));
$("fit").addEventListener("click", fit);
$("threshold").addEventListener("input", () => {
  S.thresholdSet = true;
  $("threshold-out").textContent = Number($("threshold").value).toFixed(2);
});
// a double click gives the threshold back to each class's own (calibrated from its examples)
$("threshold").addEventListener("dblclick", () => {
  S.thresholdSet = false;
  $("threshold-out").textContent = "auto";
});
$("show-overlay").addEventListener("change", () => { S.showOverlay = $("show-overlay").checked; draw(); });
$("image-filter").addEventListener("input", renderImageList);
$("export-btn").addEventListener("click", () => { $("export-menu").hidden = !$("export-menu").hidden; });
for (const b of document.querySelectorAll("#export-menu button")) b.addEventListener("click", () => exportAs(b.dataset.format));
$("help-btn").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
$("help-close").addEventListener("click", () => { $("help").hidden = true; });
$("frame").addEventListener("input", () => { $("frame-out").textContent = $("frame").value; });
$("frame").addEventListener("change", () => { S.view.frame = Number($("frame").value); openImage(S.current); });
$("channel").addEventListener("change", () => {
  const [ch, merge] = $("channel").value.split("|");
  S.view.channel = ch;
  S.view.merge = merge;
  openImage(S.current);
});
for (const id of ["lo", "hi"]) {
  $(id).addEventListener("change", () => {
    const lo = Number($("lo").value), hi = Number($("hi").value);
    if (!(lo >= 0 && hi <= 100 && lo < hi)) { showError("contrast: need 0 ≤ low < high ≤ 100"); return; }
    S.contrast = { lo, hi };
    rerender();
  });
}
$("contrast-reset").addEventListener("click", () => {
  $("lo").value = "1"; $("hi").value = "99.8";
  S.contrast = { lo: 1, hi: 99.8 };
  rerender();
});
$("library-select").addEventListener("change", () => switchLibrary($("library-select").value));
$("library-new").addEventListener("click", () => {
  const name = prompt("Library name (letters, digits, _ . -):");
  if (name) switchLibrary(name.trim());
});
$("upload").addEventListener("change", async () => {
  const file = $("upload").files[0];
  $("upload").value = "";
  if (!file) return;
  const limit = S.config.limits.max_upload_bytes;
  if (file.size > limit) { showError(`${file.name} is ${file.size.toLocaleString()} bytes; the limit is ${limit.toLocaleString()}`); return; }
  const res = await work(`uploading ${file.name}…`, async () => {
    const r = await fetch("/api/upload?" + q({ name: file.name }), {
      method: "POST", body: file, headers: { "X-SAM-Detect": "1", "Content-Type": "application/octet-stream" },
    });
    const d = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(d.error || `upload failed (${r.status})`);
    return d;
  });
  if (!res) return;
  await loadImages();
  await openImage(res.path);
});

async function switchLibrary(name) {
  const res = await work(`opening library ${name}…`, () => api("POST", "/api/library/switch", { name }));
  if (!res) { await refreshLibrary(); return; }
  S.filterLabel = null;
  await refreshLibrary();
  await loadAnnotations();
  status(`library ${res.library}`);
}

window.addEventListener("resize", resizeCanvas);
window.addEventListener("keydown", (e) => {
  const inInput = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (e.key === "Escape") { discard(); document.activeElement.blur(); $("help").hidden = true; return; }
  if (e.key === "Enter" && (S.pending || S.selected) && (!inInput || document.activeElement === $("label"))) {
    e.preventDefault();
    accept();
    return;
  }
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z" && !inInput) { e.preventDefault(); undo(); return; }
  if (inInput || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key.toLowerCase();
  if (k === "d") detect();
  else if (k === "n" && (S.pending || S.selected)) accept(S.config.negative_label);
  else if (k === "u") undo();
  else if (k === "arrowright" || k === "pagedown") step(1);
  else if (k === "arrowleft" || k === "pageup") step(-1);
  else if (k === "h") { $("show-overlay").checked = !$("show-overlay").checked; S.showOverlay = $("show-overlay").checked; draw(); }
  else if (k === "f") fit();
  else if (k === "?") $("help").hidden = !$("help").hidden;
  else if (/^[1-9]$/.test(k) && (S.pending || S.selected)) {
    const l = S.labels.filter((x) => x.label !== S.config.negative_label)[Number(k) - 1];
    if (l) accept(l.label);
  }
});

async function init() {
  resizeCanvas();
  try {
    S.config = await api("GET", "/api/config");
  } catch (e) {
    showError(e);
    return;
  }
  // unset (each class's own threshold): the slider rests at the one-example default and
  // detect sends no threshold ("auto") until it is moved
  const threshold = S.config.threshold ?? S.config.defaults.threshold;
  S.thresholdSet = S.config.threshold != null;
  $("threshold").value = String(threshold);
  $("threshold-out").textContent = S.thresholdSet ? Number(threshold).toFixed(2) : "auto";
  // `sam-detect ui --keep-border` / `--drop-border` set the menu's start
  $("border").value = S.config.drop_border == null ? "auto" : (S.config.drop_border ? "drop" : "keep");
  $("upload-label").hidden = !S.config.allow_upload;
  document.title = `sam-detect · ${S.config.root}`;
  try {
    await loadImages();
  } catch (e) {
    showError(e);
  }
  await refreshLibrary();
  const last = localStorage.getItem("samdetect.image");
  const start = S.images.find((im) => im.path === last) || S.images[0];
  if (start) await openImage(start.path);
  document.body.dataset.ready = "1";
}
init();
