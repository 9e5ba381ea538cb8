// An offline-friendly city map: district/street/grid outlines (GeoJSON from the API)
// drawn as SVG with a Web-Mercator projection, pan (drag, arrow keys) and zoom (wheel,
// +/-, buttons), case points coloured by risk level and clustered on a screen grid,
// and an optional raster tile layer ({z}/{x}/{y} URL template) underneath.
//
// Coordinates: lon/lat → world pixels at zoom 0 (0..256) → "local" units, which are
// world pixels at zoom Z0 relative to the data's origin (keeps SVG numbers small, so
// transforms stay precise when zoomed in). A local unit is 2^(z-Z0) screen pixels.
import { s, h, clear, RISKS, RISK_COLORS } from "./api.js";

const Z0 = 12;
const MIN_Z = 9;
const MAX_Z = 19;
const CLUSTER_PX = 56;
const TILE = 256;

export function project(lon, lat) {
  const x = ((lon + 180) / 360) * TILE;
  const rad = (Math.max(-85.05, Math.min(85.05, lat)) * Math.PI) / 180;
  const y = ((1 - Math.log(Math.tan(rad) + 1 / Math.cos(rad)) / Math.PI) / 2) * TILE;
  return [x, y];
}

export function unproject(x, y) {
  const lon = (x / TILE) * 360 - 180;
  const n = Math.PI - (2 * Math.PI * y) / TILE;
  const lat = (180 / Math.PI) * Math.atan(0.5 * (Math.exp(n) - Math.exp(-n)));
  return [lon, lat];
}

const RISK_RANK = Object.fromEntries(RISKS.map((r, i) => [r, i]));

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return [geometry.coordinates];
  if (geometry.type === "MultiPolygon") return geometry.coordinates;
  return [];
}

/** Areas from the API: a GeoJSON FeatureCollection, a list of Features, or {areas|districts…}. */
export function normaliseAreas(data) {
  let feats = [];
  if (Array.isArray(data)) feats = data;
  else if (data && Array.isArray(data.features)) feats = data.features;
  else if (data && typeof data === "object") {
    for (const level of ["districts", "streets", "grids"]) {
      const fc = data[level];
      if (!fc) continue;
      const list = Array.isArray(fc) ? fc : fc.features || [];
      list.forEach((f) => feats.push({ ...f, properties: { level: level.slice(0, -1), ...(f.properties || {}) } }));
    }
  }
  return feats
    .map((f) => {
      const p = f.properties || f;
      return { id: p.id ?? f.id, name: p.name || "", level: p.level || "grid", parent: p.parent, geometry: f.geometry };
    })
    .filter((a) => a.geometry);
}

/** Case points: a FeatureCollection of Points, or a list of {number, lat, lon, risk_level …}. */
export function normaliseCases(data) {
  let list = [];
  if (Array.isArray(data)) list = data;
  else if (data && Array.isArray(data.features)) list = data.features;
  else if (data && Array.isArray(data.items)) list = data.items;
  else if (data && Array.isArray(data.cases)) list = data.cases;
  return list
    .map((c) => {
      if (c.type === "Feature" && c.geometry) {
        const [lon, lat] = c.geometry.coordinates;
        return { ...(c.properties || {}), lon, lat };
      }
      return c;
    })
    .filter((c) => Number.isFinite(c.lat) && Number.isFinite(c.lon));
}

export class CityMap {
  /**
   * @param {HTMLElement} container
   * @param {{tileUrl?: string, onCaseClick?: (c) => void, caseHref?: (c) => string}} opts
   */
  constructor(container, opts = {}) {
    this.el = container;
    this.opts = opts;
    this.tileUrl = opts.tileUrl || null;
    this.areas = [];
    this.cases = [];
    this.origin = [0, 0];
    this.view = { cx: 0, cy: 0, z: 13 };
    this.layers = { district: true, street: true, grid: true };
    this.selected = null;
    this._frame = 0;

    this.svg = s("svg", { class: "map-svg", role: "img", "aria-label": "案件地图" });
    this.gTiles = s("g", { class: "map-tiles" });
    this.gAreas = s("g", { class: "map-areas" });
    this.gLabels = s("g", { class: "map-labels", "aria-hidden": "true" });
    this.gPoints = s("g", { class: "map-points" });
    this.svg.append(this.gTiles, this.gAreas, this.gLabels, this.gPoints);
    this.levelGroups = {};
    for (const level of ["district", "street", "grid"]) {
      const g = s("g", { class: `areas-${level}` });
      this.levelGroups[level] = g;
    }
    // draw order: grids under streets under districts
    this.gAreas.append(this.levelGroups.grid, this.levelGroups.street, this.levelGroups.district);
    this.popup = h("div.map-popup", { hidden: true, role: "dialog", "aria-label": "案件信息" });
    this.el.prepend(this.svg);
    this.el.append(this.popup);

    this._bindEvents();
    new ResizeObserver(() => this.render()).observe(this.el);
    this.el.querySelectorAll("[data-zoom]").forEach((b) =>
      b.addEventListener("click", (ev) => {
        ev.stopPropagation();
        const what = b.dataset.zoom;
        if (what === "fit") this.fit();
        else this.zoomBy(what === "in" ? 1 : -1);
      }),
    );
  }

  // -- data ----------------------------------------------------------------------

  local(lon, lat) {
    const [x, y] = project(lon, lat);
    const k = 2 ** Z0;
    return [(x - this.origin[0]) * k, (y - this.origin[1]) * k];
  }

  setAreas(data) {
    this.areas = normaliseAreas(data);
    if (!this.areas.length) return;
    // origin: the middle of everything, so local numbers stay small
    let minx = Infinity, miny = Infinity, maxx = -Infinity, maxy = -Infinity;
    for (const a of this.areas)
      for (const poly of rings(a.geometry))
        for (const ring of poly)
          for (const [lon, lat] of ring) {
            const [x, y] = project(lon, lat);
            minx = Math.min(minx, x); maxx = Math.max(maxx, x); miny = Math.min(miny, y); maxy = Math.max(maxy, y);
          }
    this.origin = [(minx + maxx) / 2, (miny + maxy) / 2];
    const k = 2 ** Z0;
    this.bounds = [(minx - this.origin[0]) * k, (miny - this.origin[1]) * k, (maxx - this.origin[0]) * k, (maxy - this.origin[1]) * k];
    for (const g of Object.values(this.levelGroups)) clear(g);
    this.labels = [];
    for (const a of this.areas) {
      let d = "";
      let best = null;
      for (const poly of rings(a.geometry)) {
        poly.forEach((ring, i) => {
          const pts = ring.map(([lon, lat]) => this.local(lon, lat));
          d += "M" + pts.map(([x, y]) => `${x.toFixed(2)},${y.toFixed(2)}`).join("L") + "Z";
          if (i === 0) {
            const c = centroid(pts);
            if (!best || c.area > best.area) best = c;
          }
        });
      }
      const path = s("path", { d, class: `area area-${a.level}`, "data-id": a.id, "vector-effect": "non-scaling-stroke" });
      path.append(s("title", {}, `${a.name}（${a.id}）`));
      (this.levelGroups[a.level] || this.levelGroups.grid).append(path);
      if (best && a.level !== "grid") this.labels.push({ level: a.level, name: a.name, x: best.x, y: best.y });
    }
    this.fit();
  }

  setCases(data) {
    this.cases = normaliseCases(data).map((c) => {
      const [x, y] = this.local(c.lon, c.lat);
      return { ...c, x, y };
    });
    this.render();
  }

  setLayer(level, on) {
    this.layers[level] = on;
    this.render();
  }

  // -- view ----------------------------------------------------------------------

  get scale() {
    return 2 ** (this.view.z - Z0);
  }

  size() {
    return [this.el.clientWidth || 600, this.el.clientHeight || 400];
  }

  fit() {
    const b = this.bounds || [-100, -100, 100, 100];
    const [w, hgt] = this.size();
    const pad = 24;
    const sx = (w - 2 * pad) / Math.max(1e-6, b[2] - b[0]);
    const sy = (hgt - 2 * pad) / Math.max(1e-6, b[3] - b[1]);
    this.view = { cx: (b[0] + b[2]) / 2, cy: (b[1] + b[3]) / 2, z: clampZ(Z0 + Math.log2(Math.min(sx, sy))) };
    this.render();
  }

  /** Zoom by `dz` levels keeping the screen point (px, py) fixed (default: the centre). */
  zoomBy(dz, px, py) {
    const [w, hgt] = this.size();
    px = px ?? w / 2;
    py = py ?? hgt / 2;
    const before = this.scale;
    const wx = this.view.cx + (px - w / 2) / before;
    const wy = this.view.cy + (py - hgt / 2) / before;
    this.view.z = clampZ(this.view.z + dz);
    const after = this.scale;
    this.view.cx = wx - (px - w / 2) / after;
    this.view.cy = wy - (py - hgt / 2) / after;
    this.render();
  }

  panBy(dx, dy) {
    this.view.cx -= dx / this.scale;
    this.view.cy -= dy / this.scale;
    this.render();
  }

  centerOn(c, z) {
    this.view.cx = c.x;
    this.view.cy = c.y;
    if (z) this.view.z = clampZ(z);
    this.render();
  }

  toScreen(x, y) {
    const [w, hgt] = this.size();
    return [(x - this.view.cx) * this.scale + w / 2, (y - this.view.cy) * this.scale + hgt / 2];
  }

  // -- drawing ---------------------------------------------------------------------

  render() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._draw();
    });
  }

  _draw() {
    const [w, hgt] = this.size();
    this.svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
    const k = this.scale;
    const tx = w / 2 - this.view.cx * k;
    const ty = hgt / 2 - this.view.cy * k;
    this.gAreas.setAttribute("transform", `translate(${tx.toFixed(2)},${ty.toFixed(2)}) scale(${k})`);
    const z = this.view.z;
    this.levelGroups.street.style.display = this.layers.street ? "" : "none";
    this.levelGroups.grid.style.display = this.layers.grid && z >= 13.5 ? "" : "none";
    this.el.dataset.zoom = z.toFixed(2);
    this._drawTiles(w, hgt);
    this._drawLabels(w, hgt);
    this._drawPoints(w, hgt);
    this.el.dataset.cases = String(this.cases.length); // drawn: what tests and tools can wait for
    if (this.selected) this._placePopup();
  }

  _drawTiles(w, hgt) {
    if (!this.tileUrl) return;
    const tz = Math.max(0, Math.min(MAX_Z, Math.round(this.view.z)));
    const n = 2 ** tz;
    const k0 = 2 ** Z0;
    // the screen corners in world pixels at tile zoom
    const corner = (px, py) => {
      const lx = this.view.cx + (px - w / 2) / this.scale;
      const ly = this.view.cy + (py - hgt / 2) / this.scale;
      return [((lx / k0 + this.origin[0]) * n), ((ly / k0 + this.origin[1]) * n)];
    };
    const [x0, y0] = corner(0, 0);
    const [x1, y1] = corner(w, hgt);
    const want = new Map();
    for (let tx = Math.floor(x0 / TILE); tx <= Math.floor(x1 / TILE); tx++) {
      for (let ty = Math.floor(y0 / TILE); ty <= Math.floor(y1 / TILE); ty++) {
        if (ty < 0 || ty >= n) continue;
        const wrapped = ((tx % n) + n) % n;
        want.set(`${tz}/${tx}/${ty}`, { tx, ty, wrapped });
      }
    }
    const have = new Map([...this.gTiles.children].map((img) => [img.dataset.key, img]));
    for (const [key, img] of have) if (!want.has(key)) img.remove();
    const size = (TILE * this.scale * k0) / n; // screen px of one tile
    for (const [key, t] of want) {
      let img = have.get(key);
      if (!img) {
        const url = this.tileUrl.replace("{z}", tz).replace("{x}", t.wrapped).replace("{y}", t.ty)
          .replace("{s}", "abc"[(t.wrapped + t.ty) % 3]);
        img = s("image", { href: url, "data-key": key, preserveAspectRatio: "none" });
        img.addEventListener("error", () => img.setAttribute("visibility", "hidden"));
        this.gTiles.append(img);
      }
      const lx = ((t.tx * TILE) / n - this.origin[0]) * k0;
      const ly = ((t.ty * TILE) / n - this.origin[1]) * k0;
      const [sx, sy] = this.toScreen(lx, ly);
      img.setAttribute("x", sx.toFixed(1));
      img.setAttribute("y", sy.toFixed(1));
      img.setAttribute("width", (size + 0.5).toFixed(1));
      img.setAttribute("height", (size + 0.5).toFixed(1));
    }
  }

  _drawLabels(w, hgt) {
    clear(this.gLabels);
    const z = this.view.z;
    for (const l of this.labels || []) {
      if (l.level === "street" && (!this.layers.street || z < 13.2)) continue;
      if (l.level === "district" && z >= 15) continue;
      const [x, y] = this.toScreen(l.x, l.y);
      if (x < -50 || y < -20 || x > w + 50 || y > hgt + 20) continue;
      this.gLabels.append(s("text", { x: x.toFixed(1), y: y.toFixed(1), class: `label label-${l.level}` }, l.name));
    }
  }

  /** Grid clustering on the screen: points within one CLUSTER_PX cell at this zoom merge. */
  clusters() {
    const k = this.scale;
    const cells = new Map();
    for (const c of this.cases) {
      const key = `${Math.floor((c.x * k) / CLUSTER_PX)},${Math.floor((c.y * k) / CLUSTER_PX)}`;
      let cell = cells.get(key);
      if (!cell) cells.set(key, (cell = { members: [], x: 0, y: 0 }));
      cell.members.push(c);
    }
    const out = [];
    for (const cell of cells.values()) {
      const m = cell.members;
      cell.x = m.reduce((a, c) => a + c.x, 0) / m.length;
      cell.y = m.reduce((a, c) => a + c.y, 0) / m.length;
      cell.risk = m.reduce((best, c) => ((RISK_RANK[c.risk_level] ?? 9) < (RISK_RANK[best] ?? 9) ? c.risk_level : best), m[0].risk_level);
      out.push(cell);
    }
    return out;
  }

  _drawPoints(w, hgt) {
    clear(this.gPoints);
    const z = this.view.z;
    for (const cl of this.clusters()) {
      const [x, y] = this.toScreen(cl.x, cl.y);
      if (x < -40 || y < -40 || x > w + 40 || y > hgt + 40) continue;
      const color = RISK_COLORS[cl.risk] || "#64748b";
      if (cl.members.length === 1 || z >= MAX_Z - 0.01) {
        for (const c of cl.members) {
          const [px, py] = cl.members.length === 1 ? [x, y] : this.toScreen(c.x, c.y);
          const g = s("g", {
            class: "case-point" + (c.overdue ? " overdue" : "") + (this.selected?.number === c.number ? " selected" : ""),
            transform: `translate(${px.toFixed(1)},${py.toFixed(1)})`,
            "data-number": c.number,
            "data-risk": c.risk_level || "",
            tabindex: "0",
            role: "button",
            "aria-label": `案件 ${c.number} ${c.title || ""} 风险${c.risk_level || "未知"}`,
          });
          if (c.overdue) g.append(s("circle", { r: 11, class: "ring" }));
          g.append(s("circle", { r: 7, fill: RISK_COLORS[c.risk_level] || "#64748b" }));
          g.append(s("title", {}, `${c.number} ${c.title || ""}`));
          g.addEventListener("click", (ev) => { ev.stopPropagation(); this.select(c); });
          g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") this.select(c); });
          this.gPoints.append(g);
        }
        continue;
      }
      const n = cl.members.length;
      const r = 13 + Math.min(14, Math.log2(n) * 3);
      const g = s("g", {
        class: "cluster", transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`, "data-count": n, tabindex: "0", role: "button",
        "aria-label": `${n} 件案件，点击放大`,
      });
      g.append(s("circle", { r: r + 5, fill: color, "fill-opacity": 0.25 }));
      g.append(s("circle", { r, fill: color }));
      g.append(s("text", { class: "cluster-count", dy: "0.35em" }, String(n)));
      const zoomIn = (ev) => {
        ev.stopPropagation();
        this.centerOn(cl, Math.min(MAX_Z, this.view.z + 2));
      };
      g.addEventListener("click", zoomIn);
      g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") zoomIn(ev); });
      this.gPoints.append(g);
    }
  }

  select(c) {
    this.selected = c;
    clear(this.popup);
    const href = this.opts.caseHref ? this.opts.caseHref(c) : `/cases/${encodeURIComponent(c.number)}`;
    this.popup.append(...[
      h("button.popup-close", { type: "button", "aria-label": "关闭", onclick: () => this.deselect() }, "×"),
      h("div.popup-title", h(`span.chip.risk-${c.risk_level}`, c.risk_level || "—"), " ", h("strong", c.title || c.code || "案件")),
      h("div.mono.small", c.number),
      c.status ? h("div.small", `状态：${c.status}${c.overdue ? " · 已超期" : ""}`) : null,
      c.department_name ? h("div.small", `单位：${c.department_name}`) : null,
      c.address ? h("div.small.muted", c.address) : null,
      h("a.btn.btn-sm.btn-primary.popup-link", { href }, "查看案件"),
    ].filter(Boolean));
    this.popup.hidden = false;
    this._placePopup();
    this.opts.onCaseClick?.(c);
    this.render();
  }

  deselect() {
    this.selected = null;
    this.popup.hidden = true;
    this.render();
  }

  _placePopup() {
    const c = this.selected;
    const [x, y] = this.toScreen(c.x, c.y);
    const [w] = this.size();
    const pw = this.popup.offsetWidth || 220;
    this.popup.style.left = `${Math.max(8, Math.min(w - pw - 8, x - pw / 2))}px`;
    this.popup.style.top = `${Math.max(8, y + 14)}px`;
  }

  // -- input -----------------------------------------------------------------------

  _bindEvents() {
    const el = this.el;
    el.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const rect = el.getBoundingClientRect();
      const dz = Math.max(-1, Math.min(1, -ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0025)));
      this.zoomBy(dz, ev.clientX - rect.left, ev.clientY - rect.top);
    }, { passive: false });

    let drag = null;
    el.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0 || ev.target.closest(".map-controls, .map-popup, .case-point, .cluster")) return;
      drag = { x: ev.clientX, y: ev.clientY, moved: false, id: ev.pointerId };
    });
    el.addEventListener("pointermove", (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) {
        drag.moved = true;
        el.setPointerCapture(ev.pointerId);
        el.classList.add("dragging");
      }
      drag.x = ev.clientX;
      drag.y = ev.clientY;
      this.panBy(dx, dy);
    });
    const end = (ev) => {
      if (!drag) return;
      if (!drag.moved && ev.type === "pointerup" && !ev.target.closest(".map-controls, .map-popup")) this.deselect();
      el.classList.remove("dragging");
      drag = null;
    };
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    el.addEventListener("dblclick", (ev) => {
      if (ev.target.closest(".map-controls, .map-popup, .case-point, .cluster")) return;
      const rect = el.getBoundingClientRect();
      this.zoomBy(1, ev.clientX - rect.left, ev.clientY - rect.top);
    });
    el.addEventListener("keydown", (ev) => {
      if (ev.target !== el) return;
      const step = 80;
      const keys = {
        ArrowLeft: () => this.panBy(step, 0), ArrowRight: () => this.panBy(-step, 0),
        ArrowUp: () => this.panBy(0, step), ArrowDown: () => this.panBy(0, -step),
        "+": () => this.zoomBy(1), "=": () => this.zoomBy(1), "-": () => this.zoomBy(-1), "0": () => this.fit(),
        Escape: () => this.deselect(),
      };
      if (keys[ev.key]) {
        ev.preventDefault();
        keys[ev.key]();
      }
    });
  }
}

function clampZ(z) {
  return Math.max(MIN_Z, Math.min(MAX_Z, z));
}

/** Area-weighted centroid of a ring of [x, y] (falls back to the mean). */
function centroid(pts) {
  let a = 0, cx = 0, cy = 0;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const f = pts[j][0] * pts[i][1] - pts[i][0] * pts[j][1];
    a += f;
    cx += (pts[j][0] + pts[i][0]) * f;
    cy += (pts[j][1] + pts[i][1]) * f;
  }
  if (Math.abs(a) < 1e-9) {
    const n = pts.length || 1;
    return { x: pts.reduce((s, p) => s + p[0], 0) / n, y: pts.reduce((s, p) => s + p[1], 0) / n, area: 0 };
  }
  return { x: cx / (3 * a), y: cy / (3 * a), area: Math.abs(a / 2) };
}
