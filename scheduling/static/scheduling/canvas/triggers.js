// The flow's triggers on the canvas (the flow file's "triggers" section): webhooks, runs after
// other flows, file arrival. The list is edited in place in the flow document; the flow's Save
// sends it with the graph, through the same checks as an imported file, and the problems come
// back next to their fields. A webhook's secret is generated through the API and shown once,
// in this panel, until the page is left: it is never part of the document or the page data.

const KINDS = { webhook: "Webhook", after: "After other flows", files: "File arrival" };
const FILE_SCHEMES = ["file", "s3"];

export function mount(host) {
  const { h, button } = host;
  const secrets = new Map(); // webhook name -> the secret generated on this page (shown once)
  let current = null; // the panel while it is drawn

  const list = () => (Array.isArray(host.doc.triggers) ? host.doc.triggers : []);
  const kindOf = (t) => (t && typeof t === "object" ? Object.keys(KINDS).find((k) => k in t) : undefined);

  const { button: toolbarButton, refresh: refreshButton } = host.listButton("Triggers", "fp-triggers-btn", "Webhooks, other flows' success and arriving files that start this flow");
  const { field } = host;

  function edited(redraw = false) {
    host.changed();
    refreshButton();
    if (redraw) host.open();
  }

  // -- small widgets ----------------------------------------------------------------------

  /** A text input bound to obj[key]; `keep`: an empty value stays (a kind's own key). */
  function text(obj, key, attrs = {}, keep = false) {
    const input = h("input", { class: `fp-t-${key}`, ...attrs });
    input.value = obj[key] ?? "";
    input.addEventListener("input", () => {
      if (input.value === "" && !keep) delete obj[key];
      else obj[key] = input.value;
      edited();
    });
    return input;
  }

  /** A number input bound to obj[key] (text that is not a number is sent as it is: the check
   * names it). */
  function number(obj, key, attrs = {}) {
    const input = h("input", { type: "number", class: `fp-number fp-t-${key}`, ...attrs });
    input.value = obj[key] ?? "";
    input.addEventListener("input", () => {
      if (input.value === "") delete obj[key];
      else obj[key] = Number.isNaN(Number(input.value)) ? input.value : Number(input.value);
      edited();
    });
    return input;
  }

  function select(obj, key, options, fallback, redraw = false) {
    const el = h("select", { class: `fp-t-${key}` }, ...options.map(([v, label]) => h("option", { value: v }, label)));
    el.value = obj[key] ?? fallback;
    el.addEventListener("change", () => {
      if (el.value === fallback) delete obj[key];
      else obj[key] = el.value;
      edited(redraw);
    });
    return el;
  }

  function checkbox(obj, key, fallback, redraw = false) {
    const el = h("input", { type: "checkbox", class: `fp-t-${key}`, checked: obj[key] ?? fallback });
    el.addEventListener("change", () => {
      if (el.checked === fallback) delete obj[key];
      else obj[key] = el.checked;
      edited(redraw);
    });
    return el;
  }

  /** name -> value rows (values typed loosely: numbers, true/false/null, JSON stay such). */
  function pairs(obj, key, loose) {
    const rows = Object.entries(obj[key] && typeof obj[key] === "object" ? obj[key] : {}).map(([k, v]) => ({ k, v }));
    const box = h("div", { class: "fp-rows fp-pairs" });
    const commit = () => {
      const out = {};
      for (const r of rows) if (r.k) out[r.k] = r.v;
      if (Object.keys(out).length) obj[key] = out;
      else delete obj[key];
      edited();
    };
    const draw = () => {
      box.replaceChildren();
      rows.forEach((row, i) => {
        const name = h("input", { class: "fp-pair-key", placeholder: "name" });
        name.value = row.k;
        name.addEventListener("input", () => { row.k = name.value; commit(); });
        const value = h("input", { class: "fp-pair-value", placeholder: "value" });
        value.value = typeof row.v === "string" || !loose ? row.v ?? "" : JSON.stringify(row.v);
        value.addEventListener("input", () => { row.v = loose ? parseLoose(value.value) : value.value; commit(); });
        const remove = h("button", { type: "button", class: "fp-row-remove", title: "Remove" }, "×");
        remove.addEventListener("click", () => { rows.splice(i, 1); commit(); draw(); });
        box.append(h("div", { class: "fp-row", "data-row": i }, name, value, remove));
      });
      const add = h("button", { type: "button", class: "button fp-row-add" }, "+ entry");
      add.addEventListener("click", () => { rows.push({ k: "", v: "" }); draw(); });
      box.append(add);
    };
    draw();
    return box;
  }

  // -- one card per trigger -----------------------------------------------------------------
  function card(t, i) {
    const path = `triggers[${i}]`;
    const kind = kindOf(t);
    const remove = h("button", { type: "button", class: "fp-row-remove fp-trigger-remove", title: "Remove this trigger" }, "×");
    remove.addEventListener("click", () => { host.doc.triggers.splice(i, 1); edited(true); });
    const enabled = h("label", { class: "fp-trigger-enabled" }, checkbox(t, "enabled", true), " enabled");
    const box = h("div", { class: "fp-field fp-card fp-trigger", "data-path": path, "data-kind": kind || "unknown", "data-index": i },
      h("div", { class: "fp-card-head" }, h("strong", {}, KINDS[kind] || "Unknown trigger"), enabled, remove),
      h("ul", { class: "fp-field-errors errorlist" }));
    if (kind === "webhook") webhookFields(box, t, path);
    else if (kind === "after") afterFields(box, t, path);
    else if (kind === "files") fileFields(box, t, path);
    else box.append(h("pre", { class: "fp-code" }, JSON.stringify(t, null, 2)));
    box.append(field(`${path}.params`, "Run params", pairs(t, "params", true), "Given to every run this trigger starts."));
    return box;
  }

  function webhookFields(box, t, path) {
    const url = host.data.hookUrl.replace("FLOW", host.slug() || "FLOW").replace("NAME", t.webhook || "NAME");
    box.append(
      field(`${path}.webhook`, "Name *", text(t, "webhook", { placeholder: "orders-created" }, true),
        h("span", {}, "Called at ", h("code", { class: "fp-hook-url" }, `POST ${url}`))),
      field(`${path}.response`, "Response", select(t, "response", [["accept", "accept: 202 at once"], ["wait", "wait: the run's result"]], "accept", true)));
    if (t.response === "wait") {
      box.append(field(`${path}.timeout_s`, "Wait at most (s)", number(t, "timeout_s", { min: 1, max: 300, placeholder: "30" })));
    }
    box.append(
      field(`${path}.rate_per_minute`, "Calls a minute", number(t, "rate_per_minute", { min: 1, placeholder: "the platform's limit" })),
      field(`${path}.secret`, "Secret", secretBox(t)));
  }

  function secretBox(t) {
    const name = t.webhook;
    const saved = host.data.webhooks[name];
    const box = h("div", { class: "fp-secret-box" });
    if (secrets.has(name)) {
      const shown = h("input", { class: "fp-secret", readonly: true, "aria-label": "the new secret" });
      shown.value = secrets.get(name);
      box.append(shown, h("div", { class: "fp-help fp-secret-note" }, "Copy it now: it is not shown again. Callers send it as a Bearer token or sign with it (X-Flowplatform-Signature)."));
      return box;
    }
    if (!saved) {
      box.append(h("span", { class: "fp-quiet" }, "Save the flow, then generate the webhook's secret here."));
      return box;
    }
    box.append(h("span", { class: "fp-quiet fp-secret-state" }, saved.has_secret ? "A secret is set (never shown again)." : "No secret yet: every call is refused."));
    if (!host.data.canRun) return box;
    const make = button(saved.has_secret ? "Replace the secret" : "Generate a secret", "fp-secret-btn", "A new secret replaces the old one at once; it is shown once");
    const error = h("div", { class: "fp-json-error" });
    make.addEventListener("click", async () => {
      make.disabled = true;
      const { ok, data } = await host.postJSON(host.data.secretUrl.replace("/0/", `/${saved.id}/`), {});
      if (!ok || !data || !data.secret) {
        error.textContent = (data && data.detail) || "the secret could not be generated";
        make.disabled = false;
        return;
      }
      secrets.set(name, data.secret);
      saved.has_secret = true;
      host.open();
    });
    box.append(" ", make, error);
    return box;
  }

  function afterFields(box, t, path) {
    const flows = h("input", { class: "fp-t-after", placeholder: "nightly-load, or several: load-eu, load-us", list: "fp-trigger-flows" });
    flows.value = Array.isArray(t.after) ? t.after.join(", ") : t.after ?? "";
    flows.addEventListener("input", () => {
      const slugs = flows.value.split(",").map((s) => s.trim()).filter(Boolean);
      t.after = slugs.length > 1 ? slugs : slugs[0] ?? "";
      edited();
    });
    flows.addEventListener("change", () => host.open()); // "wait for all" needs several
    box.append(
      field(`${path}.after`, "Flows *", flows, "Runs for the same data interval when a run of one of them ends so."),
      field(`${path}.status`, "When their run has", select(t, "status", [["succeeded", "succeeded"], ["failed", "failed"], ["finished", "finished (any end)"]], "succeeded")));
    if (Array.isArray(t.after)) {
      box.append(field(`${path}.wait_for_all`, "Wait for all", h("label", {}, checkbox(t, "wait_for_all", false), " once every flow above has, for the same interval")));
    }
  }

  function fileFields(box, t, path) {
    const connections = host.page.connections.filter((c) => FILE_SCHEMES.includes(c.scheme));
    const picker = h("select", { class: "fp-t-files fp-connection" }, h("option", { value: "" }, "— choose a file connection —"),
      ...connections.map((c) => h("option", { value: c.name }, `${c.name} (${c.scheme})`)));
    if (t.files && !connections.some((c) => c.name === t.files)) picker.append(h("option", { value: t.files }, `${t.files} (not a file connection you may use)`));
    picker.value = t.files ?? "";
    picker.addEventListener("change", () => { t.files = picker.value; edited(true); });
    const scheme = connections.find((c) => c.name === t.files)?.scheme;
    box.append(
      field(`${path}.files`, "Connection *", picker),
      field(`${path}.path`, "Files *", text(t, "path", { placeholder: "orders/*.csv" }, true), "A glob relative to the connection: * and ? within a folder, **/ across folders."),
      field(`${path}.every`, "Look every", text(t, "every", { placeholder: "1m" }), "At least 5s: 30s, 5m, 1h."));
    const batched = h("input", { type: "checkbox", class: "fp-t-batch", checked: !!t.batch });
    batched.addEventListener("change", () => {
      if (batched.checked) t.batch = { max_files: 100 };
      else delete t.batch;
      edited(true);
    });
    const batch = h("div", {}, h("label", {}, batched, " one run for the new files of a poll (their names: file_names)"));
    if (t.batch) {
      batch.append(h("div", { class: "fp-field", "data-path": `${path}.batch.max_files` },
        h("label", { class: "fp-label" }, "At most files a run"), number(t.batch, "max_files", { min: 1, max: 10000, placeholder: "100" }),
        h("ul", { class: "fp-field-errors errorlist" })));
    }
    box.append(field(`${path}.batch`, "Batch", batch, t.batch ? "" : "Off: one run per file (its name: file_name)."));
    const done = t.after_success || {};
    const mode = h("select", { class: "fp-t-after-success" },
      h("option", { value: "" }, "leave it in place"), h("option", { value: "move" }, "move it to a folder"),
      h("option", { value: "tag", disabled: scheme === "file" }, "tag it (S3)"));
    mode.value = "move_to" in done ? "move" : "tag" in done ? "tag" : "";
    mode.addEventListener("change", () => {
      if (mode.value === "move") t.after_success = { move_to: "done/" };
      else if (mode.value === "tag") t.after_success = { tag: { flowplatform: "done" } };
      else delete t.after_success;
      edited(true);
    });
    const action = h("div", {}, mode);
    if ("move_to" in done) {
      action.append(h("div", { class: "fp-field", "data-path": `${path}.after_success.move_to` },
        h("label", { class: "fp-label" }, "Folder"), text(done, "move_to", { placeholder: "done/" }, true),
        h("ul", { class: "fp-field-errors errorlist" })));
    } else if ("tag" in done) {
      action.append(h("div", { class: "fp-field", "data-path": `${path}.after_success.tag` },
        h("label", { class: "fp-label" }, "Tags"), pairs(done, "tag", false),
        h("ul", { class: "fp-field-errors errorlist" })));
    }
    box.append(field(`${path}.after_success`, "Once its run succeeded", action, "A file whose run failed stays where it is (and does not run again)."));
  }

  // -- the panel ----------------------------------------------------------------------------
  function draw(panel, close) {
    const root = h("div", { class: "fp-field fp-triggers", "data-path": "triggers" }, h("ul", { class: "fp-field-errors errorlist" }));
    list().forEach((t, i) => root.append(card(t, i)));
    if (!list().length) root.append(h("p", { class: "fp-quiet" }, "No trigger: the flow starts from its schedules, the API or Run now."));
    const adds = h("div", { class: "fp-trigger-adds" });
    for (const [kind, label] of Object.entries(KINDS)) {
      const add = button(`+ ${label}`, `fp-row-add fp-add-${kind}`, `Add a ${label.toLowerCase()} trigger`);
      add.addEventListener("click", () => {
        if (!Array.isArray(host.doc.triggers)) host.doc.triggers = [];
        host.doc.triggers.push(fresh(kind));
        edited(true);
      });
      adds.append(add);
    }
    const flows = h("datalist", { id: "fp-trigger-flows" }, ...host.data.flows.map((slug) => h("option", { value: slug })));
    panel.append(
      h("div", { class: "fp-panel-head" }, h("strong", {}, "Triggers"), close), flows,
      h("p", { class: "fp-help" }, "What starts this flow besides its schedules; saved with the flow (Save)."),
      root, adds);
    current = panel;
    host.markProblems(panel, host.problems(), null);
  }

  function fresh(kind) {
    if (kind === "webhook") {
      const names = new Set(list().map((t) => t.webhook));
      let n = 1;
      while (names.has(`hook-${n}`)) n += 1;
      return { webhook: `hook-${n}` };
    }
    if (kind === "after") return { after: "" };
    const first = host.page.connections.find((c) => FILE_SCHEMES.includes(c.scheme));
    return { files: first ? first.name : "", path: "*.csv", every: "1m" };
  }

  function update() {
    refreshButton();
    if (host.isOpen() && current) host.markProblems(current, host.problems(), null);
  }

  function focus(path) {
    if (!current) return;
    const fields = [...current.querySelectorAll(".fp-field[data-path]")]
      .filter((f) => path === f.dataset.path || path.startsWith(`${f.dataset.path}.`) || path.startsWith(`${f.dataset.path}[`))
      .sort((a, b) => b.dataset.path.length - a.dataset.path.length);
    const target = fields[0];
    if (!target) return;
    target.scrollIntoView({ block: "nearest" });
    target.querySelector("input, select, textarea")?.focus();
  }

  refreshButton();
  return { button: toolbarButton, draw, update, focus };
}

function parseLoose(text) {
  const t = text.trim();
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(t) || ["true", "false", "null"].includes(t) || /^[[{"]/.test(t)) {
    try { return JSON.parse(t); } catch { return text; }
  }
  return text;
}
