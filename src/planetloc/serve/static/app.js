// The planetloc page: a query form (description and/or street-level photo), a Leaflet map of
// the gallery's own tiles (plus an XYZ basemap when the server was started with --basemap),
// and the ranked tiles with their physical agreement. Text that comes from data (tile ids,
// regions, error messages) enters the page only through textContent or DOM nodes, never as
// HTML: Leaflet's tooltips and div icons are given elements, not strings.
"use strict";

const EARTH_M = 6371008.8;
const EQUATOR_M = 40075016.686;
const CONE_HALF_DEG = 30; // the view-direction wedge: heading +- this
const MIN_TILE_PX = 6; // below this a gallery tile is drawn as a dot, not an image

const $ = (id) => document.getElementById(id);
const statusEl = $("status");
const mapEl = $("map");

// State the tests (and curious users in the console) can read.
const state = { gallery: null, accepts: [], result: null, galleryShown: 0, galleryTotal: 0, galleryMode: "", moves: 0 };
window.planetloc = state;

const map = L.map(mapEl, { minZoom: 1, maxZoom: 20, zoomSnap: 0.5, worldCopyJump: true });
window.planetlocMap = map;
const galleryLayer = L.layerGroup().addTo(map);
const resultLayer = L.layerGroup().addTo(map);
const dotRenderer = L.canvas({ padding: 0.3 });
const overlays = new Map(); // key -> layer of a gallery tile now on the map

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text, isError) {
  statusEl.className = isError ? "error" : "";
  statusEl.textContent = text;
}

async function getJson(url, options) {
  const response = await fetch(url, options);
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON: reported below */ }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `HTTP ${response.status}`;
    throw new Error(detail);
  }
  return data;
}

const tileUrl = (id) => `/tiles/${encodeURIComponent(id)}`;

function destination(lat, lon, bearingDeg, distanceM) {
  const r = Math.PI / 180, d = distanceM / EARTH_M, b = bearingDeg * r, p1 = lat * r;
  const p2 = Math.asin(Math.sin(p1) * Math.cos(d) + Math.cos(p1) * Math.sin(d) * Math.cos(b));
  const dl = Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(p1), Math.cos(d) - Math.sin(p1) * Math.sin(p2));
  return [p2 / r, lon + dl / r];
}

function distanceM(lat1, lon1, lat2, lon2) {
  const r = Math.PI / 180;
  const a = Math.sin((lat2 - lat1) * r / 2) ** 2 +
    Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin((lon2 - lon1) * r / 2) ** 2;
  return 2 * EARTH_M * Math.asin(Math.sqrt(a));
}

function tileBounds(lat, lon, sizeM) {
  const dLat = (sizeM / 2 / EARTH_M) * 180 / Math.PI;
  const dLon = dLat / Math.max(0.01, Math.cos(lat * Math.PI / 180));
  return [[lat - dLat, lon - dLon], [lat + dLat, lon + dLon]];
}

function tilePixels() {
  const lat = map.getCenter().lat;
  const metresPerPx = EQUATOR_M * Math.cos(lat * Math.PI / 180) / (256 * 2 ** map.getZoom());
  return state.gallery.tile_size_m / metresPerPx;
}

// The visible box in [-180, 180] longitudes; west > east when it crosses the antimeridian.
function viewBox() {
  const b = map.getBounds();
  const south = Math.max(-90, b.getSouth()), north = Math.min(90, b.getNorth());
  if (b.getEast() - b.getWest() >= 360) return { west: -180, south, east: 180, north };
  const wrap = (x) => ((((x + 180) % 360) + 360) % 360) - 180;
  return { west: wrap(b.getWest()), south, east: wrap(b.getEast()), north };
}

// Longitude of the copy of the world the view looks at, so tiles show beside the antimeridian.
const nearView = (lon) => lon + 360 * Math.round((map.getCenter().lng - lon) / 360);

let loadSeq = 0;
async function loadGallery() {
  if (!state.gallery) return;
  const seq = ++loadSeq;
  const images = tilePixels() >= MIN_TILE_PX;
  const query = new URLSearchParams({ ...viewBox(), limit: images ? 300 : 1500 });
  let data;
  try {
    data = await getJson(`/tiles_in?${query}`);
  } catch (err) {
    setStatus(`Could not load the gallery's tiles: ${err.message}`, true);
    return;
  }
  if (seq !== loadSeq) return; // a newer view has asked since
  const mode = images ? "images" : "dots";
  if (mode !== state.galleryMode) {
    galleryLayer.clearLayers();
    overlays.clear();
    state.galleryMode = mode;
  }
  const keep = new Set();
  for (const t of data.tiles) {
    const lon = nearView(t.lon);
    const key = `${t.id}\u0000${lon}`;
    keep.add(key);
    if (overlays.has(key)) continue;
    const layer = images
      ? L.imageOverlay(tileUrl(t.id), tileBounds(t.lat, lon, state.gallery.tile_size_m),
        { opacity: 0.92, alt: "", className: "gallery-tile" })
      : L.circleMarker([t.lat, lon], { renderer: dotRenderer, radius: 2.5, stroke: false, fillColor: "#3b6e99", fillOpacity: 0.8, interactive: false });
    overlays.set(key, layer);
    galleryLayer.addLayer(layer);
  }
  for (const [key, layer] of overlays) {
    if (!keep.has(key)) { galleryLayer.removeLayer(layer); overlays.delete(key); }
  }
  state.galleryShown = overlays.size;
  state.galleryTotal = data.total;
  mapEl.dataset.gallery = String(overlays.size);
}

let moveTimer = 0;
map.on("moveend", () => {
  state.moves += 1;
  clearTimeout(moveTimer);
  moveTimer = setTimeout(loadGallery, 100);
});

function tooltipFor(t, i) {
  const box = el("div", "tile-tip");
  box.append(el("strong", "", `#${i + 1} `), document.createTextNode(t.id), el("br"),
    document.createTextNode(`${t.region} · score ${t.score.toFixed(3)}`));
  return box;
}

function cone(lat, lon, headingDeg, lengthM) {
  const points = [[lat, lon]];
  for (let a = -CONE_HALF_DEG; a <= CONE_HALF_DEG; a += 10) points.push(destination(lat, lon, headingDeg + a, lengthM));
  return points;
}

function drawResult(result) {
  resultLayer.clearLayers();
  const est = result.estimate;
  const frame = L.latLngBounds([]);
  if (est) {
    L.circle([est.lat, est.lon], { radius: est.radius_m, color: "#1f6feb", weight: 2, fillOpacity: 0.12, className: "estimate-circle", interactive: false })
      .addTo(resultLayer);
    frame.extend(L.latLng(est.lat, est.lon).toBounds(2.4 * Math.max(est.radius_m, 300)));
    if (typeof result.heading_deg === "number") {
      const length = Math.max(250, 1.5 * est.radius_m);
      L.polygon(cone(est.lat, est.lon, result.heading_deg, length), { color: "#7b2cbf", weight: 1, fillOpacity: 0.3, className: "heading-cone", interactive: false })
        .addTo(resultLayer);
    }
  }
  result.tiles.forEach((t, i) => {
    const icon = L.divIcon({ className: i === 0 ? "rank-icon best" : "rank-icon", html: el("span", "", String(i + 1)), iconSize: [22, 22] });
    L.marker([t.lat, t.lon], { icon, zIndexOffset: 1000 - i, keyboard: false })
      .bindTooltip(tooltipFor(t, i), { direction: "top", offset: [0, -10] })
      .addTo(resultLayer);
    // Frame the estimate and the tiles near it; far-off candidates stay in the list.
    if (!est || distanceM(t.lat, t.lon, est.lat, est.lon) < 4 * est.radius_m + 2000) frame.extend([t.lat, t.lon]);
  });
  mapEl.dataset.markers = String(result.tiles.length);
  if (frame.isValid()) map.fitBounds(frame.pad(0.08), { maxZoom: 18 });
}

function bar(label, value) {
  const fill = el("i");
  fill.style.width = `${Math.max(0, Math.min(100, (value + 1) * 50))}%`;
  const track = el("span", "bar");
  track.append(fill);
  return [el("span", "", label), track, el("span", "", value.toFixed(2))];
}

function showList(result) {
  const list = $("results");
  list.replaceChildren();
  result.tiles.forEach((t, i) => {
    const li = el("li", "hit");
    const img = el("img");
    img.alt = `tile ${i + 1}`;
    img.src = t.tile_url;
    const body = el("div", "hit-body");
    const title = el("div", "hit-title");
    title.append(el("span", "rank", `#${i + 1}`), document.createTextNode(`${t.id} · ${t.region}`));
    body.append(title, el("div", "coords", `${t.lat.toFixed(5)}, ${t.lon.toFixed(5)} · score ${t.score.toFixed(3)}`));
    const physics = t.physics || {};
    if (Object.keys(physics).length) { // absent when the query had no description
      const bars = el("div", "bars");
      bars.append(...bar("colour", physics.color), ...bar("structure", physics.struc), ...bar("texture", physics.tex));
      body.append(bars);
    }
    li.append(img, body);
    li.addEventListener("click", () => map.setView([t.lat, t.lon], Math.max(map.getZoom(), 17)));
    list.append(li);
  });
  const est = result.estimate;
  let text = est ? `Estimate: ${est.lat.toFixed(5)}, ${est.lon.toFixed(5)} ± ${Math.round(est.radius_m)} m` : "No tile satisfies the prior.";
  if (est && result.query !== "text") text += ` (from ${result.query === "joint" ? "the description and the photo" : "the photo"})`;
  $("estimate").textContent = text;
}

async function locate(event) {
  event.preventDefault();
  const text = $("text").value;
  const file = state.accepts.includes("image") ? $("image").files[0] : undefined;
  const k = $("k").value;
  const region = $("region").value;
  let options;
  if (file) {
    const form = new FormData();
    if (text.trim()) form.append("text", text);
    form.append("image", file);
    if ($("heading").value !== "") form.append("heading", $("heading").value);
    form.append("k", k);
    if (region) form.append("regions", region);
    options = { method: "POST", body: form };
  } else {
    const body = { text, k: Number(k) };
    if (region) body.regions = [region];
    options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  }
  setStatus("Locating…");
  $("go").disabled = true;
  try {
    const result = await getJson("/locate", options);
    state.result = result;
    drawResult(result);
    showList(result);
    setStatus(`Found ${result.tiles.length} tiles.${result.truncated ? " (The description was longer than the model reads.)" : ""}`);
  } catch (err) {
    setStatus(`Error: ${err.message}`, true);
  } finally {
    $("go").disabled = false;
  }
}

async function init() {
  try {
    const [health, gallery] = await Promise.all([getJson("/health"), getJson("/gallery")]);
    state.gallery = gallery;
    state.accepts = health.accepts;
    $("image-row").hidden = !health.accepts.includes("image");
    $("text-row").hidden = !health.accepts.includes("text");
    if (gallery.basemap) L.tileLayer(gallery.basemap, { maxZoom: 20, maxNativeZoom: 19 }).addTo(map);
    for (const r of gallery.regions) {
      const option = el("option", "", r);
      option.value = r;
      $("region").append(option);
    }
    const [w, s, e, n] = gallery.bbox;
    map.fitBounds([[s, w], [n, e]], { maxZoom: 16, padding: [20, 20] });
    setStatus(`${gallery.count} tiles in the gallery.`);
  } catch (err) {
    setStatus(`The service did not answer: ${err.message}`, true);
  }
}

$("form").addEventListener("submit", locate);
init();
