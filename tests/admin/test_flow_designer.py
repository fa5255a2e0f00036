"""The flow page as a designer: nodes and edges through forms, checked as one flow file."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from flows.flowfile import export_flow
from flows.models import Flow, FlowVersion
from flows.validation import validate_flow
from tests.admin.forms import flow_post_data, page_post_data

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

ADD_URL = reverse("admin:flows_flow_add")


def change_url(flow: Flow) -> str:
    return reverse("admin:flows_flow_change", args=[flow.pk])


def field_errors(response: Any, prefix: str, index: int, field: str) -> list[str]:
    for inline in response.context["inline_admin_formsets"]:
        if inline.formset.prefix == prefix:
            return list(inline.formset.forms[index].errors.get(field, []))
    raise AssertionError(f"no inline {prefix}")


def non_field_errors(response: Any, prefix: str, index: int) -> list[str]:
    return field_errors(response, prefix, index, "__all__")


def test_the_add_page_offers_every_catalog_type(admin_client: Client) -> None:
    response = admin_client.get(ADD_URL)
    assert response.status_code == 200
    html = response.content.decode()
    for option in ("SQL query (sql_query)", "Filter (filter)", "HTTP POST (http_post)"):
        assert option in html
    # each type's config form is on the page, one fieldset per type
    assert "node-config-map_fields" in html
    assert 'name="nodes-0-cfg__sql_query__query"' in html
    assert 'id="flow-node-catalog"' in html


def test_the_minimal_flow_is_created_through_the_forms(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    response = admin_client.post(ADD_URL, flow_post_data(minimal_flow))
    assert response.status_code == 302, response.context and response.context["errors"]
    flow = Flow.objects.get(slug="paid-orders-to-crm")
    assert export_flow(flow) == minimal_flow
    assert FlowVersion.objects.filter(flow=flow).count() == 1


def test_a_bad_operator_is_shown_at_the_conditions_field_with_the_cli_message(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    bad = copy.deepcopy(minimal_flow)
    bad["nodes"][1]["config"]["conditions"][0]["op"] = "eqq"
    expected = next(p for p in validate_flow(bad) if p.node == "paid")
    assert expected.path == "nodes[1].config.conditions[0].op"

    response = admin_client.post(ADD_URL, flow_post_data(bad))

    assert response.status_code == 200
    assert field_errors(response, "nodes", 1, "cfg__filter__conditions") == [
        f"conditions[0].op: {expected.message}"
    ]
    assert not Flow.objects.exists()


def test_a_missing_required_field_is_shown_at_that_field(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    del minimal_flow["nodes"][0]["config"]["query"]
    response = admin_client.post(ADD_URL, flow_post_data(minimal_flow))
    assert field_errors(response, "nodes", 0, "cfg__sql_query__query") == ["Field required"]
    assert not Flow.objects.exists()


def test_a_number_that_is_not_one_gets_the_config_models_message(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    data = flow_post_data(minimal_flow)
    data["nodes-3-cfg__http_post__batch_size"] = "many"
    response = admin_client.post(ADD_URL, data)
    assert field_errors(response, "nodes", 3, "cfg__http_post__batch_size") == [
        "Input should be a valid integer, unable to parse string as an integer"
    ]


def test_invalid_json_is_reported_at_its_field(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    data = flow_post_data(minimal_flow)
    data["nodes-2-cfg__map_fields__mapping"] = '{"order_id": "id",}'
    response = admin_client.post(ADD_URL, data)
    errors = field_errors(response, "nodes", 2, "cfg__map_fields__mapping")
    assert len(errors) == 1 and errors[0].startswith("invalid JSON at line 1 column 19")


def test_an_edge_to_an_unknown_node_is_shown_at_the_edge(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["edges"][2]["to"] = "nowhere"
    response = admin_client.post(ADD_URL, flow_post_data(minimal_flow))
    assert field_errors(response, "edges", 2, "to_node") == ["unknown node 'nowhere'"]
    assert not Flow.objects.exists()


def test_an_unconnected_input_is_shown_at_its_node(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    del minimal_flow["edges"][2]
    response = admin_client.post(ADD_URL, flow_post_data(minimal_flow))
    assert non_field_errors(response, "nodes", 3) == [
        "inputs.in: required input 'in' is not connected"
    ]


def test_a_cycle_is_reported_above_the_edges(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["edges"].append({"from": "shape", "to": "paid"})
    response = admin_client.post(ADD_URL, flow_post_data(minimal_flow))
    edges = next(
        i for i in response.context["inline_admin_formsets"] if i.formset.prefix == "edges"
    )
    assert list(edges.formset.non_form_errors()) == ["the graph has a cycle: paid -> shape -> paid"]
    assert not Flow.objects.exists()


def test_duplicate_keys_are_reported_once_at_the_second_key(
    admin_client: Client, minimal_flow: dict[str, Any]
) -> None:
    minimal_flow["nodes"][2]["key"] = "paid"
    minimal_flow["edges"] = minimal_flow["edges"][:1]
    response = admin_client.post(ADD_URL, flow_post_data(minimal_flow))
    assert field_errors(response, "nodes", 2, "node_key") == [
        "duplicate key 'paid' (also nodes[1])"
    ]


def test_validate_checks_without_saving(admin_client: Client, minimal_flow: dict[str, Any]) -> None:
    response = admin_client.post(ADD_URL, flow_post_data(minimal_flow, _validate="Validate"))
    assert response.status_code == 200
    assert not Flow.objects.exists()
    shown = [str(m) for m in response.context["messages"]]
    assert "No problems found. The flow is not saved yet." in shown
    # the picture of what was submitted
    assert 'data-node="push"' in response.content.decode()


def test_an_invalid_edit_changes_nothing(admin_client: Client, paid_orders: Flow) -> None:
    before = export_flow(paid_orders)
    data = page_post_data(admin_client.get(change_url(paid_orders)))
    data["name"] = "Renamed"
    data["nodes-1-cfg__filter__match"] = "some"
    response = admin_client.post(change_url(paid_orders), data)
    assert response.status_code == 200
    assert field_errors(response, "nodes", 1, "cfg__filter__match") == [
        "'some' is not one of all, any"
    ]
    paid_orders.refresh_from_db()
    assert export_flow(paid_orders) == before
    assert paid_orders.versions.count() == 1


def test_saving_the_page_unchanged_keeps_the_flow_and_its_version(
    admin_client: Client, paid_orders: Flow
) -> None:
    before = export_flow(paid_orders)
    response = admin_client.post(
        change_url(paid_orders), page_post_data(admin_client.get(change_url(paid_orders)))
    )
    assert response.status_code == 302
    assert export_flow(paid_orders) == before
    assert paid_orders.versions.count() == 1


def test_editing_a_node_saves_a_new_version(admin_client: Client, paid_orders: Flow) -> None:
    data = page_post_data(admin_client.get(change_url(paid_orders)))
    data["nodes-3-cfg__http_post__batch_size"] = "25"
    data["nodes-1-DELETE"] = "on"
    data["edges-0-to_node"] = "shape"
    data["edges-1-DELETE"] = "on"
    response = admin_client.post(change_url(paid_orders), data)
    assert response.status_code == 302
    flow = export_flow(paid_orders)
    assert [n["key"] for n in flow["nodes"]] == ["orders", "shape", "push"]
    assert flow["nodes"][2]["config"]["batch_size"] == 25
    assert flow["edges"] == [{"from": "orders", "to": "shape"}, {"from": "shape", "to": "push"}]
    assert paid_orders.versions.count() == 2


def test_the_flow_page_shows_the_graph(admin_client: Client, paid_orders: Flow) -> None:
    response = admin_client.get(change_url(paid_orders))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="flow-node"') == 4
    assert html.count('class="flow-edge"') == 3
    assert "saved, version 1" in html
    # the stored config is in the node forms
    assert "where id &gt; %(min_id)s" in html


def test_a_viewer_sees_the_flow_read_only(viewer_client: Client, paid_orders: Flow) -> None:
    response = viewer_client.get(change_url(paid_orders))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_save"' not in html
    assert "sql_query" in html
    assert viewer_client.post(change_url(paid_orders), {}).status_code == 403


def test_schedules_are_edited_on_the_flow_page(admin_client: Client, paid_orders: Flow) -> None:
    scheduling_admin = pytest.importorskip("scheduling.admin")
    if not hasattr(scheduling_admin, "FlowScheduleInline"):
        pytest.skip("the scheduling app provides no flow inline")
    page = admin_client.get(change_url(paid_orders))
    assert 'id="schedules-group"' in page.content.decode()
    data = page_post_data(page)
    data.update(
        {
            "schedules-TOTAL_FORMS": "1",
            "schedules-0-kind": "cron",
            "schedules-0-cron": "0 6 * * 1-5",
            "schedules-0-timezone": "Europe/Madrid",
            "schedules-0-enabled": "on",
            "schedules-0-overlap": "skip",
            "schedules-0-max_active_runs": "1",
        }
    )
    response = admin_client.post(change_url(paid_orders), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    [schedule] = paid_orders.schedules.all()
    assert (schedule.cron, schedule.timezone) == ("0 6 * * 1-5", "Europe/Madrid")
    # the graph is untouched, and the page now shows the schedule's next fire time
    assert paid_orders.versions.count() == 1
    html = admin_client.get(change_url(paid_orders)).content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:00:00 UTC \(06:00 CES?T Europe/Madrid\)", html)


def test_a_node_naming_a_missing_connection_is_refused_at_its_field(
    admin_client: Client, paid_orders: Flow
) -> None:
    before = export_flow(paid_orders)
    data = page_post_data(admin_client.get(change_url(paid_orders)))
    [name] = [k for k in data if k.startswith("nodes-0-") and k.endswith("__connection")]
    data[name] = "warehous"
    response = admin_client.post(change_url(paid_orders), data)
    assert response.status_code == 200
    errors = field_errors(response, "nodes", 0, name.removeprefix("nodes-0-"))
    assert errors and errors[0].startswith("connection 'warehous' does not exist")
    paid_orders.refresh_from_db()
    assert export_flow(paid_orders) == before


def test_the_form_offers_a_branch_s_ports_from_its_config(admin_client: Client) -> None:
    import json
    from pathlib import Path

    from flows.flowfile import apply_flow_file

    example = Path(__file__).resolve().parents[2] / "examples" / "orders-by-country.json"
    flow, _ = apply_flow_file(json.loads(example.read_text()))
    response = admin_client.get(change_url(flow) + "?form")
    assert response.context["node_ports"] == {"by_country": ["spain", "rest"]}
    assert '<script id="flow-node-ports" type="application/json">' in response.content.decode()
