// The page to try the service: choose or take a photo, upload it (with progress), run the
// analyses picked, draw the measured regions over the photo, and turn every refusal into
// advice a person can act on. Talks to this service's JSON API only; no inline script, no
// third-party code (see README, Web page).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const DEFAULT_ANALYZERS = ["skin-measure", "face", "classify"];
  const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];

  // What a person can do about each refusal (problem `code`s of app/core/errors.py).
  const ADVICE = {
    no_face_detected:
      "We could not find a face. Face the camera with your whole face in the picture and nothing covering it.",
    face_too_small: "Your face is too small in the photo: move closer (or zoom in) so that it fills about a third of the picture.",
    face_out_of_frame: "Part of your face is outside the photo: step back a little and centre your face in the frame.",
    head_turned: "Face the camera: look straight into the lens and keep your head level.",
    image_blurred: "The photo is blurred: hold the camera steady, tap your face to focus, and wipe the lens.",
    image_too_dark: "The photo is too dark: add more light. Face a window or a lamp, and avoid light from behind you.",
    image_overexposed: "The photo is too bright: move out of direct sunlight or away from the flash; soft, even light works best.",
    multiple_faces: "More than one face is in the photo: take it again with only your face in the picture.",
    unsupported_media_type: "This file is not a photo the service can read: use a JPEG, PNG, WebP or HEIC photo.",
    undecodable_image: "The file is damaged or incomplete: take or export the photo again.",
    trailing_data: "The file carries extra data after the picture: export it again as a plain JPEG.",
    image_too_large: "The photo has too many pixels: pick a smaller size in the camera settings, or resize it.",
    payload_too_large: "The file is too large: use a smaller photo or a lower quality setting.",
    empty_file: "The file is empty: choose the photo again.",
    insufficient_credits: "You have no credits left for this analysis: ask an admin for a refill.",
    unauthorized: "Sign in first: this service does not serve anonymous callers.",
    too_many_requests: "Too many requests: wait a moment, then try again.",
    queue_full: "The service is busy: try again in a few seconds.",
    unknown_analyzer: "This analysis is not offered by the service any more: reload the page.",
  };
  const METRIC_NAMES = {
    tone: "Skin tone",
    redness: "Redness",
    shine: "Shine",
    texture: "Texture",
    dark_circles: "Dark circles",
    spots: "Spots",
  };

  const state = {
    token: sessionStorage.getItem("token"),
    file: null,
    localUrl: null,
    shownUrl: null,
    imageId: null,
    meta: null,
  };

  // -- talking to the service ---------------------------------------------------------------

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    if (state.token) headers.Authorization = "Bearer " + state.token;
    return headers;
  }

  async function parseProblem(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    return {
      status: response.status,
      code: (body && body.code) || "http_" + response.status,
      detail: (body && body.detail) || response.statusText || "The request failed",
      retryAfter: response.headers.get("Retry-After"),
    };
  }

  // JSON request to the service: {ok, data} or {ok: false, problem}.
  async function api(method, path, body) {
    const init = { method, headers: authHeaders(body ? { "Content-Type": "application/json" } : {}) };
    if (body) init.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { ok: false, problem: { status: 0, code: "network", detail: "The service cannot be reached." } };
    }
    if (response.status === 204) return { ok: true, data: null };
    if (!response.ok) return { ok: false, problem: await parseProblem(response) };
    return { ok: true, data: await response.json() };
  }

  async function fetchBlobUrl(path) {
    const response = await fetch(path, { headers: authHeaders() });
    if (!response.ok) return null;
    return URL.createObjectURL(await response.blob());
  }

  function adviceFor(problem) {
    if (ADVICE[problem.code]) return ADVICE[problem.code];
    if (problem.status === 503) return "The service is busy or a part of it is down: try again in a little while.";
    if (problem.status === 0) return "Check your connection, then try again.";
    if (problem.status >= 500) return "Something went wrong on the service: try again later.";
    return "The service could not do this.";
  }

  // -- account -------------------------------------------------------------------------------

  function accountMessage(text) {
    $("account-message").textContent = text;
  }

  async function refreshAccount() {
    if (!state.token) {
      $("signin-box").hidden = false;
      $("signed-in").hidden = true;
      $("my-images").hidden = true;
      return;
    }
    const me = await api("GET", "/v1/me");
    if (!me.ok) {
      signOut(me.problem.status === 401 ? "Your session ended: sign in again." : me.problem.detail);
      return;
    }
    $("who").textContent = me.data.username;
    $("credits").textContent = String(me.data.credits);
    $("signin-box").hidden = true;
    $("signed-in").hidden = false;
    $("my-images").hidden = false;
    await loadGallery();
  }

  function signOut(message) {
    state.token = null;
    sessionStorage.removeItem("token");
    accountMessage(message || "Signed out.");
    refreshAccount();
  }

  async function signIn(event) {
    event.preventDefault();
    const credentials = { username: $("username").value.trim(), password: $("password").value };
    const result = await api("POST", "/api/v1/auth/login", credentials);
    if (!result.ok) {
      accountMessage(result.problem.status === 401 ? "Wrong user name or password." : result.problem.detail);
      return;
    }
    state.token = result.data.access_token;
    sessionStorage.setItem("token", state.token);
    $("password").value = "";
    accountMessage("");
    await refreshAccount();
    await loadAnalyzers();
  }

  async function register() {
    const form = $("signin-form");
    if (!form.reportValidity()) return;
    const credentials = { username: $("username").value.trim(), password: $("password").value };
    const result = await api("POST", "/api/v1/auth/register", credentials);
    if (!result.ok) {
      accountMessage(result.problem.detail);
      return;
    }
    await signIn({ preventDefault() {} });
  }

  // -- analyzers -----------------------------------------------------------------------------

  async function loadAnalyzers() {
    const box = $("analyzers");
    const result = await api("GET", "/api/v1/analyzers");
    box.querySelectorAll(".choice").forEach((node) => node.remove());
    const loading = $("analyzers-loading");
    if (!result.ok) {
      loading.textContent = adviceFor(result.problem);
      return;
    }
    loading.hidden = true;
    for (const analyzer of result.data) {
      const label = document.createElement("label");
      label.className = "choice";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.name = "analyzer";
      input.value = analyzer.name;
      input.checked = analyzer.available && DEFAULT_ANALYZERS.includes(analyzer.name);
      input.disabled = !analyzer.available;
      const name = document.createElement("strong");
      name.textContent = analyzer.name;
      const about = document.createElement("span");
      about.className = "hint";
      about.textContent = analyzer.available ? analyzer.description : "Not available: " + analyzer.reason;
      label.append(input, " ", name, about);
      box.append(label);
    }
    updateAnalyzeButton();
  }

  function chosenAnalyzers() {
    return Array.from(document.querySelectorAll("input[name=analyzer]:checked")).map((input) => input.value);
  }

  function updateAnalyzeButton() {
    $("analyze").disabled = !(state.file && chosenAnalyzers().length);
  }

  // -- choosing a photo ----------------------------------------------------------------------

  function setFile(file) {
    if (!file) return;
    state.file = file;
    if (state.localUrl) URL.revokeObjectURL(state.localUrl);
    state.localUrl = URL.createObjectURL(file);
    const kb = Math.round(file.size / 1024);
    $("chosen").textContent = "Chosen: " + (file.name || "photo") + " (" + kb + " KB).";
    setProgress(0);
    status("");
    updateAnalyzeButton();
    $("analyze").focus();
  }

  function setupDropzone() {
    const zone = $("dropzone");
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      if (event.dataTransfer && event.dataTransfer.files.length) setFile(event.dataTransfer.files[0]);
    });
    for (const id of ["file", "camera"]) {
      $(id).addEventListener("change", (event) => setFile(event.target.files[0]));
    }
  }

  // -- upload with progress ------------------------------------------------------------------

  function setProgress(percent) {
    $("progress").value = percent;
    $("progress-text").textContent = percent + "%";
  }

  function status(text) {
    $("status").textContent = text;
  }

  function upload(file) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/v1/upload");
      if (state.token) xhr.setRequestHeader("Authorization", "Bearer " + state.token);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) setProgress(Math.round((100 * event.loaded) / event.total));
      });
      xhr.addEventListener("load", () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (err) {
          body = null;
        }
        if (xhr.status === 201 && body) {
          setProgress(100);
          resolve({ ok: true, data: body });
          return;
        }
        resolve({
          ok: false,
          problem: {
            status: xhr.status,
            code: (body && body.code) || "http_" + xhr.status,
            detail: (body && body.detail) || "The upload failed",
          },
        });
      });
      xhr.addEventListener("error", () =>
        resolve({ ok: false, problem: { status: 0, code: "network", detail: "The upload could not be sent." } })
      );
      const form = new FormData();
      form.append("file", file, file.name || "photo.jpg");
      xhr.send(form);
    });
  }

  async function uploadAndAnalyze() {
    const analyzers = chosenAnalyzers();
    if (!state.file || !analyzers.length) return;
    $("analyze").disabled = true;
    status("Uploading…");
    const uploaded = await upload(state.file);
    if (!uploaded.ok) {
      status("");
      showResults(state.localUrl, null);
      showAdvice([{ analyzer: "upload", problem: uploaded.problem }]);
      updateAnalyzeButton();
      return;
    }
    await analyzeImage(uploaded.data, state.localUrl, analyzers);
    updateAnalyzeButton();
    if (state.token) refreshAccount();
  }

  async function analyzeImage(meta, url, analyzers) {
    state.imageId = meta.image_id;
    state.meta = meta;
    showResults(url, meta);
    const refusals = [];
    for (const name of analyzers) {
      status("Analyzing: " + name + "…");
      const result = await api("POST", "/api/v1/analyze", { image_id: meta.image_id, analyzer: name });
      if (result.ok) render(name, result.data);
      else refusals.push({ analyzer: name, problem: result.problem });
    }
    showAdvice(refusals);
    status(refusals.length ? "Done, with advice below." : "Done.");
  }

  // -- results -------------------------------------------------------------------------------

  function clearNode(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function showResults(url, meta) {
    $("results").hidden = false;
    for (const id of ["measurements", "face", "classification", "mock"]) $(id).hidden = true;
    const overlay = $("overlay");
    clearNode(overlay);
    overlay.removeAttribute("data-fixed");
    overlay.removeAttribute("viewBox");
    clearNode($("legend"));
    clearNode($("metrics-body"));
    clearNode($("classes"));
    $("advice").hidden = true;
    const img = $("photo");
    img.onerror = async () => {
      // A type this browser cannot show (HEIC on most): the service's own JPEG preview.
      img.onerror = null;
      if (!meta) return;
      const preview = await fetchBlobUrl("/api/v1/images/" + meta.image_id + "/preview?width=1024");
      if (preview) setShown(preview);
    };
    img.onload = () => fitOverlay();
    img.src = url;
    state.shownUrl = url;
  }

  function setShown(url) {
    if (state.shownUrl && state.shownUrl !== state.localUrl) URL.revokeObjectURL(state.shownUrl);
    state.shownUrl = url;
    $("photo").src = url;
  }

  // The overlay's coordinate space: the upright photo in pixels (as the analyzers see it).
  function fitOverlay() {
    const img = $("photo");
    const overlay = $("overlay");
    if (overlay.getAttribute("data-fixed")) return;
    let width = img.naturalWidth;
    let height = img.naturalHeight;
    const meta = state.meta;
    if (meta && state.shownUrl !== state.localUrl) {
      // A preview: scale to the stored size, turned as the preview is.
      const landscape = width >= height;
      width = landscape === meta.width >= meta.height ? meta.width : meta.height;
      height = width === meta.width ? meta.height : meta.width;
    }
    if (width && height) overlay.setAttribute("viewBox", "0 0 " + width + " " + height);
  }

  function svg(name, attributes) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    return node;
  }

  function addLegend(name, colour) {
    const item = document.createElement("li");
    const swatch = svg("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true" });
    swatch.append(svg("rect", { width: 14, height: 14, rx: 3, fill: colour }));
    item.append(swatch, " " + name.replace(/_/g, " "));
    $("legend").append(item);
  }

  function render(name, data) {
    if (name === "skin-measure") renderSkinMeasure(data);
    else if (name === "face") renderFace(data);
    else if (name === "classify") renderClassify(data);
    else if (name === "skin") renderMock(data);
  }

  function renderFaceBox(box, cls) {
    $("overlay").append(
      svg("rect", {
        x: box.x,
        y: box.y,
        width: box.width,
        height: box.height,
        class: "face-box " + cls,
        fill: "none",
        "vector-effect": "non-scaling-stroke",
      })
    );
  }

  function renderSkinMeasure(data) {
    const overlay = $("overlay");
    if (data.svg) {
      const doc = new DOMParser().parseFromString(data.svg, "image/svg+xml");
      const root = doc.documentElement;
      const viewBox = root.getAttribute("viewBox");
      if (viewBox) {
        overlay.setAttribute("viewBox", viewBox);
        overlay.setAttribute("data-fixed", "1");
      }
      const group = svg("g", { class: "skin-regions" });
      let index = 0;
      for (const path of doc.querySelectorAll("path")) {
        const colour = PALETTE[index++ % PALETTE.length];
        const region = path.getAttribute("id") || "region";
        const node = svg("path", {
          d: path.getAttribute("d") || "",
          class: "region",
          "data-region": region,
          fill: colour,
          "fill-opacity": 0.35,
          stroke: colour,
          "stroke-width": 2,
          "fill-rule": "evenodd",
          "vector-effect": "non-scaling-stroke",
        });
        group.append(node);
        addLegend(region, colour);
      }
      overlay.append(group);
    }
    if (data.face_box) renderFaceBox(data.face_box, "skin-face");
    const body = $("metrics-body");
    for (const [key, metric] of Object.entries(data.metrics || {})) {
      const row = document.createElement("tr");
      row.setAttribute("data-metric", key);
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = METRIC_NAMES[key] || key.replace(/_/g, " ");
      const value = document.createElement("td");
      value.textContent = formatNumber(metric.value) + " " + (metric.unit || "");
      const score = document.createElement("td");
      const meter = document.createElement("meter");
      meter.min = 0;
      meter.max = 100;
      meter.value = metric.score;
      meter.setAttribute("aria-label", (METRIC_NAMES[key] || key) + " score");
      score.append(meter, " " + metric.score);
      row.append(name, value, score);
      body.append(row);
    }
    const tone = data.metrics && data.metrics.tone;
    $("tone-summary").textContent = tone
      ? "Skin tone: ITA " + formatNumber(tone.value) + "° (" + tone.category + "), nearest Monk swatch " + tone.monk + " of 10."
      : "";
    $("measurements").hidden = false;
  }

  // The face's regions are in the aligned crop's coordinates: drawn through the inverse of
  // `transform` (original -> crop), so that they land on the photo.
  function renderFace(data) {
    const [a, b, c, d, e, f] = data.transform;
    const det = a * e - b * d;
    const inverse = [e / det, -d / det, -b / det, a / det, (b * f - c * e) / det, (c * d - a * f) / det];
    const group = svg("g", { class: "face-regions", transform: "matrix(" + inverse.join(" ") + ")" });
    const paths = Object.assign({}, data.regions || {});
    for (const [region, path] of Object.entries(paths)) {
      group.append(
        svg("path", {
          d: path,
          class: "contour",
          "data-region": region,
          fill: "none",
          "vector-effect": "non-scaling-stroke",
        })
      );
    }
    $("overlay").append(group);
    if (!$("legend").querySelector("[data-contours]")) {
      const item = document.createElement("li");
      item.setAttribute("data-contours", "1");
      item.textContent = "white lines: face contours (" + Object.keys(paths).length + " regions)";
      $("legend").append(item);
    }
    renderFaceBox(data.face_box, "face");
    const box = data.face_box;
    const pose = data.head_pose;
    let text = "One face, " + box.width + " × " + box.height + " px, at (" + box.x + ", " + box.y + ").";
    text += " Tilt of the eye line: " + formatNumber(data.rotation_degrees) + "°.";
    if (pose) {
      text += " Head turned " + formatNumber(pose.yaw) + "°, tilted " + formatNumber(pose.pitch) + "° up/down.";
    }
    $("face-summary").textContent = text;
    $("face").hidden = false;
  }

  function renderClassify(data) {
    const list = $("classes");
    for (const prediction of data.predictions || []) {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = prediction.label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = Math.max(1, Math.round(prediction.probability * 100)) + "%";
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = (prediction.probability * 100).toFixed(1) + "%";
      item.append(label, bar, value);
      list.append(item);
    }
    $("classification").hidden = false;
  }

  function renderMock(data) {
    const issues = (data.issues || []).length ? data.issues.join(", ") : "none";
    $("mock-summary").textContent =
      data.skin_type + " skin; issues: " + issues + "; confidence " + Math.round(data.confidence * 100) + "%.";
    $("mock").hidden = false;
  }

  function showAdvice(refusals) {
    const box = $("advice");
    clearNode(box);
    if (!refusals.length) {
      box.hidden = true;
      return;
    }
    const heading = document.createElement("h3");
    heading.textContent = "How to get a result";
    box.append(heading);
    const seen = new Set();
    for (const { analyzer, problem } of refusals) {
      const advice = adviceFor(problem);
      const item = document.createElement("div");
      item.className = "advice-item";
      item.setAttribute("data-code", problem.code);
      if (!seen.has(advice)) {
        const what = document.createElement("p");
        what.className = "do";
        what.textContent = advice;
        item.append(what);
        seen.add(advice);
      }
      const why = document.createElement("p");
      why.className = "hint";
      let detail = analyzer + ": " + problem.detail + " (" + problem.code + ")";
      if (problem.retryAfter) detail += " Try again in " + problem.retryAfter + " s.";
      why.textContent = detail;
      item.append(why);
      box.append(item);
    }
    box.hidden = false;
  }

  function formatNumber(value) {
    if (typeof value !== "number") return String(value);
    return Math.abs(value) >= 100 ? value.toFixed(0) : String(Math.round(value * 100) / 100);
  }

  // -- my images -----------------------------------------------------------------------------

  async function loadGallery() {
    const list = $("gallery");
    const result = await api("GET", "/api/v1/images?limit=24");
    for (const img of list.querySelectorAll("img")) URL.revokeObjectURL(img.src);
    clearNode(list);
    if (!result.ok) {
      $("my-images-empty").hidden = false;
      $("my-images-empty").textContent = result.problem.detail;
      return;
    }
    $("my-images-empty").hidden = result.data.items.length > 0;
    $("my-images-empty").textContent = "No images yet.";
    for (const meta of result.data.items) list.append(galleryItem(meta));
  }

  function galleryItem(meta) {
    const item = document.createElement("li");
    item.setAttribute("data-image-id", meta.image_id);
    const img = document.createElement("img");
    img.alt = meta.filename || "image";
    img.width = 128;
    fetchBlobUrl("/api/v1/images/" + meta.image_id + "/preview?width=128").then((url) => {
      if (url) img.src = url;
    });
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = (meta.filename || "image") + " · " + meta.size + " · " + meta.created_at.slice(0, 10);
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = "Analyze again";
    open.addEventListener("click", async () => {
      const url = await fetchBlobUrl("/api/v1/images/" + meta.image_id + "/preview?width=1024");
      if (!url) return;
      state.file = null;
      updateAnalyzeButton();
      await analyzeImage(meta, url, chosenAnalyzers());
      refreshAccount();
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "danger";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", "Delete " + (meta.filename || "image"));
    remove.addEventListener("click", async () => {
      if (remove.getAttribute("data-confirm") !== "1") {
        remove.setAttribute("data-confirm", "1");
        remove.textContent = "Really delete?";
        return;
      }
      const result = await api("DELETE", "/api/v1/images/" + meta.image_id);
      if (!result.ok && result.problem.status !== 404) {
        accountMessage(result.problem.detail);
        return;
      }
      accountMessage("Deleted " + (meta.filename || "the image") + ".");
      await loadGallery();
    });
    remove.addEventListener("blur", () => {
      remove.removeAttribute("data-confirm");
      remove.textContent = "Delete";
    });
    item.append(img, caption, open, remove);
    return item;
  }

  // -- start ---------------------------------------------------------------------------------

  function start() {
    setupDropzone();
    $("signin-form").addEventListener("submit", signIn);
    $("register").addEventListener("click", register);
    $("signout").addEventListener("click", async () => {
      await api("POST", "/api/v1/auth/logout");
      signOut();
    });
    $("analyzers").addEventListener("change", updateAnalyzeButton);
    $("analyze").addEventListener("click", uploadAndAnalyze);
    $("show-overlay").addEventListener("change", (event) => {
      $("overlay").classList.toggle("hidden", !event.target.checked);
    });
    loadAnalyzers();
    refreshAccount();
  }

  start();
})();
