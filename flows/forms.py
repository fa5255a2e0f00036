"""Forms of the flow admin: nodes and edges edited as inlines, checked together as a flow file.

The node and edge formsets of one submitted flow share a :class:`GraphSubmission`. Once both
are cleaned, it builds the flow file they describe, runs the same static validation as
``importflow`` and the API, and puts every problem next to the node, edge, config or policy
field its path names. Nothing is saved unless the whole graph is valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any

from django import forms
from django.forms.models import BaseInlineFormSet
from django.forms.utils import ErrorList
from pydantic import TypeAdapter, ValidationError

from flows.access import connection_problems
from flows.config_forms import (
    OMIT,
    ConfigProperty,
    form_field,
    help_text,
    properties,
    to_config_value,
    to_initial,
)
from flows.definition import FlowSpec, NodePolicy
from flows.models import Flow, FlowEdge, FlowNode
from flows.validation import FlowProblem, validate_for_save
from nodes.registry import registry

CONFIG_FIELD = "cfg__{type}__{name}"
POLICY_FIELD = "policy__{name}"
_NODE_PATH = re.compile(r"^nodes\[(\d+)\](?:\.(.*))?$")
_EDGE_PATH = re.compile(r"^edges\[(\d+)\](?:\.(.*))?$")
_EDGE_FIELDS = {
    "from": "from_node",
    "to": "to_node",
    "from_port": "from_port",
    "to_port": "to_port",
}


def config_field_name(node_type: str, prop: str) -> str:
    return CONFIG_FIELD.format(type=node_type, name=prop)


def policy_field_name(prop: str) -> str:
    return POLICY_FIELD.format(name=prop)


@cache
def policy_properties() -> tuple[ConfigProperty, ...]:
    """The node policy's properties (retries, backoff, timeout), edited like config fields."""
    return tuple(properties(NodePolicy.model_json_schema()))


@cache
def catalog_properties() -> dict[str, tuple[ConfigProperty, ...]]:
    """The editable config properties of every node type (the registry is frozen once loaded)."""
    return {
        name: tuple(properties(cls.Config.model_json_schema()))
        for name, cls in registry.types().items()
    }


def catalog_ports() -> dict[str, dict[str, list[str]]]:
    """Port names per node type, for the edge selects."""
    return {
        name: {"inputs": [p.name for p in cls.inputs], "outputs": [p.name for p in cls.outputs]}
        for name, cls in registry.types().items()
    }


class KeySelect(forms.Select):
    """A select that keeps its current value as an option even when it is not (yet) a choice.

    Edge ends name nodes that may only exist in the submitted form; a stored node type may have
    left the catalog. Either way the value is shown and checked by flow validation.
    """

    def optgroups(self, name: str, value: list[Any], attrs: dict[str, Any] | None = None) -> Any:
        known = {str(choice[0]) for choice in self.choices}
        missing = [(v, v) for v in value if v and v not in known]
        if missing:
            self.choices = [*self.choices, *missing]
        return super().optgroups(name, value, attrs)


class FlowForm(forms.ModelForm):
    """The flow's own fields. The run timeout is checked against the flow file's schema."""

    class Meta:
        model = Flow
        fields = ["slug", "name", "description", "run_timeout_s"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "run_timeout_s" in self.fields:
            field = self.fields["run_timeout_s"]
            field.widget.attrs.update({"placeholder": "no limit", "class": "config-number"})
            field.help_text = _spec_help("run_timeout_s")

    def clean_run_timeout_s(self) -> int | None:
        return _spec_value("run_timeout_s", self.cleaned_data.get("run_timeout_s"))


@cache
def _spec_field(name: str) -> TypeAdapter[Any]:
    info = FlowSpec.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, info])


@cache
def _spec_help(name: str) -> str:
    """The help of a flow-file field: its description and bounds, as config fields show."""
    schema = FlowSpec.model_json_schema()
    prop = next(p for p in properties(schema) if p.name == name)
    return help_text(prop, schema)


def _spec_value(name: str, value: Any) -> Any:
    """``value`` checked by the flow file's own field, so the message is the CLI's."""
    try:
        return _spec_field(name).validate_python(value)
    except ValidationError as exc:
        raise forms.ValidationError(exc.errors(include_url=False)[0]["msg"]) from None


class NodeForm(forms.ModelForm):
    """One node: its key, its type, for each catalog type that type's config fields, and the
    node's policy (retries, backoff, timeout).

    The page shows only the fields of the selected type; only those make up the config.
    """

    node_key = forms.CharField(
        label="key *",
        required=False,
        help_text="Unique in the flow: letters, digits, - and _.",
        widget=forms.TextInput(attrs={"class": "vTextField node-key", "autocomplete": "off"}),
    )
    node_type = forms.CharField(
        label="type *",
        required=False,
        widget=KeySelect(attrs={"class": "node-type"}),
    )

    class Meta:
        model = FlowNode
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["node_type"].widget.choices = [
            ("", "---------"),
            *((name, f"{label} ({name})") for name, label in registry.choices()),
        ]
        if self.instance.pk:
            self.initial.update(node_key=self.instance.key, node_type=self.instance.type)
            for prop in catalog_properties().get(self.instance.type, ()):
                name = config_field_name(self.instance.type, prop.name)
                self.initial[name] = to_initial(prop, self.instance.config)
                self._fit_rows(name, self.initial[name])
            for prop in policy_properties():
                self.initial[policy_field_name(prop.name)] = to_initial(prop, self.instance.policy)

    def _fit_rows(self, name: str, text: Any) -> None:
        """Grow a text area to show a stored value whole (within reason)."""
        widget = self.fields[name].widget
        if isinstance(widget, forms.Textarea) and isinstance(text, str):
            widget.attrs["rows"] = max(
                int(widget.attrs.get("rows", 3)), min(16, text.count("\n") + 2)
            )

    @property
    def node_type_value(self) -> str:
        return (self.cleaned_data.get("node_type") or "").strip()

    def config(self) -> dict[str, Any]:
        """The config made of the selected type's fields (fields with errors are left out)."""
        properties = catalog_properties().get(self.node_type_value, ())
        return self._typed(properties, lambda name: config_field_name(self.node_type_value, name))

    def policy(self) -> dict[str, Any]:
        """The policy as typed; empty fields take the default (the import drops defaults)."""
        return self._typed(policy_properties(), policy_field_name)

    def _typed(
        self, properties: tuple[ConfigProperty, ...], field_name: Callable[[str], str]
    ) -> dict[str, Any]:
        """Each property's value from its form field, when the field is clean and not empty."""
        values: dict[str, Any] = {}
        for prop in properties:
            name = field_name(prop.name)
            if name in self.errors or name not in self.cleaned_data:
                continue
            value = to_config_value(prop, self.cleaned_data[name])
            if value is not OMIT:
                values[prop.name] = value
        return values

    def entry(self) -> dict[str, Any]:
        entry = {
            "key": (self.cleaned_data.get("node_key") or "").strip(),
            "type": self.node_type_value,
            "config": self.config(),
        }
        if policy := self.policy():
            entry["policy"] = policy
        if self.instance.pk is not None and self.instance.ui:
            entry["ui"] = self.instance.ui  # the designer's position is kept by the form
        return entry

    def config_field(self, prop: str) -> str | None:
        name = config_field_name(self.node_type_value, prop)
        return name if name in self.fields else None

    def policy_field(self, prop: str) -> str | None:
        name = policy_field_name(prop)
        return name if name in self.fields else None


def build_node_form() -> type[NodeForm]:
    """NodeForm with a declared field per config property of every catalog type, and one per
    policy property."""
    fields = {
        config_field_name(type_name, prop.name): form_field(prop, cls.Config.model_json_schema())
        for type_name, cls in registry.types().items()
        for prop in catalog_properties()[type_name]
    }
    policy_schema = NodePolicy.model_json_schema()
    for prop in policy_properties():
        field = form_field(prop, policy_schema)
        # Named as in the flow file: http_post has config fields of the same names.
        field.label = f"policy.{prop.name}"
        fields[policy_field_name(prop.name)] = field
    return type("CatalogNodeForm", (NodeForm,), fields)


class EdgeForm(forms.ModelForm):
    """One edge: from a node (and output port) to a node (and input port) of the same flow."""

    from_node = forms.CharField(
        label="from *", required=False, widget=KeySelect(attrs={"class": "edge-node"})
    )
    from_port = forms.CharField(
        label="from port",
        required=False,
        widget=KeySelect(attrs={"class": "edge-port", "data-ports": "outputs"}),
    )
    to_node = forms.CharField(
        label="to *", required=False, widget=KeySelect(attrs={"class": "edge-node"})
    )
    to_port = forms.CharField(
        label="to port",
        required=False,
        widget=KeySelect(attrs={"class": "edge-port", "data-ports": "inputs"}),
    )

    class Meta:
        model = FlowEdge
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            edge = self.instance
            self.initial.update(
                from_node=edge.source.key,
                from_port=edge.source_port,
                to_node=edge.target.key,
                to_port=edge.target_port,
            )

    def set_choices(self, keys: list[str], ports: list[str]) -> None:
        node_choices = [("", "---------"), *((k, k) for k in keys)]
        port_choices = [("", "(default)"), *((p, p) for p in ports)]
        for name in ("from_node", "to_node"):
            self.fields[name].widget.choices = node_choices
        for name in ("from_port", "to_port"):
            self.fields[name].widget.choices = port_choices

    def entry(self) -> dict[str, str]:
        data = {
            key: (self.cleaned_data.get(field) or "").strip() for key, field in _EDGE_FIELDS.items()
        }
        return {k: v for k, v in data.items() if v or k in ("from", "to")}


class GraphSubmission:
    """The node and edge formsets of one submitted flow, validated as a single flow file."""

    def __init__(self, flow: Any, validate_only: bool = False, user: Any = None) -> None:
        self.flow = flow
        self.validate_only = validate_only
        self.user = user  # its connections must be usable by them (None: no check)
        self.nodes: NodeFormSet | None = None
        self.edges: EdgeFormSet | None = None
        self.problems: list[FlowProblem] = []
        self.node_forms: list[NodeForm] = []
        self.edge_forms: list[EdgeForm] = []
        self.formset_errors: dict[str, list[str]] = {"nodes": [], "edges": []}
        self.validated = False
        self.version_changed = False
        self._running = False

    # -- what the forms describe ---------------------------------------------------------
    def node_keys(self) -> list[str]:
        """Keys of the nodes on the page: submitted ones when bound, stored ones otherwise."""
        if self.nodes is None:
            return []
        if not self.nodes.is_bound:
            return [form.instance.key for form in self.nodes.initial_forms]
        keys = []
        for form in self.nodes.forms:
            key = (form.data.get(form.add_prefix("node_key")) or "").strip()
            deleted = form.data.get(form.add_prefix("DELETE")) in ("on", "true", "1")
            if key and not deleted:
                keys.append(key)
        return keys

    def _live(self, formset: BaseInlineFormSet) -> list[Any]:
        """Forms that describe an item: not deleted, and not an untouched extra form."""
        live = []
        for index, form in enumerate(formset.forms):
            if formset.can_delete and formset._should_delete_form(form):
                continue
            if index >= formset.initial_form_count() and not form.has_changed():
                continue
            live.append(form)
        return live

    def flow_file(self) -> dict[str, Any]:
        """The flow file the submission describes (the flow's own fields from its form)."""
        flow = self.flow
        data: dict[str, Any] = {
            "slug": flow.slug or "new-flow",
            "name": flow.name or "new flow",
            "description": flow.description or "",
        }
        if flow.run_timeout_s is not None:
            data["run_timeout_s"] = flow.run_timeout_s
        data["nodes"] = [form.entry() for form in self.node_forms]
        data["edges"] = [form.entry() for form in self.edge_forms]
        return data

    # -- validation ----------------------------------------------------------------------
    def validate(self) -> None:
        """Check the whole graph once, after both formsets are cleaned; route the problems."""
        if self.validated or self._running or self.nodes is None or self.edges is None:
            return
        self._running = True
        try:
            self.nodes.full_clean_once()
            self.edges.full_clean_once()
            self.node_forms = self._live(self.nodes)
            self.edge_forms = self._live(self.edges)
            self.problems = validate_for_save(self.flow_file())[1]
            if self.user is not None:
                self.problems += connection_problems(self.user, self.flow_file()["nodes"])
            for problem in self.problems:
                self._route(problem)
            self.validated = True
        finally:
            self._running = False

    def _route(self, problem: FlowProblem) -> None:
        if match := _NODE_PATH.match(problem.path):
            index, rest = int(match[1]), match[2] or ""
            if index < len(self.node_forms):
                self._node_problem(self.node_forms[index], rest, problem.message)
                return
        elif match := _EDGE_PATH.match(problem.path):
            index, rest = int(match[1]), match[2] or ""
            if index < len(self.edge_forms):
                field = _EDGE_FIELDS.get(rest)
                _add(
                    self.edge_forms[index], field, problem.message if field else _at(rest, problem)
                )
                return
        elif problem.path == "edges":
            self.formset_errors["edges"].append(problem.message)
            return
        self.formset_errors["nodes"].append(str(problem))

    def _node_problem(self, form: NodeForm, rest: str, message: str) -> None:
        if rest in ("key", "type"):
            _add(form, f"node_{rest}", message)
            return
        for part, find in (("config", form.config_field), ("policy", form.policy_field)):
            if rest.startswith(f"{part}."):
                relative = rest[len(part) + 1 :]
                prop = re.split(r"[.\[]", relative, maxsplit=1)[0]
                field = find(prop)
                if field:
                    _add(form, field, message if relative == prop else f"{relative}: {message}")
                    return
        _add(form, None, f"{rest}: {message}" if rest else message)


def _at(rest: str, problem: FlowProblem) -> str:
    return f"{rest}: {problem.message}" if rest else problem.message


def _add(form: forms.BaseForm, field: str | None, message: str) -> None:
    """Add an error unless the field already shows one (a form-level error came first)."""
    if field is not None and field in form.errors:
        return
    form.add_error(field, message)


class _GraphFormSet(BaseInlineFormSet):
    kind = ""

    def __init__(self, *args: Any, graph: GraphSubmission | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.graph = graph or GraphSubmission(self.instance)
        setattr(self.graph, self.kind, self)

    def full_clean_once(self) -> None:
        if self._errors is None:
            self.full_clean()

    def validate_unique(self) -> None:
        """Duplicates are reported by flow validation, with the same message as the CLI."""

    def clean(self) -> None:
        self.graph.validate()

    def non_form_errors(self) -> ErrorList:
        errors = super().non_form_errors()
        extra = self.graph.formset_errors[self.kind]
        if not extra:
            return errors
        return ErrorList([*errors, *extra], error_class="nonform", renderer=self.renderer)


class NodeFormSet(_GraphFormSet):
    kind = "nodes"

    def is_valid(self) -> bool:
        # "Validate" re-renders the page with its findings instead of saving.
        return super().is_valid() and not self.graph.validate_only


class EdgeFormSet(_GraphFormSet):
    kind = "edges"

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        if isinstance(form, EdgeForm):
            ports = sorted({p for t in catalog_ports().values() for ps in t.values() for p in ps})
            form.set_choices(self.graph.node_keys(), ports)
