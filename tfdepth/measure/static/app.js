// tfdepth measuring page: plain JavaScript, no build step.
//
// The server predicts; this page keeps the float32 depth array it returns (metres, the picture's own
// size, row-major) and reads every hovered or clicked value from it, so the numbers shown are exactly
// those of `python -m tfdepth.predict` at the same pixel. 3-D points use the pinhole model with
// pixel centres at integer (u, v):  X = (u - cx) Z / fx,  Y = (v - cy) Z / fy,  Z = depth.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  const state = {
    info: null,
    picture: null,      // the /api/predict answer
    depth: null,        // Float32Array [H * W]
    gt: null,           // Float32Array [H * W] or null
    gtFile: null,       // the File the ground truth came from (re-sent when the scale changes)
    pendingGt: null,    // a depth file chosen before its picture was ready
    points: [],         // [{u, v}] clicked points (at most 2)
    hover: null,        // {u, v}
    busy: 0,
    colorMode: "own",   // "own": each map in its own colour range with its own bar; "shared": one range
  };

  // ---------------------------------------------------------------------------------------------
  // Messages
  // ---------------------------------------------------------------------------------------------

  function showError(text) {
    const box = $("message");
    box.textContent = text;
    box.hidden = false;
  }

  function clearError() {
    $("message").hidden = true;
    $("message").textContent = "";
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function fmt(value, digits) {
    return Number.isFinite(value) ? value.toFixed(digits) : "—";
  }

  function megabytes(bytes) {
    return (bytes / 1e6).toFixed(1) + " MB";
  }

  // ---------------------------------------------------------------------------------------------
  // Server calls
  // ---------------------------------------------------------------------------------------------

  let inFlight = 0;  // requests under way, exposed as <body data-in-flight> (tests wait for 0)

  async function api(url, options) {
    inFlight += 1;
    document.body.dataset.inFlight = String(inFlight);
    try {
      return await request(url, options);
    } finally {
      inFlight -= 1;
      document.body.dataset.inFlight = String(inFlight);
    }
  }

  async function request(url, options) {
    let response;
    try {
      response = await fetch(url, options || {});
    } catch (err) {
      throw new Error("The server did not answer (is python -m tfdepth.measure still running?): " + err.message);
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok) {
      let text = "HTTP " + response.status;
      if (type.startsWith("application/json")) {
        const body = await response.json();
        text = body.error || text;
      }
      const error = new Error(text);
      error.status = response.status;
      throw error;
    }
    if (type.startsWith("application/json")) return response.json();
    return response.arrayBuffer();
  }

  function upload(url, file) {
    return api(url, {
      method: "POST",
      body: file,
      headers: { "Content-Type": "application/octet-stream", "X-File-Name": encodeURIComponent(file.name) },
    });
  }

  function checkSize(file) {
    const limit = state.info ? state.info.max_upload_bytes : Infinity;
    if (file.size > limit) {
      throw new Error(file.name + ": " + megabytes(file.size) + " is over the upload limit of " + megabytes(limit) +
        " (start the server with --max-upload-mb to change it)");
    }
    if (file.size === 0) throw new Error(file.name + ": empty file");
  }

  function loadImage(img, url) {
    return new Promise((resolve, reject) => {
      img.onload = () => resolve();
      img.onerror = () => reject(new Error("could not load " + url));
      img.src = url;
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Start-up
  // ---------------------------------------------------------------------------------------------

  async function init() {
    wireEvents();
    try {
      state.info = await api("/api/info");
    } catch (err) {
      showError(err.message);
      return;
    }
    const info = state.info;
    $("model-info").textContent = "Model: " + info.model + (info.model_path ? " — " + info.model_path : "");
    $("limit-note").textContent = "JPEG, PNG, BMP, TIFF, WebP · up to " + megabytes(info.max_upload_bytes);
    if (!info.model_has_intrinsics) {
      $("camera-model").disabled = true;
      $("camera-model-label").classList.add("disabled");
      $("camera-model-label").title = "the model's training data did not record its camera";
    }
    $("fov").value = String(info.fov_deg || info.default_fov_deg);
    let mode = info.model_has_intrinsics ? "model" : "fov";
    if (info.fov_deg) mode = "fov";
    if (info.intrinsics) {
      mode = "given";
      ["fx", "fy", "cx", "cy"].forEach((k, i) => { $(k).value = String(info.intrinsics[i]); });
    }
    $("camera-" + mode).checked = true;
    drawColorbarGradient();
    updateIntrinsics();
  }

  function wireEvents() {
    $("image-input").addEventListener("change", (e) => {
      const file = e.target.files[0];
      e.target.value = "";
      if (file) openPicture(file, null);
    });
    $("gt-input").addEventListener("change", (e) => {
      const file = e.target.files[0];
      e.target.value = "";
      if (file) chooseGroundTruth(file);
    });
    $("gt-scale").addEventListener("change", () => { if (state.gtFile && state.picture) sendGroundTruth(state.gtFile); });
    $("gt-scale-preset").addEventListener("change", (e) => {
      const value = e.target.value;
      e.target.value = "";
      if (!value) return;
      $("gt-scale").value = value;
      if (value === "256") $("protocol").value = "kitti";
      if (value === "1000") $("protocol").value = "nyu";
      if (state.gtFile && state.picture) sendGroundTruth(state.gtFile);
    });
    $("allow-8bit").addEventListener("change", () => { if (state.gtFile && state.picture) sendGroundTruth(state.gtFile); });
    $("protocol").addEventListener("change", refreshMetrics);
    $("crop").addEventListener("change", refreshMetrics);
    document.querySelectorAll("input[name=camera]").forEach((el) => el.addEventListener("change", updateIntrinsics));
    ["fov", "fx", "fy", "cx", "cy"].forEach((id) => {
      $(id).addEventListener("input", () => {
        if (id !== "fov") $("camera-given").checked = true;
        else $("camera-fov").checked = true;
        updateIntrinsics();
      });
    });
    $("clear-points").addEventListener("click", () => { state.points = []; updatePoints(); redrawOverlays(); });
    document.querySelectorAll("input[name=color-range]").forEach((el) => el.addEventListener("change", () => {
      if (el.checked) setColorMode(el.value);
    }));

    document.querySelectorAll(".stage").forEach((stage) => {
      stage.addEventListener("mousemove", (e) => onHover(stage, e));
      stage.addEventListener("mouseleave", () => { state.hover = null; redrawOverlays(); });
      stage.addEventListener("click", (e) => onClick(stage, e));
    });
    window.addEventListener("resize", redrawOverlays);

    // Drag and drop anywhere on the page.
    const zone = $("drop-zone");
    document.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("hot"); });
    document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) zone.classList.remove("hot"); });
    document.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("hot");
      onDrop(Array.from(e.dataTransfer.files || []));
    });
  }

  // A depth file: .npy, or a single-channel (greyscale) PNG of 16 bits (or 8 bits named like depth).
  async function isDepthFile(file) {
    const name = file.name.toLowerCase();
    if (name.endsWith(".npy")) return true;
    if (!name.endsWith(".png")) return false;
    const head = new Uint8Array(await file.slice(0, 26).arrayBuffer());
    if (head.length < 26) return false;
    const bitDepth = head[24], colorType = head[25];
    if (colorType !== 0) return false;
    return bitDepth === 16 || /depth|gt|ground/.test(name);
  }

  async function onDrop(files) {
    if (!files.length) return;
    let picture = null, depth = null;
    for (const file of files) {
      if (await isDepthFile(file)) { if (!depth) depth = file; } else if (!picture) picture = file;
    }
    if (picture) openPicture(picture, depth);
    else if (depth) chooseGroundTruth(depth);
  }

  // ---------------------------------------------------------------------------------------------
  // Picture and prediction
  // ---------------------------------------------------------------------------------------------

  async function openPicture(file, gtFile) {
    clearError();
    try {
      checkSize(file);
    } catch (err) {
      showError(err.message);
      return;
    }
    if (gtFile) state.pendingGt = gtFile;
    state.busy += 1;
    document.body.classList.add("busy");
    setStatus("Predicting depth of " + file.name + "…");
    try {
      const picture = await upload("/api/predict", file);
      const buffer = await api(picture.depth_url);
      const depth = new Float32Array(buffer);
      if (depth.length !== picture.width * picture.height) {
        throw new Error("depth array has " + depth.length + " values for " + picture.width + "x" + picture.height);
      }
      await Promise.all([loadImage($("image-view"), picture.image_url),
        loadImage($("depth-view"), picture.colors[state.colorMode].pred.url)]);
      state.picture = picture;
      state.depth = depth;
      state.gt = null;
      state.gtFile = null;
      state.points = [];
      state.hover = null;
      $("gt-figure").hidden = true;
      $("range-control").hidden = true;
      $("views").classList.remove("with-gt");
      $("summary").hidden = true;
      $("gt-name").textContent = "none";
      $("image-name").textContent = picture.name + " · " + picture.width + "×" + picture.height;
      $("viewer").hidden = false;
      $("views").classList.toggle("wide", picture.width > 2 * picture.height);
      $("views").classList.toggle("pixelated", picture.width < 320);
      updateColorbars();
      updateIntrinsics();
      updatePoints();
      updateHover();
      setStatus(picture.name + ": " + picture.width + "×" + picture.height + " px, predicted depth " +
        fmt(picture.depth_min_m, 2) + " – " + fmt(picture.depth_max_m, 2) + " m (median " +
        fmt(picture.depth_median_m, 2) + " m) in " + fmt(picture.predict_seconds, 2) + " s.");
      document.body.dataset.pictureId = picture.id;
      requestAnimationFrame(redrawOverlays);
      if (state.pendingGt) {
        const pending = state.pendingGt;
        state.pendingGt = null;
        await sendGroundTruth(pending);
      }
    } catch (err) {
      showError(err.message);
      setStatus(state.picture ? "Still showing " + state.picture.name + "." : "No picture yet.");
    } finally {
      state.busy -= 1;
      if (!state.busy) document.body.classList.remove("busy");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Ground truth and scores
  // ---------------------------------------------------------------------------------------------

  function chooseGroundTruth(file) {
    clearError();
    if (!state.picture || state.busy) {
      state.pendingGt = file;
      $("gt-name").textContent = file.name + " (waiting for the picture)";
      return;
    }
    sendGroundTruth(file);
  }

  function metricsQuery() {
    const params = new URLSearchParams({ id: state.picture.id, protocol: $("protocol").value });
    if ($("crop").value) params.set("crop", $("crop").value);
    return params;
  }

  // Scores arrive asynchronously: only the answer to the latest request is shown.
  let metricsTicket = 0;

  async function sendGroundTruth(file) {
    clearError();
    const ticket = ++metricsTicket;
    try {
      checkSize(file);
    } catch (err) {
      showError(err.message);
      return;
    }
    const params = metricsQuery();
    params.set("scale", $("gt-scale").value.trim());
    if ($("allow-8bit").checked) params.set("allow_8bit", "1");
    $("gt-name").textContent = file.name + " (reading…)";
    try {
      const result = await upload("/api/gt?" + params.toString(), file);
      const buffer = await api(result.gt_url);
      const colors = result.colors[state.colorMode];
      await Promise.all([loadImage($("gt-view"), colors.gt.url), loadImage($("depth-view"), colors.pred.url)]);
      state.picture.colors = result.colors;
      state.gt = new Float32Array(buffer);
      state.gtFile = file;
      $("gt-name").textContent = file.name + " · " + fmt(100 * result.gt_valid_fraction, 1) + "% of pixels have a value";
      $("gt-figure").hidden = false;
      $("range-control").hidden = false;
      $("views").classList.add("with-gt");
      updateColorbars();
      if (ticket === metricsTicket) showMetrics(result);
      else refreshMetrics();  // the protocol changed while the file was read: score the new ground truth
      updateHover();
      requestAnimationFrame(redrawOverlays);
    } catch (err) {
      $("gt-name").textContent = state.gt ? "(kept the previous ground truth)" : "none";
      showError(err.message);
    }
  }

  async function refreshMetrics() {
    if (!state.picture || !state.gt) return;
    clearError();
    const ticket = ++metricsTicket;
    try {
      const result = await api("/api/metrics?" + metricsQuery().toString());
      if (ticket === metricsTicket) showMetrics(result);
    } catch (err) {
      showError(err.message);
    }
  }

  function cell(value, digits, key) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "—" : Number(value).toFixed(digits);
    if (value !== null && value !== undefined) td.dataset.value = String(value);
    if (key) td.dataset.metric = key;
    return td;
  }

  function showMetrics(result) {
    const p = result.protocol;
    $("summary-protocol").textContent = "· protocol " + p.name + ", crop " + p.crop + ", valid " +
      p.min_depth_m + " < gt < " + (p.max_depth_m === null ? "∞" : p.max_depth_m) + " m";
    $("summary").dataset.protocol = p.name;
    $("summary").dataset.crop = p.crop;
    const body = $("summary-body");
    body.textContent = "";
    const rows = [Object.assign({ label: "all", range: "all" }, result.overall)].concat(result.per_range);
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.range = row.range;
      if (row.range === "all") tr.className = "overall";
      const th = document.createElement("th");
      th.textContent = row.label;
      tr.appendChild(th);
      tr.appendChild(cell(row.abs_rel, 4, "abs_rel"));
      tr.appendChild(cell(row.rmse, 3, "rmse"));
      tr.appendChild(cell(row.d1, 3, "d1"));
      tr.appendChild(cell(row.mae, 3, "mae"));
      const count = document.createElement("td");
      count.textContent = String(row.pixels);
      count.dataset.metric = "pixels";
      count.dataset.value = String(row.pixels);
      tr.appendChild(count);
      body.appendChild(tr);
    }
    $("summary-message").hidden = !result.message;
    $("summary-message").textContent = result.message || "";
    $("summary").hidden = false;
  }

  // ---------------------------------------------------------------------------------------------
  // Intrinsics
  // ---------------------------------------------------------------------------------------------

  // {fx, fy, cx, cy, source, text} for the current picture, or {error}.
  function currentIntrinsics() {
    const pic = state.picture;
    const mode = (document.querySelector("input[name=camera]:checked") || {}).value || "fov";
    if (!pic) return { error: "Open a picture to see the intrinsics used." };
    const size = pic.width + "×" + pic.height;
    if (mode === "model") {
      const k = pic.model_intrinsics;
      if (!k) return { error: "The model does not know its training camera; choose a field of view or give fx, fy, cx, cy." };
      let text = "Using the model's training camera, scaled to this " + size + " picture";
      // Real cameras have square pixels: fx far from fy means this picture's shape differs from the
      // training pictures' and the stretched camera is a poor guess.
      if (Math.abs(k[0] / k[1] - 1) > 0.1) {
        text += " (stretched to this shape its pixels are not square, fx/fy = " + (k[0] / k[1]).toFixed(2) +
          ": a field of view or the real fx, fy, cx, cy will likely measure better)";
      }
      return { fx: k[0], fy: k[1], cx: k[2], cy: k[3], source: "model", text: text };
    }
    if (mode === "given") {
      const v = ["fx", "fy", "cx", "cy"].map((id) => Number($(id).value));
      const blank = ["fx", "fy", "cx", "cy"].some((id) => $(id).value.trim() === "");
      if (blank || !v.every(Number.isFinite) || v[0] <= 0 || v[1] <= 0) {
        return { error: "Give fx, fy, cx, cy in pixels of this picture (focal lengths > 0)." };
      }
      return { fx: v[0], fy: v[1], cx: v[2], cy: v[3], source: "given", text: "Using the given intrinsics" };
    }
    const fov = Number($("fov").value);
    if (!(fov > 0 && fov < 180)) return { error: "The field of view must be between 0 and 180 degrees." };
    // As tfdepth.geometry.Intrinsics.from_fov: square pixels, principal point at the centre.
    const focal = 0.5 * pic.width / Math.tan((fov * Math.PI / 180) / 2);
    return { fx: focal, fy: focal, cx: (pic.width - 1) / 2, cy: (pic.height - 1) / 2, source: "fov", fov: fov,
      text: "Assuming " + fov + "° horizontal field of view (a guess — give the camera's fx, fy, cx, cy for true distances)" };
  }

  function updateIntrinsics() {
    const k = currentIntrinsics();
    const el = $("intrinsics-statement");
    for (const key of ["fx", "fy", "cx", "cy", "source", "fov"]) delete el.dataset[key];
    el.classList.toggle("bad", Boolean(k.error && state.picture));
    $("distance-camera").textContent = k.error ? k.error :
      (k.source === "fov" ? "Assuming " + k.fov + "° horizontal field of view (a guess)." :
        k.source === "given" ? "With the given intrinsics." : "With the model's training camera.") +
      " Change it under Camera.";
    if (k.error) {
      el.textContent = k.error;
    } else {
      el.textContent = k.text + ": fx = " + fmt(k.fx, 2) + ", fy = " + fmt(k.fy, 2) + ", cx = " + fmt(k.cx, 2) +
        ", cy = " + fmt(k.cy, 2) + " px.";
      // The camera the server predicted the depth with (tfdepth.serving.batch.IntrinsicsChooser, as
      // the predict command; a canonical-camera model's depth depends on it).
      const cam = state.picture && state.picture.camera;
      if (cam) el.textContent += " Depth predicted with the camera from " + cam.source + " (fx = " +
        fmt(cam.intrinsics[0], 2) + " px).";
      el.dataset.fx = String(k.fx);
      el.dataset.fy = String(k.fy);
      el.dataset.cx = String(k.cx);
      el.dataset.cy = String(k.cy);
      el.dataset.source = k.source;
      if (k.fov) el.dataset.fov = String(k.fov);
    }
    updatePoints();
  }

  // ---------------------------------------------------------------------------------------------
  // Pointer: hover and clicks
  // ---------------------------------------------------------------------------------------------

  function pixelAt(stage, event) {
    const pic = state.picture;
    if (!pic) return null;
    const rect = stage.querySelector("img").getBoundingClientRect();
    if (rect.width <= 0 || rect.height <= 0) return null;
    const x = (event.clientX - rect.left) / rect.width;
    const y = (event.clientY - rect.top) / rect.height;
    if (x < 0 || y < 0 || x >= 1 || y >= 1) return null;
    return {
      u: Math.min(pic.width - 1, Math.max(0, Math.floor(x * pic.width))),
      v: Math.min(pic.height - 1, Math.max(0, Math.floor(y * pic.height))),
    };
  }

  function depthAt(p) {
    return state.depth[p.v * state.picture.width + p.u];
  }

  function gtAt(p) {
    return state.gt ? state.gt[p.v * state.picture.width + p.u] : NaN;
  }

  function onHover(stage, event) {
    state.hover = pixelAt(stage, event);
    updateHover();
    redrawOverlays();
  }

  function onClick(stage, event) {
    const p = pixelAt(stage, event);
    if (!p) return;
    if (state.points.length >= 2) state.points = [];
    state.points.push(p);
    updatePoints();
    redrawOverlays();
  }

  function setValue(id, text, value) {
    const el = $(id);
    el.textContent = text;
    if (value === undefined || value === null || !Number.isFinite(value)) delete el.dataset.value;
    else el.dataset.value = String(value);
  }

  function updateHover() {
    const p = state.hover;
    const pixel = $("hover-pixel");
    if (!p || !state.depth) {
      pixel.textContent = "—";
      delete pixel.dataset.u;
      delete pixel.dataset.v;
      setValue("hover-depth", "—");
      setValue("hover-gt", state.gt ? "—" : "no ground truth");
      setValue("hover-relerr", "—");
      return;
    }
    pixel.textContent = "(" + p.u + ", " + p.v + ")";
    pixel.dataset.u = String(p.u);
    pixel.dataset.v = String(p.v);
    const d = depthAt(p);
    setValue("hover-depth", Number.isFinite(d) && d > 0 ? d.toFixed(4) + " m" : "no depth", d);
    if (!state.gt) {
      setValue("hover-gt", "no ground truth");
      setValue("hover-relerr", "—");
      return;
    }
    const g = gtAt(p);
    if (!(Number.isFinite(g) && g > 0)) {
      setValue("hover-gt", "no value here");
      setValue("hover-relerr", "—");
      return;
    }
    setValue("hover-gt", g.toFixed(4) + " m", g);
    const rel = Math.abs(d - g) / g;
    setValue("hover-relerr", (100 * rel).toFixed(2) + " %  (" + (d - g >= 0 ? "+" : "−") +
      Math.abs(d - g).toFixed(3) + " m)", rel);
  }

  function backproject(p, k) {
    const z = depthAt(p);
    if (!(Number.isFinite(z) && z > 0)) return null;
    return [(p.u - k.cx) * z / k.fx, (p.v - k.cy) * z / k.fy, z];
  }

  function describePoint(id, p, k) {
    const el = $(id);
    for (const key of ["u", "v", "x", "y", "z"]) delete el.dataset[key];
    if (!p) { el.textContent = "—"; return null; }
    el.dataset.u = String(p.u);
    el.dataset.v = String(p.v);
    if (!state.depth) { el.textContent = "(" + p.u + ", " + p.v + ")"; return null; }
    const point = k.error ? null : backproject(p, k);
    if (!point) {
      const d = depthAt(p);
      el.textContent = "(" + p.u + ", " + p.v + ") · " + (Number.isFinite(d) && d > 0 ? d.toFixed(3) + " m deep" : "no depth");
      return null;
    }
    el.dataset.x = String(point[0]);
    el.dataset.y = String(point[1]);
    el.dataset.z = String(point[2]);
    el.textContent = "(" + p.u + ", " + p.v + ") → x " + point[0].toFixed(3) + ", y " + point[1].toFixed(3) +
      ", z " + point[2].toFixed(3) + " m";
    return point;
  }

  function updatePoints() {
    const k = currentIntrinsics();
    const a = describePoint("point-a", state.points[0], k);
    const b = describePoint("point-b", state.points[1], k);
    if (a && b) {
      const dist = Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
      setValue("distance", dist.toFixed(4) + " m", dist);
    } else if (state.points.length === 2 && k.error) {
      setValue("distance", "needs intrinsics");
    } else if (state.points.length === 2) {
      setValue("distance", "a point has no depth");
    } else {
      setValue("distance", state.points.length === 1 ? "click a second point" : "—");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Drawing: overlays and the colour bar
  // ---------------------------------------------------------------------------------------------

  function redrawOverlays() {
    const pic = state.picture;
    document.querySelectorAll(".stage").forEach((stage) => {
      const img = stage.querySelector("img");
      const canvas = stage.querySelector("canvas");
      const rect = img.getBoundingClientRect();
      const ratio = window.devicePixelRatio || 1;
      const width = Math.max(1, Math.round(rect.width * ratio));
      const height = Math.max(1, Math.round(rect.height * ratio));
      if (canvas.width !== width || canvas.height !== height) {
        canvas.width = width;
        canvas.height = height;
      }
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, width, height);
      if (!pic || rect.width === 0) return;
      const sx = width / pic.width, sy = height / pic.height;
      const centre = (p) => [(p.u + 0.5) * sx, (p.v + 0.5) * sy];
      if (state.hover) {
        const [x, y] = centre(state.hover);
        ctx.strokeStyle = "rgba(255,255,255,0.85)";
        ctx.lineWidth = ratio;
        ctx.setLineDash([4 * ratio, 4 * ratio]);
        ctx.beginPath();
        ctx.moveTo(0, y); ctx.lineTo(width, y);
        ctx.moveTo(x, 0); ctx.lineTo(x, height);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      if (state.points.length === 2) {
        const [x0, y0] = centre(state.points[0]);
        const [x1, y1] = centre(state.points[1]);
        ctx.strokeStyle = "#ffffff";
        ctx.lineWidth = 3 * ratio;
        ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
        ctx.strokeStyle = "#111111";
        ctx.lineWidth = 1.5 * ratio;
        ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
      }
      state.points.forEach((p, i) => {
        const [x, y] = centre(p);
        ctx.fillStyle = i === 0 ? "#ff2d95" : "#18c8ff";
        ctx.strokeStyle = "#ffffff";
        ctx.lineWidth = 2 * ratio;
        ctx.beginPath();
        ctx.arc(x, y, 5 * ratio, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      });
    });
  }

  function drawColorbarGradient() {
    const stops = state.info.colormap.stops;  // near (index 0) ... far
    document.querySelectorAll(".colorbar-canvas").forEach((canvas) => {
      canvas.height = stops.length;
      const ctx = canvas.getContext("2d");
      stops.forEach((rgb, i) => {
        ctx.fillStyle = "rgb(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + ")";
        ctx.fillRect(0, stops.length - 1 - i, 1, 1);  // far at the top, as the predict command draws it
      });
    });
  }

  // Colour range: "own" draws each map in its own range, each with its bar in metres (a flat prediction
  // keeps its structure, and its bar's numbers show how flat it is); "shared" draws both in one range
  // (equal colours are equal metres) with one bar beside both.
  async function setColorMode(mode) {
    state.colorMode = mode;
    const pic = state.picture;
    if (!pic) return;
    const colors = pic.colors[mode];
    try {
      const loads = [loadImage($("depth-view"), colors.pred.url)];
      if (state.gt && colors.gt) loads.push(loadImage($("gt-view"), colors.gt.url));
      await Promise.all(loads);
    } catch (err) {
      showError(err.message);
    }
    if (state.colorMode === mode) updateColorbars();  // else a later choice draws its own
  }

  function updateColorbars() {
    const pic = state.picture;
    const mode = state.colorMode;
    const colors = pic.colors[mode];
    const withGt = Boolean(state.gt && colors.gt);
    const views = $("views");
    views.classList.toggle("shared", mode === "shared");
    views.classList.toggle("own", mode !== "shared");
    document.body.dataset.colorRange = mode;
    const pred = colors.pred;
    fillColorbar("colorbar-labels", pred.min_m, pred.max_m);
    $("colorbar-title").textContent = !withGt ? "metres" : mode === "shared" ? "metres, both maps" : "prediction, metres";
    $("colorbar-gt").hidden = !(withGt && mode !== "shared");
    if (withGt) fillColorbar("colorbar-gt-labels", colors.gt.min_m, colors.gt.max_m);
    $("range-hint").textContent = mode === "shared" ?
      "one range for both maps: equal colours are equal metres" :
      "each map spans its own depths: read its bar for metres";
  }

  function fillColorbar(id, low, high) {
    const labels = $(id);
    labels.textContent = "";
    labels.dataset.min = String(low);
    labels.dataset.max = String(high);
    const ticks = 5;
    const digits = high - low < 10 ? 2 : 1;
    for (let i = 0; i < ticks; i++) {
      const frac = i / (ticks - 1);
      const span = document.createElement("span");
      span.textContent = (high - frac * (high - low)).toFixed(digits);
      span.style.top = (100 * frac) + "%";
      labels.appendChild(span);
    }
  }

  document.addEventListener("DOMContentLoaded", init);
})();
