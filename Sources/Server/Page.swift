/// The page `GET /` serves: plain HTML, CSS and JavaScript in one document, with no
/// external requests (no CDN, no web fonts), so that it works offline and cannot rot.
///
/// What it does, in the order a visitor meets it:
/// - a canvas to draw on (pointer events: mouse, pen, finger; `touch-action: none` so a
///   phone does not scroll while drawing), preprocessed as MNIST was: the stroke's
///   bounding box scaled into 20×20 keeping its aspect ratio (area-averaged), then placed
///   in 28×28 with its centre of mass at the centre;
/// - both models' probabilities as bars, updated while drawing (`/api/predict`);
/// - Fool: a target digit, a confidence, optionally ε around the start; the image and
///   the target's probability stream in step by step (`/api/fool` with server-sent
///   events), then both models' verdicts and a PNG download;
/// - Attack my drawing: method and ε; original, amplified perturbation and adversarial
///   side by side with each model's answer (`/api/attack`).
enum Page {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Deceive: fool a neural network</title>
<link rel="icon" href="data:,">
<style>
  :root { --ink: #1d2330; --muted: #5b6475; --line: #d8dce4; --accent: #c2410c; --good: #15803d; --bg: #f6f7f9; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
  header, main { max-width: 1120px; margin: 0 auto; padding: 0 16px; }
  header h1 { font-size: 1.6rem; margin: 20px 0 4px; }
  header p { margin: 0 0 12px; color: var(--muted); max-width: 70ch; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; margin: 14px 0; }
  section h2 { font-size: 1.15rem; margin: 0 0 8px; }
  .row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
  .note { color: var(--muted); font-size: 0.92rem; max-width: 70ch; }
  canvas.pixels { image-rendering: pixelated; image-rendering: crisp-edges; background: #000; border-radius: 4px; }
  #pad { width: min(280px, 86vw); height: min(280px, 86vw); background: #000; border-radius: 8px; touch-action: none; cursor: crosshair; display: block; }
  .seen { width: 112px; height: 112px; }
  .big { width: 140px; height: 140px; }
  figure { margin: 0; text-align: center; }
  figcaption { font-size: 0.85rem; color: var(--muted); margin-top: 4px; }
  .models { display: flex; flex-wrap: wrap; gap: 18px; }
  .model { min-width: 220px; flex: 1; }
  .model h3 { font-size: 1rem; margin: 0 0 4px; }
  .verdict { font-size: 2rem; font-weight: 700; line-height: 1; }
  .bars { display: grid; grid-template-columns: 1.2em 1fr 3.4em; gap: 2px 6px; font-size: 0.85rem; align-items: center; }
  .bar { height: 12px; background: #e7e9ee; border-radius: 3px; overflow: hidden; }
  .bar > span { display: block; height: 100%; background: #7c8596; }
  .bar.top > span { background: var(--accent); }
  button { font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid #9aa3b2; background: #fff; cursor: pointer; }
  button.primary { background: var(--ink); color: #fff; border-color: var(--ink); }
  button:disabled { opacity: 0.5; cursor: default; }
  label { font-size: 0.95rem; }
  select, input[type=number] { font: inherit; padding: 3px 6px; }
  .controls { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: center; margin-bottom: 10px; }
  .status { font-size: 0.95rem; min-height: 1.5em; }
  .status.error { color: #b91c1c; }
  .ok { color: var(--good); font-weight: 600; }
  .bad { color: #b91c1c; font-weight: 600; }
  svg#curve { width: min(360px, 90vw); height: 150px; background: #fafbfc; border: 1px solid var(--line); border-radius: 6px; }
  table.answers { border-collapse: collapse; font-size: 0.92rem; }
  table.answers td, table.answers th { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left; }
</style>
</head>
<body>
<header>
  <h1>Deceive: fool a neural network</h1>
  <p>Two convolutional networks trained on MNIST read your handwriting: a <b>standard</b> one and a
  <b>robust</b> one (trained against attacks). Draw a digit, then watch how little it takes to make a
  network confidently wrong — and whether the robust one holds.</p>
</header>
<main>
<section id="draw-section">
  <h2>1. Draw a digit</h2>
  <div class="row">
    <div>
      <canvas id="pad" width="280" height="280" aria-label="drawing area"></canvas>
      <div class="controls" style="margin-top:8px">
        <button id="clear">Clear</button>
        <span class="note">mouse, pen or finger</span>
      </div>
    </div>
    <figure>
      <canvas id="seen" class="pixels seen" width="28" height="28"></canvas>
      <figcaption>what the network sees<br>(28×28, centred like MNIST)</figcaption>
    </figure>
    <div class="models" id="live"></div>
  </div>
  <p class="note">Your stroke is cropped to its bounding box, scaled into 20×20 pixels keeping its
  shape, and placed in a 28×28 image with its centre of mass in the middle — the way the MNIST digits
  were prepared. That is why a small or off-centre drawing is still read well.</p>
</section>

<section id="fool-section">
  <h2>2. Fool it: turn noise into a "digit"</h2>
  <div class="controls">
    <label>target digit <select id="fool-target"></select></label>
    <label>confidence <input id="fool-confidence" type="number" min="0.5" max="0.9999" step="0.001" value="0.99"></label>
    <label>start <select id="fool-start"><option value="noise">random noise</option><option value="drawing">my drawing</option></select></label>
    <label><input id="fool-use-eps" type="checkbox"> stay within ε =</label>
    <input id="fool-eps" type="number" min="0.01" max="1" step="0.01" value="0.25" style="width:5em">
    <label>model <select id="fool-model"></select></label>
    <button id="fool" class="primary">Fool</button>
    <button id="fool-stop" disabled>Stop</button>
  </div>
  <div class="row">
    <figure><canvas id="fool-image" class="pixels big" width="28" height="28"></canvas><figcaption id="fool-caption">the image being optimised</figcaption></figure>
    <figure><svg id="curve" viewBox="0 0 360 150" preserveAspectRatio="none"></svg><figcaption>probability of the target, step by step</figcaption></figure>
    <div>
      <div class="status" id="fool-status">Press Fool: the network's weights stay frozen while the image itself is optimised.</div>
      <div id="fool-result" data-confidence="" data-reached=""></div>
      <table class="answers" id="fool-answers"></table>
      <p><a id="fool-download" download="fooled.png" hidden>download the image (PNG, 28×28)</a></p>
    </div>
  </div>
  <p class="note">Starting from random noise, gradient steps change the pixels until the chosen
  network gives the target digit at least the chosen confidence. To a person the result still looks
  like noise. With ε, no pixel may move more than ε from the start. The confidence shown is measured
  after the image is rounded to 8 bits, exactly as the PNG you download holds it.</p>
</section>

<section id="attack-section">
  <h2>3. Attack my drawing</h2>
  <div class="controls">
    <label>method <select id="attack-method">
      <option value="fgsm">FGSM (one step)</option>
      <option value="pgd" selected>PGD (40 steps)</option>
      <option value="deepfool">DeepFool (smallest L2)</option>
      <option value="cw">Carlini–Wagner (smallest L2)</option>
    </select></label>
    <label>ε <input id="attack-eps" type="range" min="0" max="0.5" step="0.01" value="0.15"> <span id="attack-eps-value">0.15</span></label>
    <label>attack the <select id="attack-model"></select> model</label>
    <button id="attack" class="primary">Attack</button>
  </div>
  <div class="row">
    <figure><canvas id="attack-original" class="pixels big" width="28" height="28"></canvas><figcaption>original</figcaption></figure>
    <figure><canvas id="attack-perturbation" class="pixels big" width="28" height="28"></canvas><figcaption>perturbation (amplified:<br>red brighter, blue darker)</figcaption></figure>
    <figure><canvas id="attack-adversarial" class="pixels big" width="28" height="28"></canvas><figcaption>adversarial</figcaption></figure>
    <div>
      <div class="status" id="attack-status">Draw a digit, then press Attack.</div>
      <table class="answers" id="attack-answers"></table>
    </div>
  </div>
  <p class="note">FGSM and PGD may change every pixel by at most ε (L∞). DeepFool and Carlini–Wagner
  search for the smallest change (in L2) that flips the answer, so they take no ε. An attack is made
  against the model you choose; the table shows how both models answer the result. The robust model
  was trained on PGD examples at ε = 0.3: at small ε it usually holds where the standard one falls.</p>
</section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let modelNames = ["standard"];
const pad = $("pad"), pctx = pad.getContext("2d");
let drawing = false, last = null, inked = false;

function clearPad() {
  pctx.fillStyle = "#000"; pctx.fillRect(0, 0, pad.width, pad.height);
  inked = false; showPixels($("seen"), new Float32Array(784)); renderLive(null);
}
function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height };
}
function stroke(a, b) {
  pctx.strokeStyle = "#fff"; pctx.lineWidth = 22; pctx.lineCap = "round"; pctx.lineJoin = "round";
  pctx.beginPath(); pctx.moveTo(a.x, a.y); pctx.lineTo(b.x, b.y); pctx.stroke();
  inked = true;
}
pad.addEventListener("pointerdown", (e) => {
  e.preventDefault(); pad.setPointerCapture(e.pointerId); drawing = true; last = point(e);
  stroke(last, { x: last.x + 0.01, y: last.y }); schedulePredict();
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return; e.preventDefault();
  const p = point(e); stroke(last, p); last = p; schedulePredict();
});
for (const type of ["pointerup", "pointercancel", "pointerleave"]) {
  pad.addEventListener(type, () => { if (drawing) { drawing = false; schedulePredict(); } });
}
$("clear").addEventListener("click", clearPad);

// MNIST's preprocessing: bounding box into 20×20 (aspect kept, area-averaged), centre of mass at the centre of 28×28.
function preprocess() {
  const W = pad.width, H = pad.height, data = pctx.getImageData(0, 0, W, H).data;
  const ink = new Float32Array(W * H);
  let x0 = W, y0 = H, x1 = -1, y1 = -1;
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const v = data[4 * (y * W + x)] / 255; ink[y * W + x] = v;
    if (v > 0.05) { if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y; }
  }
  const out = new Float32Array(784);
  if (x1 < 0) return out;
  const w = x1 - x0 + 1, h = y1 - y0 + 1, scale = 20 / Math.max(w, h);
  const tw = Math.max(1, Math.round(w * scale)), th = Math.max(1, Math.round(h * scale));
  const small = new Float32Array(tw * th);
  for (let ty = 0; ty < th; ty++) for (let tx = 0; tx < tw; tx++) {
    const sx0 = x0 + tx * w / tw, sx1 = x0 + (tx + 1) * w / tw, sy0 = y0 + ty * h / th, sy1 = y0 + (ty + 1) * h / th;
    let sum = 0, area = 0;
    for (let sy = Math.floor(sy0); sy < Math.ceil(sy1); sy++) for (let sx = Math.floor(sx0); sx < Math.ceil(sx1); sx++) {
      const a = (Math.min(sx + 1, sx1) - Math.max(sx, sx0)) * (Math.min(sy + 1, sy1) - Math.max(sy, sy0));
      if (a > 0) { sum += a * ink[sy * W + sx]; area += a; }
    }
    small[ty * tw + tx] = area > 0 ? sum / area : 0;
  }
  let mass = 0, mx = 0, my = 0;
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) { const v = small[y * tw + x]; mass += v; mx += v * (x + 0.5); my += v * (y + 0.5); }
  const ox = Math.round(14 - (mass > 0 ? mx / mass : tw / 2)), oy = Math.round(14 - (mass > 0 ? my / mass : th / 2));
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
    const X = x + ox, Y = y + oy;
    if (X >= 0 && X < 28 && Y >= 0 && Y < 28) out[Y * 28 + X] = Math.round(Math.min(1, small[y * tw + x]) * 255) / 255;
  }
  return out;
}

function showPixels(canvas, pixels) {
  const c = canvas.getContext("2d"), img = c.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(Math.max(0, Math.min(1, pixels[i])) * 255);
    img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255;
  }
  c.putImageData(img, 0, 0);
}
function showPerturbation(canvas, delta) {
  const c = canvas.getContext("2d"), img = c.createImageData(28, 28);
  let m = 1e-6; for (const d of delta) m = Math.max(m, Math.abs(d));
  for (let i = 0; i < 784; i++) {
    const t = delta[i] / m, v = 255 - Math.round(255 * Math.abs(t));
    img.data[4 * i] = t >= 0 ? 255 : v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = t >= 0 ? v : 255; img.data[4 * i + 3] = 255;
  }
  c.putImageData(img, 0, 0);
}

async function api(path, body, signal) {
  const res = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
  const answer = await res.json();
  if (!res.ok) throw new Error(answer.error || ("HTTP " + res.status));
  return answer;
}
const pct = (p) => (100 * p).toFixed(p > 0.999 && p < 1 ? 2 : 1) + "%";

function renderLive(answer) {
  const box = $("live"); box.innerHTML = "";
  for (const name of modelNames) {
    const v = answer && answer.models[name];
    const div = document.createElement("div"); div.className = "model";
    const d = v ? v.prediction : "";
    div.innerHTML = `<h3>${name} model says</h3><div class="verdict" id="prediction-${name}" data-prediction="${d}">${v ? d : "–"}</div>`;
    const bars = document.createElement("div"); bars.className = "bars";
    for (let k = 0; k < 10; k++) {
      const p = v ? v.probabilities[k] : 0;
      bars.insertAdjacentHTML("beforeend", `<span>${k}</span><div class="bar ${v && k === d ? "top" : ""}"><span style="width:${(100 * p).toFixed(1)}%"></span></div><span>${v ? pct(p) : ""}</span>`);
    }
    div.appendChild(bars); box.appendChild(div);
  }
}
let predicting = false, again = false, seen = new Float32Array(784);
async function schedulePredict() {
  if (predicting) { again = true; return; }
  predicting = true;
  try {
    seen = preprocess(); showPixels($("seen"), seen);
    if (inked) renderLive(await api("/api/predict", { image: Array.from(seen) }));
  } catch (e) { /* the next stroke tries again */ }
  predicting = false;
  if (again) { again = false; schedulePredict(); }
}

async function answersTable(table, rows) {
  table.innerHTML = "<tr><th></th>" + modelNames.map((n) => `<th>${n}</th>`).join("") + "</tr>";
  for (const [title, image] of rows) {
    const answer = await api("/api/predict", { image: Array.from(image) });
    table.insertAdjacentHTML("beforeend", `<tr><td>${title}</td>` + modelNames.map((n) => {
      const v = answer.models[n]; return `<td data-model="${n}" data-prediction="${v.prediction}"><b>${v.prediction}</b> (${pct(v.probabilities[v.prediction])})</td>`;
    }).join("") + "</tr>");
  }
}

// Fooling, streamed.
let foolAbort = null;
function drawCurve(points, goal) {
  const svg = $("curve"), W = 360, H = 150, n = Math.max(2, points.length);
  const y = (p) => (H - 8 - p * (H - 16)).toFixed(1);
  const path = points.map((p, i) => `${(i * (W - 10) / (n - 1) + 5).toFixed(1)},${y(p)}`).join(" ");
  svg.innerHTML = `<line x1="0" x2="${W}" y1="${y(goal)}" y2="${y(goal)}" stroke="#c2410c" stroke-dasharray="4 3"/>` +
    `<polyline fill="none" stroke="#1d2330" stroke-width="2" points="${path}"/>`;
}
$("fool").addEventListener("click", async () => {
  const target = Number($("fool-target").value), confidence = Number($("fool-confidence").value);
  const body = { target, confidence, model: $("fool-model").value };
  if ($("fool-start").value === "drawing") body.start = Array.from(preprocess());
  if ($("fool-use-eps").checked) body.within = Number($("fool-eps").value);
  const status = $("fool-status"), result = $("fool-result");
  status.className = "status"; status.textContent = "optimising…"; result.textContent = ""; result.dataset.confidence = ""; result.dataset.reached = "";
  $("fool-answers").innerHTML = ""; $("fool-download").hidden = true;
  $("fool").disabled = true; $("fool-stop").disabled = false;
  foolAbort = new AbortController();
  const curve = [];
  try {
    const res = await fetch("/api/fool", { method: "POST", headers: { "Content-Type": "application/json", "Accept": "text/event-stream" }, body: JSON.stringify(body), signal: foolAbort.signal });
    if (!res.ok) throw new Error((await res.json()).error || ("HTTP " + res.status));
    const reader = res.body.getReader(), decoder = new TextDecoder();
    let buffer = "", final = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const name = (chunk.match(/^event: (.*)$/m) || [])[1], data = JSON.parse((chunk.match(/^data: (.*)$/m) || [])[1] || "null");
        if (name === "step") {
          curve.push(data.probability); drawCurve(curve, confidence); showPixels($("fool-image"), data.image);
          status.textContent = `step ${data.step}: p(${target}) = ${pct(data.probability)}`;
        } else if (name === "result") { final = data; } else if (name === "error") { throw new Error(data.error); }
      }
    }
    if (!final) throw new Error("the stream ended without a result");
    showPixels($("fool-image"), final.image); curve.push(final.confidence); drawCurve(curve, confidence);
    result.dataset.confidence = final.confidence.toFixed(4); result.dataset.reached = String(final.reached);
    result.innerHTML = (final.reached ? `<span class="ok">fooled</span>` : `<span class="bad">not reached</span>`) +
      ` the ${body.model} model: p(${target}) = <b id="fool-final">${final.confidence.toFixed(4)}</b> after ${final.steps} steps (${final.seconds.toFixed(2)} s)`;
    status.textContent = final.stopped ? "stopped before the end" : "done";
    await answersTable($("fool-answers"), [["start", final.start], ["result", final.image]]);
    const link = $("fool-download"); link.href = $("fool-image").toDataURL("image/png"); link.download = `fooled-${target}.png`; link.hidden = false;
  } catch (e) {
    status.className = "status error"; status.textContent = e.name === "AbortError" ? "stopped" : e.message;
  } finally {
    $("fool").disabled = false; $("fool-stop").disabled = true; foolAbort = null;
  }
});
$("fool-stop").addEventListener("click", () => { if (foolAbort) foolAbort.abort(); });

// Attacks on the drawing.
const fixedBudget = (m) => m === "fgsm" || m === "pgd";
function syncEps() { $("attack-eps").disabled = !fixedBudget($("attack-method").value); $("attack-eps-value").textContent = $("attack-eps").disabled ? "—" : Number($("attack-eps").value).toFixed(2); }
$("attack-method").addEventListener("change", syncEps); $("attack-eps").addEventListener("input", syncEps);
$("attack").addEventListener("click", async () => {
  const status = $("attack-status"); status.className = "status";
  const image = preprocess();
  if (!inked) { status.className = "status error"; status.textContent = "draw a digit first"; return; }
  const method = $("attack-method").value, body = { image: Array.from(image), method, model: $("attack-model").value };
  if (fixedBudget(method)) body.eps = Number($("attack-eps").value);
  $("attack").disabled = true; status.textContent = "attacking…";
  try {
    const a = await api("/api/attack", body);
    showPixels($("attack-original"), image); showPixels($("attack-adversarial"), a.adversarial);
    showPerturbation($("attack-perturbation"), a.adversarial.map((x, i) => x - image[i]));
    status.innerHTML = (a.success ? `<span class="ok">the ${body.model} model now says ${a.prediction}</span>` : `<span class="bad">the ${body.model} model still says ${a.prediction}</span>`) +
      ` · L∞ ${a.linf.toFixed(3)} · L2 ${a.l2.toFixed(2)}`;
    status.dataset.success = String(a.success);
    await answersTable($("attack-answers"), [["original", image], ["adversarial", a.adversarial]]);
  } catch (e) { status.className = "status error"; status.textContent = e.message; }
  $("attack").disabled = false;
});

(async function start() {
  for (let d = 0; d < 10; d++) $("fool-target").insertAdjacentHTML("beforeend", `<option${d === 5 ? " selected" : ""}>${d}</option>`);
  try { modelNames = (await (await fetch("/api/health")).json()).models; } catch (e) {}
  for (const id of ["fool-model", "attack-model"]) $(id).innerHTML = modelNames.map((n) => `<option>${n}</option>`).join("");
  clearPad(); syncEps();
})();
</script>
</body>
</html>
"""#
}
