// Sections of the flow file that other apps own (e.g. "triggers") and edit on the canvas with
// their own ES module (FlowFileSection.editor). The canvas knows nothing of what is in them:
//
//   mount(host) -> {button, draw(panel, closeButton), update(), focus(path)}
//
// host: {key, data (the section's canvas_data), doc (the flow document: the section's value is
// doc[key], edited in place), page (the canvas' data: connections, urls), h, button, postJSON,
// slug(), changed() (after every edit: marks the flow unsaved and re-checks it),
// problems() (the section's problems of the last check), open(), isOpen()}.
// `update()` runs after every check: it refreshes the button and, when the panel is open,
// the problems marked at the fields, without redrawing the panel (the user may be typing).

/** The section a problem path belongs to: "triggers" for "triggers[1].every". */
export function sectionOf(path) {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)/.exec(path || "");
  return m ? m[1] : "";
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
    };
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
