// A config form generated from a node type's JSON Schema (the catalog's config_schema).
// Widgets by shape: conditions as field/operator/value rows, mappings as target <- source
// rows with casts, connections from a picker, enums as selects, numbers with their bounds,
// string maps as key/value rows; anything else as a JSON text area.

import { h } from "./dom.js";

export const ADVANCED = /retr|backoff|timeout|batch_size|partition/;

export function resolve(schema, root) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolve((root.$defs || {})[name] || {}, root);
  }
  return schema || {};
}

/** {schema, nullable} with anyOf [X, null] unwrapped. */
export function unwrap(schema, root) {
  const s = resolve(schema, root);
  if (Array.isArray(s.anyOf)) {
    const real = s.anyOf.filter((o) => o.type !== "null");
    if (real.length === 1) {
      const inner = resolve(real[0], root);
      return { schema: { ...inner, title: s.title, description: s.description, default: s.default }, nullable: real.length < s.anyOf.length };
    }
  }
  return { schema: s, nullable: false };
}

function isConditions(s, root) {
  if (s.type !== "array") return false;
  const items = resolve(s.items, root);
  return !!(items.properties && items.properties.field && items.properties.op);
}

function mappingDef(s, root) {
  if (s.type !== "object" || typeof s.additionalProperties !== "object") return null;
  const alts = s.additionalProperties.anyOf || [];
  for (const alt of alts) {
    const r = resolve(alt, root);
    if (r.properties && r.properties.source && r.properties.cast) return r;
  }
  return null;
}

export function widgetKind(name, schema, root) {
  const { schema: s } = unwrap(schema, root);
  if (name === "connection") return "connection";
  if (isConditions(s, root)) return "conditions";
  if (mappingDef(s, root)) return "mapping";
  if (Array.isArray(s.enum)) return "enum";
  if (s.type === "integer" || s.type === "number") return "number";
  if (s.type === "boolean") return "boolean";
  if (s.type === "string") return /query|sql/.test(name) ? "text" : "string";
  if (s.type === "object" && typeof s.additionalProperties === "object") {
    const v = unwrap(s.additionalProperties, root).schema;
    if (Array.isArray(v.enum)) return "pairs-enum";
    if (v.type === "string") return "pairs";
  }
  if (s.type === "object") return "pairs-json";
  return "json";
}

/** Text typed by a person -> a JSON value: numbers, true/false/null and JSON lists as such. */
export function parseLoose(text) {
  const t = text.trim();
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(t) || ["true", "false", "null"].includes(t) || /^[[{"]/.test(t)) {
    try { return JSON.parse(t); } catch { return text; }
  }
  return text;
}

export function showLoose(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * Build the form of one object schema.
 * ctx: {root, values (object edited in place), onChange, fields (upstream field names or null),
 *       connections, urls, only (filter on property names)}
 * Returns the element; each field is a .fp-field[data-field=name] with a .fp-field-errors list.
 */
export function schemaForm(objectSchema, ctx) {
  const root = ctx.root;
  const props = resolve(objectSchema, root).properties || {};
  const required = new Set(resolve(objectSchema, root).required || []);
  const box = h("div", { class: "fp-form" });
  for (const [name, raw] of Object.entries(props)) {
    if (ctx.only && !ctx.only(name)) continue;
    const { schema, nullable } = unwrap(raw, root);
    const kind = widgetKind(name, raw, root);
    const field = h("div", { class: `fp-field fp-w-${kind}`, "data-field": name });
    const id = `fp-f-${ctx.prefix}-${name}`;
    const title = (schema.title || name) + (required.has(name) ? " *" : "");
    const set = (value) => {
      if (value === undefined || value === "" || (value === null && !nullable)) delete ctx.values[name];
      else ctx.values[name] = value;
      ctx.onChange(name);
    };
    const current = ctx.values[name];
    let control;
    switch (kind) {
      case "connection": control = connectionPicker(id, current, nullable, ctx, set); break;
      case "conditions": control = conditionRows(schema, current, ctx, set); break;
      case "mapping": control = mappingRows(mappingDef(schema, root), current, ctx, set); break;
      case "enum": control = enumSelect(id, schema, current, nullable || !required.has(name), set); break;
      case "number": control = numberInput(id, schema, current, set); break;
      case "boolean": {
        control = h("input", { type: "checkbox", id, checked: current ?? schema.default ?? false });
        control.addEventListener("change", () => set(control.checked));
        break;
      }
      case "string":
      case "text": {
        control = h(kind === "text" ? "textarea" : "input", { id, class: kind === "text" ? "fp-code" : "", placeholder: schema.default ?? "" });
        if (kind === "text") control.rows = 5;
        control.value = current ?? "";
        control.addEventListener("input", () => set(control.value === "" ? undefined : control.value));
        break;
      }
      case "pairs":
      case "pairs-enum":
      case "pairs-json": control = pairRows(kind, schema, current, ctx, set); break;
      default: control = jsonArea(id, current, set);
    }
    field.append(
      h("label", { for: id, class: "fp-label" }, title),
      control,
      schema.description ? h("div", { class: "fp-help" }, schema.description) : "",
      h("ul", { class: "fp-field-errors errorlist" }),
    );
    box.append(field);
  }
  return box;
}

function enumSelect(id, schema, current, optional, set) {
  const select = h("select", { id });
  if (optional) select.append(h("option", { value: "" }, schema.default != null ? `(default: ${schema.default})` : "—"));
  for (const v of schema.enum) select.append(h("option", { value: v }, String(v)));
  select.value = current ?? (optional ? "" : schema.default ?? schema.enum[0]);
  select.addEventListener("change", () => set(select.value === "" ? undefined : select.value));
  return select;
}

function numberInput(id, schema, current, set) {
  const input = h("input", { type: "number", id, class: "fp-number" });
  const min = schema.minimum ?? schema.exclusiveMinimum;
  if (min !== undefined) input.min = min;
  if (schema.maximum !== undefined) input.max = schema.maximum;
  input.step = schema.type === "integer" ? "1" : "any";
  if (schema.default != null) input.placeholder = String(schema.default);
  input.value = current ?? "";
  const bounds = [min !== undefined ? `${schema.exclusiveMinimum !== undefined ? ">" : "≥"} ${min}` : "", schema.maximum !== undefined ? `≤ ${schema.maximum}` : ""].filter(Boolean).join(", ");
  input.addEventListener("input", () => {
    if (input.value === "") return set(undefined);
    const n = Number(input.value);
    set(Number.isNaN(n) ? input.value : n);
  });
  return bounds ? h("span", { class: "fp-number-box" }, input, h("span", { class: "fp-bounds" }, bounds)) : input;
}

function connectionPicker(id, current, nullable, ctx, set) {
  const select = h("select", { id, class: "fp-connection" });
  select.append(h("option", { value: "" }, nullable ? "— none —" : "— choose a connection —"));
  const names = ctx.connections.map((c) => c.name);
  for (const c of ctx.connections) select.append(h("option", { value: c.name }, `${c.name} (${c.scheme})`));
  if (current && !names.includes(current)) select.append(h("option", { value: current }, `${current} (does not exist)`));
  select.value = current ?? "";
  select.addEventListener("change", () => set(select.value || (nullable ? null : undefined)));
  const add = h("a", { href: ctx.urls.addConnection, target: "_blank", rel: "noopener", class: "fp-add-connection" }, "Add a connection");
  return h("span", { class: "fp-connection-box" }, select, " ", add);
}

function fieldChooser(value, ctx, placeholder, onInput) {
  if (ctx.fields && ctx.fields.length) {
    const select = h("select", { class: "fp-source-field" });
    select.append(h("option", { value: "" }, placeholder));
    const options = [...ctx.fields];
    if (value && !options.includes(value)) options.push(value);
    for (const f of options) select.append(h("option", { value: f }, f));
    select.value = value || "";
    select.addEventListener("change", () => onInput(select.value));
    return select;
  }
  const input = h("input", { class: "fp-source-field", placeholder: `${placeholder} (dotted path)` });
  input.value = value || "";
  input.addEventListener("input", () => onInput(input.value));
  return input;
}

function conditionRows(schema, current, ctx, set) {
  const itemSchema = resolve(schema.items, ctx.root);
  const ops = unwrap(itemSchema.properties.op, ctx.root).schema.enum || [];
  const rows = Array.isArray(current) ? current.map((c) => ({ ...c })) : [];
  const box = h("div", { class: "fp-rows fp-conditions" });
  const commit = () => set(rows.length ? rows.map((r) => ({ ...r })) : undefined);
  const draw = () => {
    box.replaceChildren();
    rows.forEach((row, i) => {
      const op = h("select", { class: "fp-cond-op" }, ...ops.map((o) => h("option", { value: o }, o)));
      op.value = row.op || ops[0];
      if (!row.op) row.op = op.value;
      const value = h("input", { class: "fp-cond-value", placeholder: "value" });
      value.value = showLoose(row.value);
      const noValue = () => ["is_null", "not_null"].includes(row.op);
      value.hidden = noValue();
      op.addEventListener("change", () => { row.op = op.value; value.hidden = noValue(); if (noValue()) delete row.value; commit(); });
      value.addEventListener("input", () => {
        let v = parseLoose(value.value);
        if (["in", "not_in"].includes(row.op) && typeof v === "string") v = v.split(",").map((s) => parseLoose(s.trim()));
        row.value = v; commit();
      });
      const field = fieldChooser(row.field, ctx, "field", (v) => { row.field = v; commit(); });
      const remove = h("button", { type: "button", class: "fp-row-remove", title: "Remove this condition" }, "×");
      remove.addEventListener("click", () => { rows.splice(i, 1); commit(); draw(); });
      box.append(h("div", { class: "fp-row fp-condition", "data-row": i }, field, op, value, remove));
    });
    const add = h("button", { type: "button", class: "button fp-row-add" }, "+ condition");
    add.addEventListener("click", () => { rows.push({ field: "", op: ops[0] }); draw(); commit(); });
    box.append(add);
  };
  draw();
  return box;
}

function mappingRows(def, current, ctx, set) {
  const casts = unwrap(def.properties.cast, ctx.root).schema.enum || [];
  const rows = Object.entries(current && typeof current === "object" ? current : {}).map(([target, spec]) =>
    typeof spec === "string" ? { target, source: spec } : { target, ...spec });
  const box = h("div", { class: "fp-rows fp-mapping" });
  const commit = () => {
    const out = {};
    for (const r of rows) {
      if (!r.target) continue;
      const { target, ...spec } = r;
      if ("value" in spec && spec.constant) { out[target] = { value: spec.value }; continue; }
      delete spec.constant; delete spec.value;
      Object.keys(spec).forEach((k) => (spec[k] === undefined || spec[k] === "") && delete spec[k]);
      out[target] = Object.keys(spec).length === 1 && spec.source ? spec.source : spec;
    }
    set(Object.keys(out).length ? out : undefined);
  };
  rows.forEach((r) => { if ("value" in r && !r.source) r.constant = true; });
  const draw = () => {
    box.replaceChildren();
    rows.forEach((row, i) => {
      const target = h("input", { class: "fp-map-target", placeholder: "output field" });
      target.value = row.target || "";
      target.addEventListener("input", () => { row.target = target.value; commit(); });
      const mode = h("select", { class: "fp-map-mode" }, h("option", { value: "field" }, "field"), h("option", { value: "constant" }, "value"));
      mode.value = row.constant ? "constant" : "field";
      const source = fieldChooser(row.source, ctx, "source field", (v) => { row.source = v; commit(); });
      const cast = h("select", { class: "fp-map-cast", title: "Convert the value" }, h("option", { value: "" }, "as is"), ...casts.map((c) => h("option", { value: c }, c)));
      cast.value = row.cast || "";
      cast.addEventListener("change", () => { row.cast = cast.value || undefined; commit(); });
      const constant = h("input", { class: "fp-map-value", placeholder: "constant value" });
      constant.value = showLoose(row.value);
      constant.addEventListener("input", () => { row.value = parseLoose(constant.value); commit(); });
      const showMode = () => { source.hidden = cast.hidden = !!row.constant; constant.hidden = !row.constant; };
      mode.addEventListener("change", () => {
        row.constant = mode.value === "constant";
        if (row.constant) { delete row.source; delete row.cast; row.value = parseLoose(constant.value); } else delete row.value;
        showMode(); commit();
      });
      showMode();
      const remove = h("button", { type: "button", class: "fp-row-remove", title: "Remove this field" }, "×");
      remove.addEventListener("click", () => { rows.splice(i, 1); commit(); draw(); });
      box.append(h("div", { class: "fp-row fp-map-row", "data-row": i }, target, h("span", { class: "fp-arrow" }, "←"), mode, source, cast, constant, remove));
    });
    const add = h("button", { type: "button", class: "button fp-row-add" }, "+ field");
    add.addEventListener("click", () => { rows.push({ target: "", source: "" }); draw(); });
    box.append(add);
  };
  draw();
  return box;
}

function pairRows(kind, schema, current, ctx, set) {
  const valueSchema = typeof schema.additionalProperties === "object" ? unwrap(schema.additionalProperties, ctx.root).schema : {};
  const rows = Object.entries(current && typeof current === "object" ? current : {}).map(([k, v]) => ({ k, v }));
  const box = h("div", { class: "fp-rows fp-pairs" });
  const commit = () => {
    const out = {};
    for (const r of rows) if (r.k) out[r.k] = r.v;
    set(Object.keys(out).length ? out : undefined);
  };
  const draw = () => {
    box.replaceChildren();
    rows.forEach((row, i) => {
      const key = h("input", { class: "fp-pair-key", placeholder: "name" });
      key.value = row.k;
      key.addEventListener("input", () => { row.k = key.value; commit(); });
      let value;
      if (kind === "pairs-enum") {
        value = h("select", { class: "fp-pair-value" }, ...valueSchema.enum.map((o) => h("option", { value: o }, o)));
        value.value = row.v ?? valueSchema.enum[0];
        row.v = value.value;
        value.addEventListener("change", () => { row.v = value.value; commit(); });
      } else {
        value = h("input", { class: "fp-pair-value", placeholder: "value" });
        value.value = kind === "pairs" ? row.v ?? "" : showLoose(row.v);
        value.addEventListener("input", () => { row.v = kind === "pairs" ? value.value : parseLoose(value.value); commit(); });
      }
      const remove = h("button", { type: "button", class: "fp-row-remove", title: "Remove" }, "×");
      remove.addEventListener("click", () => { rows.splice(i, 1); commit(); draw(); });
      box.append(h("div", { class: "fp-row", "data-row": i }, key, value, remove));
    });
    const add = h("button", { type: "button", class: "button fp-row-add" }, "+ entry");
    add.addEventListener("click", () => { rows.push({ k: "", v: kind === "pairs" ? "" : null }); draw(); });
    box.append(add);
  };
  draw();
  return box;
}

function jsonArea(id, current, set) {
  const area = h("textarea", { id, class: "fp-code", rows: 3 });
  area.value = current === undefined ? "" : JSON.stringify(current, null, 2);
  const error = h("div", { class: "fp-json-error" });
  area.addEventListener("input", () => {
    if (!area.value.trim()) { error.textContent = ""; return set(undefined); }
    try { set(JSON.parse(area.value)); error.textContent = ""; } catch (e) { error.textContent = `not JSON yet: ${e.message}`; }
  });
  return h("div", {}, area, error);
}
