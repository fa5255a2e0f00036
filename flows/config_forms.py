"""Form fields generated from a node type's config JSON Schema.

Each top-level property of the schema becomes one field: text, number, checkbox or choice for
scalars, and a JSON editor for nested parts (filter conditions, mappings, params). Fields only
convert what the browser sends into JSON values: checking them is left to the node's config
model, so the admin shows the same messages as the CLI and the API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import forms

#: Property names whose text is long enough to deserve a text area.
LONG_TEXT = frozenset({"query", "sql", "body", "template"})

#: What an empty field means: leave the key out of the config (the model's default applies).
OMIT = object()


@dataclass(frozen=True)
class ConfigProperty:
    """One top-level property of a config schema and how it is edited."""

    name: str
    kind: str  # "text", "integer", "number", "boolean", "choice" or "json"
    required: bool
    schema: dict[str, Any]
    choices: tuple[str, ...] = ()

    @property
    def default(self) -> Any:
        return self.schema.get("default", OMIT)


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/Name``) to its definition."""
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return {**root.get("$defs", {}).get(ref.rsplit("/", 1)[1], {}), **_without_ref(schema)}
    return schema


def _without_ref(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "$ref"}


def _non_null(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """An ``anyOf [X, null]`` reduced to X (other unions stay as they are)."""
    options = [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        merged = {**_without_any_of(schema), **resolve(options[0], root)}
        return merged
    return resolve(schema, root)


def _without_any_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "anyOf"}


def properties(schema: dict[str, Any]) -> list[ConfigProperty]:
    """The editable properties of a config schema, in declaration order."""
    required = set(schema.get("required", []))
    found = []
    for name, raw in schema.get("properties", {}).items():
        prop = _non_null(raw, schema)
        kind, choices = _kind(prop)
        found.append(ConfigProperty(name, kind, name in required, prop, choices))
    return found


def _kind(prop: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    kind = prop.get("type")
    if "enum" in prop:
        return "choice", tuple(str(v) for v in prop["enum"])
    if kind == "string":
        return "text", ()
    if kind in ("integer", "number", "boolean"):
        return str(kind), ()
    return "json", ()


def shape(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> str:
    """A compact description of a nested value, e.g. ``[{field*, op*, value}]``."""
    schema = _non_null(schema, root)
    if depth > 3:
        return "…"
    if "anyOf" in schema:
        return " or ".join(shape(o, root, depth + 1) for o in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"[{shape(schema.get('items', {}), root, depth + 1)}, …]"
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        if props:
            required = set(schema.get("required", []))
            names = ", ".join(f"{n}{'*' if n in required else ''}" for n in props)
            return "{" + names + "}"
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return "{name: " + shape(extra, root, depth + 1) + ", …}"
        return "{name: value, …}"
    return str(kind or "any value")


def enum_notes(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> list[str]:
    """``op: one of eq, ne, …`` for every enumerated property nested in ``schema``."""
    schema = _non_null(schema, root)
    if depth > 3:
        return []
    notes: list[str] = []
    for option in schema.get("anyOf", []):
        notes += enum_notes(option, root, depth + 1)
    if schema.get("type") == "array":
        notes += enum_notes(schema.get("items", {}), root, depth + 1)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        notes += enum_notes(extra, root, depth + 1)
    for name, sub in schema.get("properties", {}).items():
        sub = _non_null(sub, root)
        if "enum" in sub:
            notes.append(f"{name}: {', '.join(str(v) for v in sub['enum'])}")
        else:
            notes += enum_notes(sub, root, depth + 1)
    return list(dict.fromkeys(notes))


def example(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    """A skeleton value for a placeholder: required keys, first enum values, empty strings."""
    schema = _non_null(schema, root)
    if depth > 3:
        return None
    if "anyOf" in schema:
        return example(schema["anyOf"][0], root, depth + 1)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "array":
        return [example(schema.get("items", {}), root, depth + 1)]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        if props:
            keys = schema.get("required") or list(props)[:1]
            return {k: example(props[k], root, depth + 1) for k in keys}
        extra = schema.get("additionalProperties")
        value = example(extra, root, depth + 1) if isinstance(extra, dict) and extra else ""
        return {"name": value}
    return {"integer": 0, "number": 0, "boolean": False}.get(str(kind), "")


def help_text(prop: ConfigProperty, root: dict[str, Any]) -> str:
    parts = [prop.schema.get("description", "")]
    if prop.kind == "json":
        parts.append(f"JSON: {shape(prop.schema, root)}.")
        parts += [f"{note}." for note in enum_notes(prop.schema, root)]
    bounds = [
        f"{label} {prop.schema[key]}"
        for key, label in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        )
        if key in prop.schema
    ]
    if bounds:
        parts.append(f"({', '.join(bounds)})")
    return " ".join(p for p in parts if p)


def form_field(prop: ConfigProperty, root: dict[str, Any]) -> forms.Field:
    """The form field for one property. Never ``required`` at the form level: see module doc."""
    label = f"{prop.name}{' *' if prop.required else ''}"
    common: dict[str, Any] = {"label": label, "required": False, "help_text": help_text(prop, root)}
    default = prop.default
    placeholder = "" if default in (OMIT, None, "") else f"default: {json.dumps(default)}"
    attrs = {"placeholder": placeholder, "data-config-key": prop.name}
    if prop.kind == "boolean":
        return forms.BooleanField(initial=default is True, widget=forms.CheckboxInput(), **common)
    if prop.kind == "choice":
        blank = f"(default: {default})" if default not in (OMIT, None) else "---------"
        choices = [("", blank), *((c, c) for c in prop.choices)]
        # A select over a plain text field: a value outside the enum reaches the config model,
        # which rejects it with the same message as the CLI.
        return forms.CharField(widget=forms.Select(attrs=attrs, choices=choices), **common)
    if prop.kind == "json":
        skeleton = json.dumps(example(prop.schema, root))
        widget = forms.Textarea(
            attrs={
                **attrs,
                "rows": 4,
                "class": "vLargeTextField config-json",
                "placeholder": f"e.g. {skeleton}",
                "spellcheck": "false",
            }
        )
        return JSONTextField(widget=widget, **common)
    if prop.kind == "text" and prop.name in LONG_TEXT:
        widget = forms.Textarea(
            attrs={
                **attrs,
                "rows": 3,
                "class": "vLargeTextField config-code",
                "spellcheck": "false",
            }
        )
        return forms.CharField(widget=widget, strip=False, **common)
    size = "config-number" if prop.kind in ("integer", "number") else "vTextField"
    return forms.CharField(widget=forms.TextInput(attrs={**attrs, "class": size}), **common)


class JSONTextField(forms.CharField):
    """A text area holding JSON: cleans to the parsed value (``OMIT`` when blank)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strip=True, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str) or value is None:
            return value
        return json.dumps(value, ensure_ascii=False)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return bool(self.to_python(data) != self.to_python(self.prepare_value(initial)))
        except forms.ValidationError:
            return True

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if text in self.empty_values:
            return OMIT
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", code="json"
            ) from None


def to_config_value(prop: ConfigProperty, value: Any) -> Any:
    """The JSON value for a cleaned field value, or ``OMIT`` to leave the key out."""
    if prop.kind == "json":
        return value
    if prop.kind == "boolean":
        return OMIT if value == (prop.default is True) and not prop.required else bool(value)
    if value in (None, ""):
        return OMIT
    if prop.kind in ("integer", "number"):
        return _number(value.strip())
    return value


def _number(text: str) -> Any:
    """An int or float when the text is one; otherwise the text, for the model to reject."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            continue
    return text


def to_initial(prop: ConfigProperty, config: dict[str, Any]) -> Any:
    """The form's initial value for a property of a stored config."""
    if prop.name not in config:
        return prop.default is True if prop.kind == "boolean" else None
    value = config[prop.name]
    if prop.kind == "json":
        return json.dumps(value, ensure_ascii=False, indent=2 if _is_large(value) else None)
    if prop.kind == "boolean":
        return bool(value)
    return "" if value is None else str(value) if prop.kind != "text" else value


def _is_large(value: Any) -> bool:
    return len(json.dumps(value)) > 80
