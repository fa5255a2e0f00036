// Sections of the flow file that other apps own (e.g. "triggers") and edit on the canvas with
// their own ES module (FlowFileSection.editor). The canvas knows nothing of what is in them:
//
//   mount(host) -> {button, draw(panel, closeButton), update(), focus(path)}
//
// host: {key, data (the section's canvas_data), doc (the flow document: the section's value is
// doc[key], edited in place), page (the canvas' data: connections, urls), h, button, postJSON,
// slug(), changed() (after every edit: marks the flow unsaved and re-checks it),
// problems() (the section's problems of the last check), open(), isOpen(),
// field(path, label, control, help) (a panel field its problems are marked at),
// listButton(label, cls, title) (the toolbar button: {button, refresh()})}.
// `update()` runs after every check: it refreshes the button and, when the panel is open,
// the problems marked at the fields, without redrawing the panel (the user may be typing).

/** The section a problem path belongs to: "triggers" for "triggers[1].every". */
export function sectionOf(path) {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)/.exec(path || "");
  return m ? m[1] : "";
}

/** A field of a section's panel: label, control, help, and the list `markProblems` fills. */
function field(h, path, label, control, help) {
  return h("div", { class: "fp-field", "data-path": path },
    h("label", { class: "fp-label" }, label), control,
    help ? h("div", { class: "fp-help" }, help) : "",
    h("ul", { class: "fp-field-errors errorlist" }));
}

/**
 * A section's toolbar button that opens its panel: "Label (n)" while the section's list holds
 * n items, marked while the section has problems; `refresh()` after every edit and check.
 */
function listButton(own, label, cls, title) {
  const el = own.button(label, cls, title);
  el.addEventListener("click", () => own.open());
  const refresh = () => {
    const value = own.doc[own.key];
    const n = Array.isArray(value) ? value.length : 0;
    el.textContent = n ? `${label} (${n})` : label;
    el.classList.toggle("fp-has-problems", own.problems().length > 0);
  };
  return { button: el, refresh };
}

export async function loadSections(list, host) {
  const loaded = new Map();
  for (const section of list) {
    const module = await import(section.editor);
    const own = {
      ...host,
      key: section.key,
      data: section.data,
      problems: () => host.problems(section.key),
      open: () => host.open(section.key),
      isOpen: () => host.isOpen(section.key),
      field: (path, label, control, help) => field(host.h, path, label, control, help),
    };
    own.listButton = (label, cls, title) => listButton(own, label, cls, title);
    loaded.set(section.key, module.mount(own));
  }
  return loaded;
}

/**
 * Mark problems at the fields of a panel: each `.fp-field[data-path]` whose path is the
 * longest prefix of a problem's path gets the message (its `.fp-field-errors`); the others go
 * to `general` (an element, or null to drop them). Returns the marked fields.
 */
export function markProblems(panel, problems, general) {
  panel.querySelectorAll(".fp-field-problem").forEach((el) => el.classList.remove("fp-field-problem"));
  panel.querySelectorAll(".fp-field-errors").forEach((el) => el.replaceChildren());
  if (general) general.replaceChildren();
  const fields = [...panel.querySelectorAll(".fp-field[data-path]")];
  const marked = [];
  for (const p of problems) {
    const field = fields
      .filter((f) => p.path === f.dataset.path || p.path.startsWith(`${f.dataset.path}.`) || p.path.startsWith(`${f.dataset.path}[`))
      .sort((a, b) => b.dataset.path.length - a.dataset.path.length)[0];
    const where = field ? p.path.slice(field.dataset.path.length).replace(/^\./, "") : "";
    const text = `${where ? `${where}: ` : ""}${p.message}`;
    const li = document.createElement("li");
    li.textContent = text;
    if (field) {
      field.classList.add("fp-field-problem");
      field.querySelector(":scope > .fp-field-errors").append(li);
      marked.push(field);
    } else if (general) {
      li.textContent = `${p.path}: ${p.message}`;
      general.append(li);
    }
  }
  return marked;
}
