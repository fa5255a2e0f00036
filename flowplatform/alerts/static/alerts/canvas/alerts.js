// The flow's alerts on the canvas (the flow file's "alerts" section): on which run events,
// to which webhook connection and e-mail addresses. The list is edited in place in the flow
// document; the flow's Save sends it with the graph, through the same checks as an imported
// file (an unknown event, no target, a bad address, "late" without "late_after"), and the
// problems come back next to their fields.

const EVENTS = [
  ["failed", "failed"],
  ["succeeded", "succeeded"],
  ["late", "late (an interval not succeeded in time)"],
  ["recovered", "recovered (the first success after failures)"],
];
const WEBHOOK_SCHEMES = ["http", "https"];

export function mount(host) {
  const { h, button } = host;
  let current = null; // the panel while it is drawn

  const list = () => (Array.isArray(host.doc.alerts) ? host.doc.alerts : []);

  const { button: toolbarButton, refresh: refreshButton } = host.listButton("Alerts", "fp-alerts-btn", "Who is told when a run of this flow fails, succeeds, is late or recovers");
  const { field } = host;

  function edited(redraw = false) {
    host.changed();
    refreshButton();
    if (redraw) host.open();
  }

  function events(alert) {
    const box = h("div", { class: "fp-alert-events" });
    const on = Array.isArray(alert.on) ? alert.on : [];
    for (const [event, label] of EVENTS) {
      const check = h("input", { type: "checkbox", class: `fp-a-on fp-a-on-${event}`, value: event, checked: on.includes(event) });
      check.addEventListener("change", () => {
        const chosen = new Set(Array.isArray(alert.on) ? alert.on : []);
        if (check.checked) chosen.add(event);
        else chosen.delete(event);
        alert.on = EVENTS.map(([e]) => e).filter((e) => chosen.has(e));
        if (event === "late" && !check.checked) delete alert.late_after;
        if (event === "late" && check.checked && alert.late_after === undefined) alert.late_after = "30m";
        edited(event === "late");
      });
      box.append(h("label", { class: "fp-alert-event" }, check, ` ${label}`));
    }
    return box;
  }

  function connection(alert) {
    const usable = host.page.connections.filter((c) => WEBHOOK_SCHEMES.includes(c.scheme));
    const picker = h("select", { class: "fp-a-connection fp-connection" }, h("option", { value: "" }, "— no webhook —"),
      ...usable.map((c) => h("option", { value: c.name }, `${c.name} (${c.scheme})`)));
    if (alert.connection && !usable.some((c) => c.name === alert.connection)) {
      picker.append(h("option", { value: alert.connection }, `${alert.connection} (not a web connection you may use)`));
    }
    picker.value = alert.connection ?? "";
    picker.addEventListener("change", () => {
      if (picker.value) alert.connection = picker.value;
      else delete alert.connection;
      edited();
    });
    return picker;
  }

  function emails(alert) {
    const input = h("input", { class: "fp-a-email", placeholder: "ops@example.com, oncall@example.com" });
    input.value = Array.isArray(alert.email) ? alert.email.join(", ") : "";
    input.addEventListener("input", () => {
      const addresses = input.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (addresses.length) alert.email = addresses;
      else delete alert.email;
      edited();
    });
    return input;
  }

  function lateAfter(alert) {
    const input = h("input", { class: "fp-a-late_after", placeholder: "30m" });
    input.value = alert.late_after ?? "";
    input.addEventListener("input", () => {
      alert.late_after = input.value;
      edited();
    });
    return input;
  }

  function card(alert, i) {
    const path = `alerts[${i}]`;
    const remove = h("button", { type: "button", class: "fp-row-remove fp-alert-remove", title: "Remove this alert" }, "×");
    remove.addEventListener("click", () => { host.doc.alerts.splice(i, 1); edited(true); });
    const box = h("div", { class: "fp-field fp-card fp-alert", "data-path": path, "data-index": i },
      h("div", { class: "fp-card-head" }, h("strong", {}, `Alert ${i + 1}`), remove),
      h("ul", { class: "fp-field-errors errorlist" }),
      field(`${path}.on`, "On *", events(alert)),
      field(`${path}.connection`, "Webhook", connection(alert), "The connection's URL (and headers) receive a JSON body with a Slack-compatible text."),
      field(`${path}.email`, "E-mail", emails(alert), "Addresses, separated by commas."));
    if (Array.isArray(alert.on) && alert.on.includes("late")) {
      box.append(field(`${path}.late_after`, "Late after *", lateAfter(alert), "How long after its interval ended a scheduled run may still succeed: 30m, 2h."));
    }
    return box;
  }

  function draw(panel, close) {
    const root = h("div", { class: "fp-field fp-alerts", "data-path": "alerts" }, h("ul", { class: "fp-field-errors errorlist" }));
    list().forEach((alert, i) => root.append(card(alert, i)));
    if (!list().length) root.append(h("p", { class: "fp-quiet" }, "No alert: nobody is told when a run ends."));
    const add = button("+ Alert", "fp-row-add fp-add-alert", "Add an alert");
    add.addEventListener("click", () => {
      if (!Array.isArray(host.doc.alerts)) host.doc.alerts = [];
      host.doc.alerts.push({ on: ["failed"] });
      edited(true);
    });
    panel.append(
      h("div", { class: "fp-panel-head" }, h("strong", {}, "Alerts"), close),
      h("p", { class: "fp-help" }, "Sent once per run and event, by webhook and/or e-mail; saved with the flow (Save)."),
      root, add);
    current = panel;
    host.markProblems(panel, host.problems(), null);
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
