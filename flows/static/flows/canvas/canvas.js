// The flow canvas: palette, nodes with ports, live connection rules, config panel, problems,
// validate/save through the admin's JSON views. Plain ES modules, no build step. Sections of
// the flow file owned by other apps (triggers) bring their own editor module (sections.js).

import { h, postJSON } from "./dom.js";
import { Graph } from "./graph.js";
import { ADVANCED, schemaForm } from "./form.js";
import { previewPane } from "./preview.js";
import { loadSections, markProblems, sectionOf } from "./sections.js";

const data = JSON.parse(document.getElementById("fp-canvas-data").textContent);
const designer = document.getElementById("fp-designer");
const root = document.getElementById("fp-canvas-root");
const BOX = data.box;
const CATEGORY_ORDER = ["source", "transform", "destination", "sink"];
const SVG = "http://www.w3.org/2000/svg";

const graph = new Graph(data.flow, data.catalog, data.compatible);
const state = {
  zoom: 1, tx: 0, ty: 0,
  selectedNode: null, selectedEdge: null,
  problems: [], shown: false, schemas: {}, dirty: false,
  section: null,  // the flow-file section whose editor has the panel (e.g. "triggers")
};

// -- layout of the page -------------------------------------------------------------------
const slugInput = h("input", { class: "fp-slug", placeholder: "slug", "aria-label": "slug", value: data.flow.slug || "" });
const nameInput = h("input", { class: "fp-name", placeholder: "name", "aria-label": "name", value: data.flow.name || "" });
slugInput.readOnly = !data.isNew;
const status = h("span", { class: "fp-status", role: "status" });
const button = (label, cls, title) => h("button", { type: "button", class: `button ${cls}`, title }, label);
const validateBtn = button("Validate", "fp-validate-btn", "Run every check importflow and the API run");
const saveBtn = button("Save", "fp-save-btn default", "Save the graph as a new version (only when valid)");
const arrangeBtn = button("Arrange", "fp-arrange-btn", "Lay the nodes out left to right by level");
const fitBtn = button("Fit", "fp-fit-btn", "Show the whole flow");
const zoomOut = button("−", "fp-zoom-out", "Zoom out");
const zoomIn = button("+", "fp-zoom-in", "Zoom in");
const zoomLabel = h("span", { class: "fp-zoom-label" }, "100%");
saveBtn.disabled = !data.canSave;
const sectionButtons = h("span", { class: "fp-section-buttons" });
const toolbar = h("div", { class: "fp-toolbar" },
  h("label", {}, "Slug ", slugInput), h("label", {}, "Name ", nameInput),
  h("span", { class: "fp-spacer" }), sectionButtons, validateBtn, saveBtn,
  h("span", { class: "fp-sep" }), arrangeBtn, fitBtn, zoomOut, zoomLabel, zoomIn, status);
const problemBox = h("div", { class: "fp-problem-box", hidden: true });
const search = h("input", { type: "search", class: "fp-palette-search", placeholder: "Search node types…", "aria-label": "Search node types" });
const paletteList = h("div", { class: "fp-palette-list" });
const palette = h("aside", { class: "fp-palette" }, search, paletteList,
  h("p", { class: "fp-palette-hint" }, "Drag a type onto the canvas (or double-click it)."));
const edgeLayer = document.createElementNS(SVG, "svg");
edgeLayer.classList.add("fp-edges");
const stage = h("div", { class: "fp-stage" }, edgeLayer);
const empty = h("div", { class: "fp-empty" }, "Drag node types from the palette to start; join an output port (right) to an input port (left).");
const viewport = h("div", { class: "fp-viewport", tabindex: "0" }, stage, empty);
const panel = h("aside", { class: "fp-panel", hidden: true });
const toast = h("div", { class: "fp-toast", role: "alert", hidden: true });
root.append(toolbar, problemBox, h("div", { class: "fp-main" }, palette, viewport, panel), toast);

const typeLabel = (t) => (t ? t.label || t.type : "unknown type");
const categoryOf = (node) => graph.type(node)?.category || "unknown";

function say(text, kind = "info") {
  status.textContent = text;
  status.dataset.kind = kind;
}

let toastTimer = null;
document.addEventListener("pointerdown", () => { toast.hidden = true; }, true);
function showToast(text) {
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
}

// The canvas sits inside the admin's form: Enter in one of its fields commits that field,
// never submits the (hidden) form.
root.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && ev.target.matches("input:not([type=checkbox])")) {
    ev.preventDefault();
    ev.target.dispatchEvent(new Event("change", { bubbles: true }));
  }
});

// -- palette ------------------------------------------------------------------------------
function drawPalette() {
  const q = search.value.trim().toLowerCase();
  paletteList.replaceChildren();
  const groups = new Map();
  for (const t of data.catalog) {
    const text = `${t.type} ${t.label} ${t.description} ${t.category}`.toLowerCase();
    if (q && !text.includes(q)) continue;
    if (!groups.has(t.category)) groups.set(t.category, []);
    groups.get(t.category).push(t);
  }
  const order = [...groups.keys()].sort((a, b) => (CATEGORY_ORDER.indexOf(a) + 1 || 9) - (CATEGORY_ORDER.indexOf(b) + 1 || 9));
  for (const category of order) {
    paletteList.append(h("h3", { class: "fp-palette-group" }, category));
    for (const t of groups.get(category)) {
      const item = h("div", { class: "fp-palette-item", "data-type": t.type, "data-category": t.category, title: t.description, tabindex: "0" },
        h("span", { class: "fp-cat-dot" }), h("strong", {}, t.label || t.type), h("small", {}, t.description));
      item.addEventListener("pointerdown", (ev) => startPaletteDrag(ev, t));
      item.addEventListener("dblclick", () => addAtCentre(t.type));
      item.addEventListener("keydown", (ev) => { if (ev.key === "Enter") addAtCentre(t.type); });
      paletteList.append(item);
    }
  }
  if (!order.length) paletteList.append(h("p", { class: "fp-palette-none" }, "No node type matches."));
}
search.addEventListener("input", drawPalette);

function toStage(clientX, clientY) {
  const r = viewport.getBoundingClientRect();
  return { x: (clientX - r.left - state.tx) / state.zoom, y: (clientY - r.top - state.ty) / state.zoom };
}

function addAtCentre(type) {
  const r = viewport.getBoundingClientRect();
  const p = toStage(r.left + r.width / 2, r.top + r.height / 2);
  const node = graph.addNode(type, p.x - BOX.width / 2, p.y - 30);
  select(node.key);
}

function startPaletteDrag(ev, t) {
  if (ev.button !== 0) return;
  ev.preventDefault();
  const ghost = h("div", { class: "fp-ghost", "data-category": t.category }, t.label || t.type);
  document.body.append(ghost);
  const move = (e) => { ghost.style.left = `${e.clientX + 6}px`; ghost.style.top = `${e.clientY + 6}px`; };
  move(ev);
  const up = (e) => {
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", up);
    ghost.remove();
    const r = viewport.getBoundingClientRect();
    if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) return;
    const p = toStage(e.clientX, e.clientY);
    const node = graph.addNode(t.type, p.x - 20, p.y - 14);
    select(node.key);
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

// -- nodes and edges ----------------------------------------------------------------------
const height = (node) => BOX.header + Math.max(graph.inputs(node).length, graph.outputs(node).length, 1) * BOX.port_row + BOX.padding;
const portY = (i) => BOX.header + i * BOX.port_row + BOX.port_row / 2;

function portPoint(node, side, name) {
  const ports = side === "in" ? graph.inputs(node) : graph.outputs(node);
  const i = Math.max(0, ports.findIndex((p) => p.name === name));
  return { x: node.ui.x + (side === "in" ? 0 : BOX.width), y: node.ui.y + portY(i) };
}

function nodeProblems(key) { return state.problems.filter((p) => p.node === key); }

function drawNodes() {
  stage.querySelectorAll(".fp-node").forEach((el) => el.remove());
  for (const node of graph.doc.nodes) {
    node.ui = node.ui || { x: 40, y: 40 };
    const t = graph.type(node);
    const problems = nodeProblems(node.key);
    const el = h("div", {
      class: `fp-node${state.selectedNode === node.key ? " fp-selected" : ""}${problems.length ? " fp-has-problems" : ""}`,
      "data-key": node.key, "data-category": categoryOf(node), "data-type": node.type,
    });
    Object.assign(el.style, { left: `${node.ui.x}px`, top: `${node.ui.y}px`, width: `${BOX.width}px`, height: `${height(node)}px` });
    const head = h("div", { class: "fp-node-head", style: `height:${BOX.header}px` },
      h("span", { class: "fp-node-key" }, node.key),
      h("span", { class: "fp-node-type" }, typeLabel(t)),
      problems.length ? h("span", { class: "fp-node-badge", title: problems.map((p) => p.message).join("\n") }, String(problems.length)) : "");
    el.append(head);
    graph.inputs(node).forEach((p, i) => el.append(portEl(node, p, "in", i, problems)));
    graph.outputs(node).forEach((p, i) => el.append(portEl(node, p, "out", i, problems)));
    if (!graph.inputs(node).length) el.append(h("div", { class: "fp-no-input", style: `top:${portY(0) - 9}px`, title: "A source takes no input" }));
    el.addEventListener("pointerdown", (ev) => startMove(ev, node));
    stage.append(el);
  }
  empty.hidden = graph.doc.nodes.length > 0;
}

function portEl(node, port, side, i, problems) {
  const bad = side === "in" && problems.some((p) => /\.inputs\./.test(p.path) && p.path.endsWith(`.inputs.${port.name}`));
  const el = h("div", {
    class: `fp-port fp-port-${side} fp-kind-${port.kind}${bad ? " fp-port-problem" : ""}`,
    "data-port": port.name, "data-side": side, "data-kind": port.kind, "data-node": node.key,
    style: `top:${portY(i) - 9}px`,
    title: `${port.name} (${port.kind})${port.description ? `: ${port.description}` : ""}`,
  }, h("span", { class: "fp-port-dot" }), h("span", { class: "fp-port-name" }, port.name));
  if (side === "out") el.addEventListener("pointerdown", (ev) => startConnect(ev, node, port));
  return el;
}

function edgePath(a, b) {
  const dx = Math.max(40, Math.abs(b.x - a.x) / 2);
  return `M${a.x},${a.y} C${a.x + dx},${a.y} ${b.x - dx},${b.y} ${b.x},${b.y}`;
}

function drawEdges() {
  edgeLayer.replaceChildren();
  const problemEdges = new Set(state.problems.map((p) => (p.path.match(/^edges\[(\d+)\]/) || [])[1]).filter(Boolean).map(Number));
  graph.doc.edges.forEach((edge, index) => {
    const from = graph.node(edge.from), to = graph.node(edge.to);
    if (!from || !to) return;
    const ends = graph.ends(edge);
    const d = edgePath(portPoint(from, "out", ends.fromPort), portPoint(to, "in", ends.toPort));
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", `fp-edge${state.selectedEdge === index ? " fp-edge-selected" : ""}${problemEdges.has(index) ? " fp-edge-problem" : ""}`);
    g.dataset.index = index;
    g.dataset.from = edge.from;
    g.dataset.to = edge.to;
    for (const cls of ["fp-edge-hit", "fp-edge-line"]) {
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d);
      path.setAttribute("class", cls);
      g.append(path);
    }
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${edge.from}.${ends.fromPort} → ${edge.to}.${ends.toPort} (click, then Delete)`;
    g.append(title);
    g.addEventListener("pointerdown", (ev) => { ev.stopPropagation(); selectEdge(index); });
    edgeLayer.append(g);
  });
}

function draw() {
  drawNodes();
  drawEdges();
  drawProblems();
}

graph.onChange(() => { state.dirty = true; say("unsaved changes"); draw(); scheduleCheck(); });

// -- moving, panning, zooming -------------------------------------------------------------
function applyView() {
  stage.style.transform = `translate(${state.tx}px, ${state.ty}px) scale(${state.zoom})`;
  zoomLabel.textContent = `${Math.round(state.zoom * 100)}%`;
}

function startMove(ev, node) {
  if (ev.button !== 0 || ev.target.closest(".fp-port-out")) return;
  ev.stopPropagation();
  select(node.key);
  const start = { x: ev.clientX, y: ev.clientY, ux: node.ui.x, uy: node.ui.y };
  let moved = false;
  const el = stage.querySelector(`.fp-node[data-key="${CSS.escape(node.key)}"]`);
  const move = (e) => {
    node.ui.x = Math.round(start.ux + (e.clientX - start.x) / state.zoom);
    node.ui.y = Math.round(start.uy + (e.clientY - start.y) / state.zoom);
    moved = true;
    el.style.left = `${node.ui.x}px`;
    el.style.top = `${node.ui.y}px`;
    drawEdges();
  };
  const up = () => {
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", up);
    if (moved) { state.dirty = true; say("unsaved changes"); }
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

viewport.addEventListener("pointerdown", (ev) => {
  if (ev.target !== viewport && ev.target !== stage && ev.target !== edgeLayer) return;
  select(null);
  const start = { x: ev.clientX, y: ev.clientY, tx: state.tx, ty: state.ty };
  viewport.classList.add("fp-panning");
  const move = (e) => { state.tx = start.tx + e.clientX - start.x; state.ty = start.ty + e.clientY - start.y; applyView(); };
  const up = () => {
    viewport.classList.remove("fp-panning");
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", up);
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
});

function zoomAt(factor, cx, cy) {
  const r = viewport.getBoundingClientRect();
  const px = cx ?? r.left + r.width / 2, py = cy ?? r.top + r.height / 2;
  const p = toStage(px, py);
  state.zoom = Math.min(2, Math.max(0.25, state.zoom * factor));
  state.tx = px - r.left - p.x * state.zoom;
  state.ty = py - r.top - p.y * state.zoom;
  applyView();
}
viewport.addEventListener("wheel", (ev) => { ev.preventDefault(); zoomAt(ev.deltaY < 0 ? 1.1 : 1 / 1.1, ev.clientX, ev.clientY); }, { passive: false });
zoomIn.addEventListener("click", () => zoomAt(1.2));
zoomOut.addEventListener("click", () => zoomAt(1 / 1.2));

/** Show every node: the largest zoom (at most 100 %, at least 45 % so labels stay readable). */
function fit() {
  const nodes = graph.doc.nodes;
  const r = viewport.getBoundingClientRect();
  if (!nodes.length) { state.zoom = 1; state.tx = 0; state.ty = 0; return applyView(); }
  const minX = Math.min(...nodes.map((n) => n.ui.x)), minY = Math.min(...nodes.map((n) => n.ui.y));
  const maxX = Math.max(...nodes.map((n) => n.ui.x + BOX.width)), maxY = Math.max(...nodes.map((n) => n.ui.y + height(n)));
  const pad = 30;
  state.zoom = Math.max(0.45, Math.min(1, (r.width - 2 * pad) / (maxX - minX), (r.height - 2 * pad) / (maxY - minY)));
  state.tx = Math.max(pad, (r.width - (maxX - minX) * state.zoom) / 2) - minX * state.zoom;
  state.ty = Math.max(pad, (r.height - (maxY - minY) * state.zoom) / 2) - minY * state.zoom;
  applyView();
}
fitBtn.addEventListener("click", fit);

arrangeBtn.addEventListener("click", async () => {
  const { ok, data: body } = await postJSON(data.urls.layout, { flow: graph.toJSON() });
  if (!ok) return say("could not arrange the nodes", "error");
  for (const node of graph.doc.nodes) if (body.positions[node.key]) node.ui = body.positions[node.key];
  state.dirty = true;
  draw();
  fit();
});

// -- connecting ports: the live puzzle ----------------------------------------------------
function startConnect(ev, node, port) {
  if (ev.button !== 0) return;
  ev.preventDefault();
  ev.stopPropagation();
  const from = portPoint(node, "out", port.name);
  const line = document.createElementNS(SVG, "path");
  line.setAttribute("class", "fp-edge-draft");
  edgeLayer.append(line);
  viewport.classList.add("fp-connecting");
  // Mark every input port (and every source, which has none) with whether it fits.
  for (const el of stage.querySelectorAll(".fp-port-in")) {
    const reason = graph.connectReason(node.key, port.name, el.dataset.node, el.dataset.port);
    el.classList.add(reason ? "fp-port-blocked" : "fp-port-open");
    if (reason) el.dataset.reason = reason;
  }
  for (const el of stage.querySelectorAll(".fp-node")) {
    const target = graph.node(el.dataset.key);
    if (!graph.inputs(target).length || target.key === node.key) {
      el.classList.add("fp-node-blocked");
      el.dataset.reason = graph.connectReason(node.key, port.name, target.key, "") || "";
    }
  }
  const move = (e) => line.setAttribute("d", edgePath(from, toStage(e.clientX, e.clientY)));
  move(ev);
  const up = (e) => {
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", up);
    line.remove();
    viewport.classList.remove("fp-connecting");
    const hit = document.elementFromPoint(e.clientX, e.clientY);
    const portHit = hit && hit.closest(".fp-port-in");
    const nodeHit = hit && hit.closest(".fp-node");
    let reason = null;
    if (portHit) {
      reason = graph.connect(node.key, port.name, portHit.dataset.node, portHit.dataset.port);
    } else if (nodeHit && nodeHit.dataset.key !== node.key) {
      const target = graph.node(nodeHit.dataset.key);
      const ins = graph.inputs(target);
      reason = ins.length === 1
        ? graph.connect(node.key, port.name, target.key, ins[0].name)
        : graph.connectReason(node.key, port.name, target.key, "") || "drop on one of its input ports";
    } else if (nodeHit) {
      reason = graph.connectReason(node.key, port.name, node.key, "");
    }
    stage.querySelectorAll(".fp-port-blocked, .fp-port-open, .fp-node-blocked").forEach((el) => {
      el.classList.remove("fp-port-blocked", "fp-port-open", "fp-node-blocked");
      delete el.dataset.reason;
    });
    if (reason) showToast(`Cannot connect: ${reason}`);
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

// -- selection, deletion ------------------------------------------------------------------
function select(key) {
  state.selectedNode = key;
  state.selectedEdge = null;
  state.section = null;
  draw();
  drawPanel();
}

function selectEdge(index) {
  state.selectedEdge = index;
  state.selectedNode = null;
  state.section = null;
  draw();
  drawPanel();
}

/** Give the panel to a section's editor (its toolbar button, or a problem's link). */
function openSection(key) {
  state.selectedNode = null;
  state.selectedEdge = null;
  state.section = key;
  draw();
  drawPanel();
}

document.addEventListener("keydown", (ev) => {
  if (designer.dataset.mode !== "canvas") return;
  if (ev.target.closest && ev.target.closest("input, textarea, select")) return;
  if (ev.key !== "Delete" && ev.key !== "Backspace") return;
  if (state.selectedEdge !== null) { ev.preventDefault(); graph.removeEdge(state.selectedEdge); state.selectedEdge = null; drawPanel(); }
  else if (state.selectedNode) { ev.preventDefault(); const key = state.selectedNode; state.selectedNode = null; graph.removeNode(key); drawPanel(); }
});

// -- the config panel ---------------------------------------------------------------------
let panelTab = "config";

function upstreamFields(node) {
  const entry = state.schemas[node.key];
  if (!entry) return null;
  const schemas = Object.values(entry.inputs || {});
  if (schemas.length !== 1 || !schemas[0]) return null;
  return Object.keys(schemas[0]);
}

function drawPanel() {
  panel.replaceChildren();
  const editor = state.section && sections.get(state.section);
  if (editor) {
    const close = h("button", { type: "button", class: "fp-panel-close", title: "Close" }, "×");
    close.addEventListener("click", () => { state.section = null; drawPanel(); });
    panel.hidden = false;
    editor.draw(panel, close);
    return;
  }
  if (state.selectedEdge !== null) {
    const edge = graph.doc.edges[state.selectedEdge];
    if (!edge) { panel.hidden = true; return; }
    const ends = graph.ends(edge);
    const del = button("Delete edge", "fp-delete-edge", "Remove this edge (or press Delete)");
    del.addEventListener("click", () => { graph.removeEdge(state.selectedEdge); state.selectedEdge = null; drawPanel(); });
    panel.append(h("h2", {}, "Edge"), h("p", { class: "fp-edge-ends" }, `${edge.from}.${ends.fromPort} → ${edge.to}.${ends.toPort}`), del);
    panel.hidden = false;
    return;
  }
  const node = graph.node(state.selectedNode);
  if (!node) { panel.hidden = true; return; }
  panel.hidden = false;
  const t = graph.type(node);
  const keyInput = h("input", { class: "fp-key-input", value: node.key, "aria-label": "node key" });
  const keyError = h("div", { class: "fp-key-error errorlist" });
  keyInput.addEventListener("change", () => {
    const error = graph.rename(node.key, keyInput.value.trim());
    keyError.textContent = error || "";
    if (!error) { state.selectedNode = node.key; drawPanel(); }
  });
  const del = button("Delete node", "fp-delete-node", "Remove this node and its edges");
  del.addEventListener("click", () => { graph.removeNode(node.key); state.selectedNode = null; drawPanel(); });
  const close = h("button", { type: "button", class: "fp-panel-close", title: "Close" }, "×");
  close.addEventListener("click", () => select(null));
  panel.append(
    h("div", { class: "fp-panel-head", "data-category": categoryOf(node) }, h("span", { class: "fp-cat-dot" }),
      h("strong", {}, typeLabel(t)), close),
    h("label", { class: "fp-label" }, "Key ", keyInput), keyError,
  );
  const tabs = h("div", { class: "fp-tabs", role: "tablist" });
  const body = h("div", { class: "fp-tab-body" });
  for (const [name, label] of [["config", "Config"], ["preview", "Preview"]]) {
    const tab = h("button", { type: "button", role: "tab", class: `fp-tab${panelTab === name ? " fp-tab-active" : ""}`, "data-tab": name }, label);
    tab.addEventListener("click", () => { panelTab = name; drawPanel(); });
    tabs.append(tab);
  }
  panel.append(tabs, body, del);
  if (panelTab === "preview") {
    body.append(previewPane({ graph, node, data, isNew: data.isNew, dirty: state.dirty, documentOf: document_ }));
    return;
  }
  const own = nodeProblems(node.key);
  const general = own.filter((p) => !fieldOf(p));
  if (general.length) body.append(h("ul", { class: "errorlist fp-node-problems" }, ...general.map((p) => h("li", {}, problemWhere(p), p.message))));
  if (!t) { body.append(h("p", { class: "errornote" }, `Unknown node type '${node.type}'.`)); return; }
  node.config = node.config || {};
  const jsonToggle = h("input", { type: "checkbox", class: "fp-json-toggle" });
  const ctx = (values, prefix, only) => ({
    root: t.config_schema, values, prefix, only, connections: data.connections, urls: data.urls,
    fields: upstreamFields(node), onChange: () => { state.dirty = true; say("unsaved changes"); scheduleCheck(); },
  });
  const structured = h("div", { class: "fp-structured" },
    schemaForm(t.config_schema, ctx(node.config, `${node.key}-c`, (n) => !ADVANCED.test(n))));
  node.policy = node.policy || {};
  const advanced = h("details", { class: "fp-advanced" }, h("summary", {}, "Advanced: batching, retries, timeouts"),
    schemaForm(t.config_schema, ctx(node.config, `${node.key}-a`, (n) => ADVANCED.test(n))),
    h("h4", {}, "Node policy (the engine's retries and time limit)"),
    withPolicyNames(schemaForm(data.policySchema, { ...ctx(node.policy, `${node.key}-p`), root: data.policySchema })));
  structured.append(advanced);
  const area = h("textarea", { class: "fp-code fp-json-area", rows: 14, hidden: true });
  const areaError = h("div", { class: "fp-json-error" });
  area.addEventListener("input", () => {
    try {
      const value = JSON.parse(area.value);
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("an object with config (and policy)");
      node.config = value.config || {};
      node.policy = value.policy || {};
      areaError.textContent = "";
      state.dirty = true;
      scheduleCheck();
    } catch (e) { areaError.textContent = `not valid yet: ${e.message}`; }
  });
  jsonToggle.addEventListener("change", () => {
    if (jsonToggle.checked) area.value = JSON.stringify({ config: node.config, policy: node.policy }, null, 2);
    area.hidden = !jsonToggle.checked;
    structured.hidden = jsonToggle.checked;
    if (!jsonToggle.checked) drawPanel();
  });
  body.append(h("label", { class: "fp-json-switch" }, jsonToggle, " JSON"), structured, area, areaError);
  markFieldProblems(node);
  if (advanced.querySelector(".fp-field-errors li")) advanced.open = true;
}

function withPolicyNames(form) {
  form.querySelectorAll(".fp-field").forEach((f) => { f.dataset.policy = f.dataset.field; delete f.dataset.field; });
  return form;
}

/** The config (or policy) field a problem is about: {part, name, rest} or null. */
function fieldOf(problem) {
  const m = problem.path.match(/^nodes\[\d+\]\.(config|policy)\.([A-Za-z0-9_]+)(.*)$/);
  return m ? { part: m[1], name: m[2], rest: m[3] } : null;
}

function problemWhere(p) {
  const f = fieldOf(p);
  return h("code", {}, f ? `${f.name}${f.rest}: ` : p.path ? `${p.path}: ` : "");
}

function markFieldProblems(node) {
  for (const p of nodeProblems(node.key)) {
    const f = fieldOf(p);
    if (!f) continue;
    const sel = f.part === "policy" ? `[data-policy="${f.name}"]` : `[data-field="${f.name}"]`;
    const field = panel.querySelector(`.fp-field${sel}`);
    if (!field) continue;
    field.classList.add("fp-field-problem");
    field.querySelector(".fp-field-errors").append(h("li", {}, `${f.name}${f.rest}: ${p.message}`));
    const row = f.rest.match(/^\[(\d+)\]/);
    if (row) field.querySelector(`.fp-row[data-row="${row[1]}"]`)?.classList.add("fp-row-problem");
  }
}

// -- problems -----------------------------------------------------------------------------
function drawProblems() {
  problemBox.replaceChildren();
  if (!state.shown) { problemBox.hidden = true; return; }
  problemBox.hidden = false;
  if (!state.problems.length) {
    problemBox.className = "fp-problem-box fp-ok";
    problemBox.append(h("p", {}, "No problems found."));
    return;
  }
  problemBox.className = "fp-problem-box";
  const n = state.problems.length;
  const list = h("ul", { class: "fp-problem-list" });
  for (const p of state.problems) {
    const f = fieldOf(p);
    const where = p.node
      ? `node '${p.node}'${f ? ` · ${f.name}${f.rest}` : p.path ? ` · ${p.path.replace(/^nodes\[\d+\]\.?/, "") || "node"}` : ""}`
      : p.path || "flow";
    const link = h("a", { href: "#", class: "fp-problem-link", "data-node": p.node || "" }, where);
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      if (p.node && graph.node(p.node)) {
        panelTab = "config";
        select(p.node);
        centreOn(graph.node(p.node));
        const field = panel.querySelector(".fp-field-problem");
        field?.scrollIntoView({ block: "nearest" });
        field?.querySelector("input, select, textarea")?.focus();
      } else if (sections.has(sectionOf(p.path))) {
        openSection(sectionOf(p.path));
        sections.get(sectionOf(p.path)).focus(p.path);
      } else {
        const edge = p.path.match(/^edges\[(\d+)\]/);
        if (edge) selectEdge(Number(edge[1]));
        else if (p.path === "slug") slugInput.focus();
        else if (p.path === "name") nameInput.focus();
      }
    });
    list.append(h("li", {}, link, ": ", p.message));
  }
  problemBox.append(h("p", { class: "fp-problem-title" }, `${n} problem${n > 1 ? "s" : ""}: the flow cannot be saved until they are fixed.`), list);
}

function centreOn(node) {
  const r = viewport.getBoundingClientRect();
  const sx = node.ui.x * state.zoom + state.tx, sy = node.ui.y * state.zoom + state.ty;
  if (sx < 0 || sy < 0 || sx + BOX.width * state.zoom > r.width || sy + height(node) * state.zoom > r.height) {
    state.tx = r.width / 2 - (node.ui.x + BOX.width / 2) * state.zoom;
    state.ty = r.height / 2 - (node.ui.y + height(node) / 2) * state.zoom;
    applyView();
  }
}

function document_() {
  const doc = graph.toJSON();
  doc.slug = slugInput.value.trim();
  doc.name = nameInput.value.trim();
  return doc;
}

let checkTimer = null;
let checkSeq = 0;
function scheduleCheck() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(() => check(false), 500);
}

/** Validate the document; ``show`` puts the problem list up (it stays up, live, afterwards). */
async function check(show) {
  clearTimeout(checkTimer);
  const seq = ++checkSeq;
  const doc = document_();
  const probe = { ...doc, slug: doc.slug || "new-flow", name: doc.name || "new flow" };
  const { ok, data: body } = await postJSON(data.urls.validate, { flow: probe });
  if (seq !== checkSeq) return null;
  if (!ok || !body) { say("the check failed; try again", "error"); return null; }
  const own = body.problems.filter((p) => !(p.path === "slug" && !doc.slug) && !(p.path === "name" && !doc.name));
  if (!doc.slug) own.unshift({ path: "slug", node: null, message: "give the flow a slug (letters, digits, '-', '_')" });
  if (!doc.name) own.unshift({ path: "name", node: null, message: "give the flow a name" });
  const selected = graph.node(state.selectedNode);
  const signature = () => (selected ? JSON.stringify([upstreamFields(selected), nodeProblems(selected.key)]) : "");
  const before = signature();
  state.problems = own;
  state.schemas = body.schemas || {};
  graph.setDerivedPorts(state.schemas);
  if (show) state.shown = true;
  const active = document.activeElement;
  const typing = panel.contains(active) && active.matches("input, textarea, select");
  drawNodes();
  drawEdges();
  drawProblems();
  for (const editor of sections.values()) editor.update();
  if ((show || signature() !== before) && !typing && !state.section) drawPanel();
  return own;
}

validateBtn.addEventListener("click", async () => {
  say("checking…");
  const problems = await check(true);
  if (problems) say(problems.length ? `${problems.length} problem(s)` : "valid", problems.length ? "error" : "ok");
});

saveBtn.addEventListener("click", async () => {
  say("saving…");
  const problems = await check(true);
  if (!problems) return;
  if (problems.length) return say("not saved: fix the problems listed above", "error");
  const { ok, data: body } = await postJSON(data.urls.save, { flow: document_(), new: data.isNew });
  if (!ok) {
    state.problems = (body && body.problems) || [{ path: "", node: null, message: "the flow could not be saved" }];
    state.shown = true;
    draw();
    return say("not saved", "error");
  }
  state.dirty = false;
  window.location.assign(body.url);
});

[slugInput, nameInput].forEach((el) => el.addEventListener("input", () => { state.dirty = true; scheduleCheck(); }));

// -- sections of the flow file with their own editor (triggers) ----------------------------
const sections = new Map();
const sectionsReady = loadSections(data.sections || [], {
  doc: graph.doc, page: data, h, button, postJSON, markProblems,
  slug: () => slugInput.value.trim(),
  changed: () => { state.dirty = true; say("unsaved changes"); scheduleCheck(); },
  problems: (key) => state.problems.filter((p) => sectionOf(p.path) === key),
  open: openSection,
  isOpen: (key) => state.section === key,
}).then((loaded) => {
  for (const [key, editor] of loaded) {
    sections.set(key, editor);
    if (editor.button) sectionButtons.append(editor.button);
  }
}).catch((e) => say(`a section editor did not load: ${e.message}`, "error"));

// -- start --------------------------------------------------------------------------------
drawPalette();
draw();
applyView();
if (designer.dataset.mode === "canvas") {
  fit();
  if (graph.doc.nodes.length) check(false);
}
window.fpCanvas = { graph, state };  // for the browser console and tests
sectionsReady.finally(() => { root.dataset.ready = "true"; });
