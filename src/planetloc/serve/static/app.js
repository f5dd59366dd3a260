// The planetloc page: a query box, a map drawn on a canvas from the gallery's own tiles, and
// the ranked tiles with their physical agreement. No external scripts: it works offline.
"use strict";

const canvas = document.getElementById("map");
const ctx = canvas.getContext("2d");
const statusEl = document.getElementById("status");
const images = new Map();
let gallery = null;
let view = null; // {west, south, east, north}

function loadImage(url) {
  if (!images.has(url)) {
    images.set(url, new Promise((resolve) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => resolve(null);
      img.src = url;
    }));
  }
  return images.get(url);
}

function project(lat, lon) {
  const x = (lon - view.west) / (view.east - view.west) * canvas.width;
  const y = (view.north - lat) / (view.north - view.south) * canvas.height;
  return [x, y];
}

function distanceM(lat1, lon1, lat2, lon2) {
  const r = Math.PI / 180;
  const a = Math.sin((lat2 - lat1) * r / 2) ** 2 +
    Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin((lon2 - lon1) * r / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.sqrt(a));
}

function metresPerPixel(lat) {
  const degPerPx = (view.east - view.west) / canvas.width;
  return degPerPx * 111320 * Math.cos(lat * Math.PI / 180);
}

function fitView(points, minSpanM) {
  const lats = points.map((p) => p[0]);
  const lons = points.map((p) => p[1]);
  let south = Math.min(...lats), north = Math.max(...lats);
  let west = Math.min(...lons), east = Math.max(...lons);
  const midLat = (south + north) / 2;
  const minLat = minSpanM / 111320;
  const minLon = minSpanM / (111320 * Math.max(0.05, Math.cos(midLat * Math.PI / 180)));
  if (north - south < minLat) { const c = (north + south) / 2; south = c - minLat / 2; north = c + minLat / 2; }
  if (east - west < minLon) { const c = (east + west) / 2; west = c - minLon / 2; east = c + minLon / 2; }
  // Keep the canvas aspect ratio in metres so tiles stay square.
  const aspect = canvas.width / canvas.height;
  const widthM = (east - west) * 111320 * Math.cos(midLat * Math.PI / 180);
  const heightM = (north - south) * 111320;
  if (widthM / heightM < aspect) {
    const need = heightM * aspect / (111320 * Math.cos(midLat * Math.PI / 180));
    const c = (east + west) / 2; west = c - need / 2; east = c + need / 2;
  } else {
    const need = widthM / aspect / 111320;
    const c = (north + south) / 2; south = c - need / 2; north = c + need / 2;
  }
  const padLat = (north - south) * 0.08, padLon = (east - west) * 0.08;
  return { west: west - padLon, south: south - padLat, east: east + padLon, north: north + padLat };
}

async function drawBasemap() {
  ctx.fillStyle = "#e8eef3";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const q = new URLSearchParams({
    west: Math.max(-180, view.west), south: Math.max(-90, view.south),
    east: Math.min(180, view.east), north: Math.min(90, view.north), limit: 400,
  });
  const tiles = await (await fetch(`/tiles_in?${q}`)).json();
  const midLat = (view.north + view.south) / 2;
  const sizePx = gallery.tile_size_m / metresPerPixel(midLat);
  if (sizePx < 6) {
    ctx.fillStyle = "#6b8aa5";
    for (const t of tiles) { const [x, y] = project(t.lat, t.lon); ctx.fillRect(x - 1.5, y - 1.5, 3, 3); }
    return;
  }
  const loaded = await Promise.all(tiles.map((t) => loadImage(`/tiles/${encodeURIComponent(t.id)}`)));
  tiles.forEach((t, i) => {
    const img = loaded[i];
    if (!img) return;
    const [x, y] = project(t.lat, t.lon);
    ctx.globalAlpha = 0.85;
    ctx.drawImage(img, x - sizePx / 2, y - sizePx / 2, sizePx, sizePx);
    ctx.globalAlpha = 1;
  });
}

function drawResult(result) {
  const est = result.estimate;
  if (est) {
    const [x, y] = project(est.lat, est.lon);
    const r = est.radius_m / metresPerPixel(est.lat);
    ctx.beginPath(); ctx.arc(x, y, Math.max(r, 4), 0, 2 * Math.PI);
    ctx.fillStyle = "rgba(31, 111, 235, 0.12)"; ctx.fill();
    ctx.strokeStyle = "#1f6feb"; ctx.lineWidth = 2; ctx.stroke();
  }
  // Draw the best last so it stays on top of overlapping markers.
  result.tiles.map((t, i) => [t, i]).reverse().forEach(([t, i]) => {
    const [x, y] = project(t.lat, t.lon);
    ctx.beginPath(); ctx.arc(x, y, 10, 0, 2 * Math.PI);
    ctx.fillStyle = i === 0 ? "#d62828" : "#f77f00"; ctx.fill();
    ctx.strokeStyle = "white"; ctx.lineWidth = 2; ctx.stroke();
    ctx.fillStyle = "white"; ctx.font = "bold 12px sans-serif"; ctx.textAlign = "center";
    ctx.fillText(String(i + 1), x, y + 4);
  });
  canvas.dataset.markers = String(result.tiles.length);
}

function bar(label, value) {
  const pct = Math.max(0, Math.min(100, (value + 1) * 50));
  return `<span>${label}</span><span class="bar"><i style="width:${pct}%"></i></span><span>${value.toFixed(2)}</span>`;
}

function showList(result) {
  const list = document.getElementById("results");
  list.innerHTML = "";
  result.tiles.forEach((t, i) => {
    const li = document.createElement("li");
    li.className = "hit";
    li.innerHTML = `<img alt="tile ${t.id}" src="${t.tile_url}">
      <div><div><span class="rank">#${i + 1}</span> ${t.region} · ${t.lat.toFixed(5)}, ${t.lon.toFixed(5)}</div>
      <div>score ${t.score.toFixed(3)}</div>
      <div class="bars">${bar("colour", t.physics.color)}${bar("structure", t.physics.struc)}${bar("texture", t.physics.tex)}</div></div>`;
    list.appendChild(li);
  });
  const est = result.estimate;
  document.getElementById("estimate").textContent = est
    ? `Estimate: ${est.lat.toFixed(5)}, ${est.lon.toFixed(5)} ± ${Math.round(est.radius_m)} m` : "";
}

async function locate() {
  const text = document.getElementById("text").value;
  const k = Number(document.getElementById("k").value);
  const region = document.getElementById("region").value;
  const body = { text, k };
  if (region) body.regions = [region];
  statusEl.className = ""; statusEl.textContent = "Locating…";
  document.getElementById("go").disabled = true;
  try {
    const response = await fetch("/locate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail : data.detail.map((d) => d.msg).join("; ");
      throw new Error(detail);
    }
    // Frame the estimate and the tiles near it; far-off candidates stay listed on the left.
    const est = data.estimate;
    const near = data.tiles.filter((t) => !est || distanceM(t.lat, t.lon, est.lat, est.lon) < 4 * est.radius_m + 2000);
    const points = near.map((t) => [t.lat, t.lon]);
    if (est) points.push([est.lat, est.lon]);
    view = fitView(points, Math.max(1500, est ? 2.4 * est.radius_m : 0));
    await drawBasemap();
    drawResult(data);
    showList(data);
    statusEl.textContent = `Found ${data.tiles.length} tiles.`;
  } catch (err) {
    statusEl.className = "error"; statusEl.textContent = `Error: ${err.message}`;
  } finally {
    document.getElementById("go").disabled = false;
  }
}

async function init() {
  gallery = await (await fetch("/gallery")).json();
  const [w, s, e, n] = gallery.bbox;
  view = fitView([[s, w], [n, e]], 1000);
  const select = document.getElementById("region");
  for (const r of gallery.regions) {
    const opt = document.createElement("option"); opt.value = r; opt.textContent = r; select.appendChild(opt);
  }
  await drawBasemap();
  statusEl.textContent = `${gallery.count} tiles in the gallery.`;
}

document.getElementById("go").addEventListener("click", locate);
init();
