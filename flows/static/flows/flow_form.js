/* The flow designer: show each node's config for its type; fill the edge selects from the
   nodes on the page and the ports of their types. No dependencies, no network. */
"use strict";
(function () {
    function catalog() {
        const data = document.getElementById("flow-node-catalog");
        return data ? JSON.parse(data.textContent) : {};
    }

    // The output ports of nodes whose ports come from their config (a branch's routes), as
    // the page's graph declares them (a route added in the form is offered once validated).
    function configPorts() {
        const data = document.getElementById("flow-node-ports");
        return data ? JSON.parse(data.textContent) : {};
    }

    function nodeRows() {
        return Array.from(document.querySelectorAll("#nodes-group .inline-related"))
            .filter((row) => !row.classList.contains("empty-form"));
    }

    function isDeleted(row) {
        const box = row.querySelector("input[name$='-DELETE']");
        return (box && box.checked) || row.classList.contains("deleted");
    }

    function showConfig(row) {
        const select = row.querySelector("select.node-type");
        if (!select) { return; }
        row.querySelectorAll("fieldset.node-config").forEach((fieldset) => {
            const own = fieldset.classList.contains("node-config-" + select.value);
            fieldset.classList.toggle("fp-hidden", !own);
        });
    }

    function nodeTypes() {
        const types = {};
        nodeRows().forEach((row) => {
            const key = row.querySelector("input.node-key");
            const type = row.querySelector("select.node-type");
            if (key && type && key.value.trim() && !isDeleted(row)) {
                types[key.value.trim()] = type.value;
            }
        });
        return types;
    }

    function fill(select, values, blankLabel) {
        const current = select.value || select.dataset.value || "";
        const options = [["", blankLabel]].concat(values.map((v) => [v, v]));
        if (current && !values.includes(current)) { options.push([current, current]); }
        select.replaceChildren(...options.map(([value, label]) => new Option(label, value)));
        select.value = current;
    }

    function refreshEdges() {
        const types = nodeTypes();
        const ports = catalog();
        const derived = configPorts();
        document.querySelectorAll("#edges-group tr.form-row").forEach((row) => {
            row.querySelectorAll("select.edge-node").forEach((select) => {
                fill(select, Object.keys(types), "---------");
            });
            row.querySelectorAll("select.edge-port").forEach((select) => {
                const end = select.name.endsWith("from_port") ? "from_node" : "to_node";
                const node = row.querySelector("select[name$='-" + end + "']");
                const type = node ? types[node.value] : undefined;
                const fromConfig = select.dataset.ports === "outputs" && node && derived[node.value];
                const names = fromConfig || (type && ports[type] ? ports[type][select.dataset.ports] : []);
                if (fromConfig) { fill(select, names, "---------"); return; }  // always named
                fill(select, names.length > 1 ? names : [], names.length === 1 ? "(" + names[0] + ")" : "(default)");
            });
        });
    }

    // Say at once when a JSON field does not parse; the server checks it against the schema.
    function checkJson(area) {
        const anchor = area.closest(".flex-container") || area;
        let note = anchor.parentElement.querySelector(".fp-json-error");
        let message = "";
        if (area.value.trim()) {
            try { JSON.parse(area.value); } catch (error) { message = "not valid JSON yet: " + error.message; }
        }
        if (!note && message) {
            note = document.createElement("div");
            note.className = "fp-json-error";
            anchor.after(note);
        }
        if (note) { note.textContent = message; }
    }

    function refreshAll() {
        nodeRows().forEach(showConfig);
        refreshEdges();
    }

    document.addEventListener("DOMContentLoaded", function () {
        if (!document.getElementById("nodes-group")) { return; }
        document.querySelectorAll("select.edge-node, select.edge-port").forEach((select) => {
            select.dataset.value = select.value;
        });
        refreshAll();
        document.addEventListener("change", function (event) {
            if (event.target.matches("select.node-type")) {
                showConfig(event.target.closest(".inline-related"));
            }
            refreshEdges();
        });
        document.addEventListener("input", function (event) {
            if (event.target.matches("input.node-key")) { refreshEdges(); }
            if (event.target.matches("textarea.config-json")) { checkJson(event.target); }
        });
        document.addEventListener("formset:added", refreshAll);
        document.addEventListener("formset:removed", refreshEdges);
    });
})();
