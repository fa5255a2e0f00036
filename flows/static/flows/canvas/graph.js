// The flow document the canvas edits (flow-file shape) and the rules of joining ports.
// No DOM here: the view asks this module what may connect and why not.

export const KEY_PATTERN = /^[A-Za-z0-9_-]{1,100}$/;

export class Graph {
  constructor(doc, catalog, compatible) {
    this.doc = doc;
    this.doc.nodes = doc.nodes || [];
    this.doc.edges = doc.edges || [];
    this.types = new Map(catalog.map((t) => [t.type, t]));
    this.compatible = new Set(compatible.map(([out, into]) => `${out}>${into}`));
    this.listeners = [];
    this.derivedPorts = new Map();
  }

  onChange(fn) { this.listeners.push(fn); }
  changed(what) { this.listeners.forEach((fn) => fn(what)); }

  type(node) { return node ? this.types.get(node.type) || null : null; }
  node(key) { return this.doc.nodes.find((n) => n.key === key) || null; }
  inputs(node) { const t = this.type(node); return t ? t.inputs : [{ name: "in", kind: "any" }]; }
  outputs(node) {
    const t = this.type(node);
    if (!t) return [{ name: "out", kind: "records" }];
    return t.dynamic_outputs ? this.configPorts(node) : t.outputs;
  }

  /** The output ports a node takes from its config (a branch: one per route), as the server's
   * last check derived them; until a check has, the ports its edges name. */
  configPorts(node) {
    const known = this.derivedPorts.get(node.key);
    if (known) return known;
    const named = this.doc.edges.filter((e) => e.from === node.key && e.from_port).map((e) => e.from_port);
    return [...new Set(named)].map((name) => ({ name, kind: "records", required: true, description: "" }));
  }

  /** Take the ports the server derived from each node's config (the validate view's schemas). */
  setDerivedPorts(schemas) {
    this.derivedPorts = new Map(Object.entries(schemas || {}).filter(([, s]) => s && s.ports && s.ports.length).map(([key, s]) => [key, s.ports]));
  }

  /** The port names an edge joins (an edge may leave them out when the node has one). */
  ends(edge) {
    const from = this.node(edge.from), to = this.node(edge.to);
    const outs = from ? this.outputs(from) : [], ins = to ? this.inputs(to) : [];
    const named = this.type(from)?.dynamic_outputs;  // an edge from such a node names its port
    return {
      fromPort: edge.from_port || (outs.length === 1 && !named ? outs[0].name : ""),
      toPort: edge.to_port || (ins.length === 1 ? ins[0].name : ""),
    };
  }

  kindsAccepted(inputKind) {
    return [...this.compatible].filter((p) => p.endsWith(`>${inputKind}`)).map((p) => p.split(">")[0]);
  }

  /** Why an edge from fromKey.fromPort to toKey.toPort may not be made (null: it may). */
  connectReason(fromKey, fromPort, toKey, toPort) {
    const from = this.node(fromKey), to = this.node(toKey);
    if (!from || !to) return "unknown node";
    if (fromKey === toKey) return `a node cannot feed itself ('${toKey}')`;
    const ins = this.inputs(to);
    if (!ins.length) {
      const label = this.type(to)?.label || to.type;
      return `'${toKey}' is a source (${label}) and takes no input`;
    }
    const out = this.outputs(from).find((p) => p.name === fromPort);
    const inp = ins.find((p) => p.name === toPort);
    if (!out || !inp) return "unknown port";
    if (!this.compatible.has(`${out.kind}>${inp.kind}`)) {
      const takes = this.kindsAccepted(inp.kind).join(" or ") || "nothing";
      return `port kinds do not fit: ${fromKey}.${out.name} gives ${out.kind}, ` +
        `${toKey}.${inp.name} takes ${takes}`;
    }
    const full = this.doc.edges.some((e) => {
      const ends = this.ends(e);
      return e.from === fromKey && e.to === toKey && ends.fromPort === fromPort && ends.toPort === toPort;
    });
    if (full) return `${toKey}.${toPort} already takes ${fromKey}.${fromPort}`;
    const path = this.path(toKey, fromKey);
    if (path) return `this edge would close a cycle: ${[...path, toKey].join(" → ")}`;
    return null;
  }

  /** A path of node keys from a to b following edges, or null. */
  path(a, b) {
    const seen = new Set([a]);
    const queue = [[a]];
    while (queue.length) {
      const trail = queue.shift();
      const last = trail[trail.length - 1];
      if (last === b) return trail;
      for (const e of this.doc.edges) {
        if (e.from === last && !seen.has(e.to)) { seen.add(e.to); queue.push([...trail, e.to]); }
      }
    }
    return null;
  }

  connect(fromKey, fromPort, toKey, toPort) {
    const reason = this.connectReason(fromKey, fromPort, toKey, toPort);
    if (reason) return reason;
    const edge = { from: fromKey, to: toKey };
    const source = this.node(fromKey);
    if (this.outputs(source).length > 1 || this.type(source)?.dynamic_outputs) edge.from_port = fromPort;
    if (this.inputs(this.node(toKey)).length > 1) edge.to_port = toPort;
    this.doc.edges.push(edge);
    this.changed("edges");
    return null;
  }

  removeEdge(index) { this.doc.edges.splice(index, 1); this.changed("edges"); }

  freeKey(base) {
    const stem = (base.replace(/[^A-Za-z0-9_-]/g, "_") || "node").slice(0, 90);
    if (!this.node(stem)) return stem;
    for (let i = 2; ; i += 1) if (!this.node(`${stem}_${i}`)) return `${stem}_${i}`;
  }

  addNode(typeName, x, y) {
    const node = { key: this.freeKey(typeName), type: typeName, config: {}, ui: { x: Math.round(x), y: Math.round(y) } };
    this.doc.nodes.push(node);
    this.changed("nodes");
    return node;
  }

  removeNode(key) {
    this.doc.nodes = this.doc.nodes.filter((n) => n.key !== key);
    this.doc.edges = this.doc.edges.filter((e) => e.from !== key && e.to !== key);
    this.changed("nodes");
  }

  /** Rename a node (edges follow); returns an error message or null. */
  rename(oldKey, newKey) {
    if (oldKey === newKey) return null;
    if (!KEY_PATTERN.test(newKey)) return "a key is 1-100 letters, digits, '-' or '_'";
    if (this.node(newKey)) return `another node is already called '${newKey}'`;
    this.node(oldKey).key = newKey;
    for (const e of this.doc.edges) {
      if (e.from === oldKey) e.from = newKey;
      if (e.to === oldKey) e.to = newKey;
    }
    this.changed("nodes");
    return null;
  }

  /** The document to send: nodes with empty policies left out. */
  toJSON() {
    const nodes = this.doc.nodes.map((n) => {
      const out = { key: n.key, type: n.type, config: n.config || {} };
      if (n.policy && Object.keys(n.policy).length) out.policy = n.policy;
      if (n.ui) out.ui = { x: Math.round(n.ui.x), y: Math.round(n.ui.y) };
      return out;
    });
    return { ...this.doc, nodes, edges: this.doc.edges };
  }
}
