// The "Preview" tab: the node's first records (and its input's, for a transform), from the
// preview API: POST {flows}{slug}/preview/ (saved flow) or {flows}preview/ (the document on
// the canvas), body {"node", "limit", "params"}.

import { h, postJSON } from "./dom.js";

const LIMIT = 50;

/** The per-node results of a preview answer, as {key: {records, schema}}, whatever its form. */
export function perNode(body) {
  const nodes = body && (body.nodes ?? body.results ?? body);
  const out = {};
  if (Array.isArray(nodes)) {
    for (const item of nodes) if (item && (item.node || item.key)) out[item.node || item.key] = item;
  } else if (nodes && typeof nodes === "object") {
    Object.assign(out, nodes);
  }
  return out;
}

function recordsOf(entry) {
  if (!entry) return null;
  if (Array.isArray(entry.records)) return entry.records;
  if (entry.ports && typeof entry.ports === "object") {
    const first = Object.values(entry.ports)[0];
    return first && Array.isArray(first.records) ? first.records : null;
  }
  return null;
}

export function recordTable(records) {
  if (!records.length) return h("p", { class: "fp-quiet" }, "No records.");
  const columns = [];
  for (const r of records) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
  const cell = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  return h("div", { class: "fp-preview-scroll" }, h("table", { class: "fp-preview-table" },
    h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, ...records.map((r) => h("tr", {}, ...columns.map((c) => h("td", {}, cell(r[c]))))))));
}

export function previewPane({ graph, node, data, isNew, dirty, documentOf }) {
  const box = h("div", { class: "fp-preview" });
  const run = h("button", { type: "button", class: "button fp-preview-run" }, "Preview data");
  const out = h("div", { class: "fp-preview-out" });
  box.append(h("p", { class: "fp-help" }, `Runs '${node.key}' and the nodes before it on a sample (at most ${LIMIT} rows per source); sinks do not send anything.`), run, out);
  run.addEventListener("click", async () => {
    out.replaceChildren(h("p", { class: "fp-quiet" }, "Running the preview…"));
    const saved = !isNew && !dirty;
    const url = saved ? `${data.urls.apiFlows}${encodeURIComponent(data.flow.slug)}/preview/` : `${data.urls.apiFlows}preview/`;
    const body = { node: node.key, limit: LIMIT, params: {} };
    if (!saved) {
      // Positions mean nothing to a preview: the document goes without them.
      // The document as the toolbar and canvas hold it (slug and name from the toolbar); an
      // unnamed draft goes as "draft" ("preview" is a reserved slug).
      const doc = documentOf ? documentOf() : graph.toJSON();
      body.flow = { ...doc, slug: doc.slug || "draft", name: doc.name || "draft" };
    }
    let answer;
    try { answer = await postJSON(url, body); } catch (e) { answer = { status: 0, ok: false, data: null }; }
    out.replaceChildren();
    if (answer.status === 404 || answer.status === 405 || answer.status === 0) {
      out.append(h("p", { class: "fp-preview-unavailable errornote" }, "Data preview is not available on this server (the preview API did not answer). Validate and run the flow to see its data."));
      return;
    }
    if (!answer.ok) {
      const errors = (answer.data && (answer.data.errors || answer.data.problems)) || [];
      const detail = answer.data && (answer.data.detail || answer.data.title);
      out.append(h("p", { class: "errornote" }, `The preview failed${detail ? `: ${detail}` : ""}.`),
        h("ul", { class: "errorlist" }, ...errors.map((e) => h("li", {}, `${e.path ? `${e.path}: ` : ""}${e.message}`))));
      return;
    }
    const results = perNode(answer.data);
    if (answer.data && answer.data.timed_out) out.append(h("p", { class: "errornote" }, "The preview reached its time bound: what ran so far is shown."));
    const entry = results[node.key];
    const parents = entry && entry.inputs ? Object.values(entry.inputs).flat()
      : graph.doc.edges.filter((e) => e.to === node.key).map((e) => e.from);
    for (const parent of parents) {
      const records = recordsOf(results[parent]);
      if (records) out.append(h("h4", {}, `Input: ${parent}`), recordTable(records));
    }
    out.append(h("h4", {}, `Output: ${node.key}`));
    if (entry && entry.status && entry.status !== "ok") {
      out.append(h("p", { class: `fp-preview-status fp-preview-${entry.status}` }, `${entry.status.replace("_", " ")}${entry.message ? `: ${entry.message}` : ""}`));
    }
    const mine = recordsOf(entry);
    out.append(mine ? recordTable(mine) : h("p", { class: "fp-quiet" }, "The preview returned nothing for this node."));
    if (entry && entry.limit_reached) out.append(h("p", { class: "fp-help" }, `The first ${entry.count} records (the sample's limit).`));
  });
  return box;
}
