"""Which queries ``sql_query`` reads in key ranges on its own, and where it cuts them (pure)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodes.builtin.sql_query_auto import cut_points
from nodes.builtin.sql_query_shape import plain_select

PLAIN = [
    "select id, customer, amount from orders where id > %(min_id)s order by id",
    "SELECT * FROM public.orders o",
    "select o.id, o.amount from orders as o where status = 'paid' -- paid only\n order by 1;",
    'select "id", name from "Orders" where name like \'%%limit%%\'',
    "select id from t where x = $$ ; limit 1 $$",
    "select id, extract(year from at) as y from t",
    "select id from t where id in (select id from u)",  # a subquery reads, folds nothing
    "select id, upper(name) from t /* no limit here */ where a between 1 and 2",
]
NOT_PLAIN = [
    "select id from t limit 5",
    "select id from t order by id offset 10",
    "select id from t order by id fetch first 5 rows only",
    "select distinct id from t",
    "select id, count(*) from t group by id",
    "select id from t group by id having count(*) > 1",
    "select id from t where amount > (select avg(amount) from t)",  # an aggregate anywhere
    "select id, row_number() over (order by id) from t",
    "select id from t join u on u.t_id = t.id",
    "select id from t, u",
    "select id from t natural join u",
    "select id from t union select id from u",
    "with x as (select id from t) select id from x",
    "select id from (select id from t) s",
    "select id from t for update",
    "select id from t tablesample system (10)",
    "select id from t; select 1",
    "select id from t; -- a comment after the end",
    "select id from only t",
    "select id into x from t",
    "values (1)",
    "table t",
    "(select id from t)",
    "select id from t where a = 'unterminated",
    "select id from t /* nested /* comment */ */",
    "",
]


@pytest.mark.parametrize("query", PLAIN)
def test_a_plain_single_table_select_is_recognised(query: str) -> None:
    assert plain_select(query, mysql=False) is not None


@pytest.mark.parametrize("query", NOT_PLAIN)
def test_anything_more_than_a_plain_select_is_not(query: str) -> None:
    assert plain_select(query, mysql=False) is None


def test_the_parts_of_a_plain_select_are_read_as_the_database_reads_them() -> None:
    plain = plain_select(
        'select o.id from "Sales"."Orders" as o where status = \'paid\' -- x\n order by id',
        mysql=False,
    )
    assert plain is not None
    assert [t.name for t in plain.table] == ["Sales", "Orders"]
    assert [t.text for t in plain.table] == ['"Sales"', '"Orders"']
    assert plain.from_text.strip() == '"Sales"."Orders" as o'
    assert plain.where_text is not None and plain.where_text.strip() == "status = 'paid'"


@pytest.mark.parametrize(
    ("query", "outputs"),
    [
        ("select id, name from t", True),
        ("select t.id, name from t", True),
        ("select * from t", True),
        ("select t.* from t", True),
        ('select "id" from t', True),
        ("select ID from t", True),  # unquoted: folded to id
        ('select "ID" from t', False),  # another column
        ("select name from t", False),  # the key is not in the output
        ("select id::text from t", False),  # named id, but text
        ("select id + 0 as id from t", False),
        ("select uuid as id from t", False),  # another column under the key's name
        ("select *, 1 as id from t", False),
        ("select *, id from t", False),  # twice
        ("select id, id from t", False),
        ("select *, * from t", False),
        ("select id, id * 2 as double from t", False),  # mentioned: refused, to be safe
    ],
)
def test_the_key_must_reach_the_output_alone_and_under_its_own_name(
    query: str, outputs: bool
) -> None:
    plain = plain_select(query, mysql=False)
    assert plain is not None
    assert plain.outputs("id") is outputs


def test_mariadb_quoting_comments_and_strings() -> None:
    plain = plain_select(
        "SELECT `id`, name FROM `shop`.`orders` WHERE note = 'it\\'s # not a comment' # c",
        mysql=True,
    )
    assert plain is not None
    assert [t.name for t in plain.table] == ["shop", "orders"]
    assert plain.outputs("ID")  # names of columns are case-insensitive
    # "--" starts a comment only before a space: here it is two minus signs, and LIMIT counts.
    assert plain_select("SELECT id FROM t WHERE a = 1 --1 LIMIT 5", mysql=True) is None
    assert plain_select("SELECT id FROM t WHERE a = 1 -- LIMIT 5", mysql=True) is not None
    assert plain_select("SELECT /*! STRAIGHT_JOIN */ id FROM t", mysql=True) is None
    # MariaDB folds rows into one for an aggregate without GROUP BY
    assert plain_select("SELECT id, SUM(amount) FROM t", mysql=True) is None


def test_cut_points_of_a_dense_key_without_statistics_are_equal_widths() -> None:
    assert cut_points(1, 300_000, 12, []) == [25_001 * i - (i - 1) for i in range(1, 12)]
    assert cut_points(1, 3, 5, []) == [2, 3]  # no more ranges than keys
    assert cut_points(7, 7, 4, []) == []


def test_cut_points_follow_the_histogram_across_gaps() -> None:
    # Half the rows in 1..1,000, half in 1,000,000..1,001,000: every range gets its share.
    histogram = [*range(1, 1001, 10), *range(1_000_000, 1_001_001, 10)]
    rows = [*range(1, 1001), *range(1_000_000, 1_001_000)]
    cuts = cut_points(1, 1_000_999, 4, histogram)
    edges = [None, *cuts, None]
    counts = [
        sum(1 for r in rows if (low is None or r >= low) and (high is None or r < high))
        for low, high in itertools.pairwise(edges)
    ]
    assert len(counts) == 4
    assert all(450 <= count <= 550 for count in counts), counts


@given(
    low=st.integers(-(10**12), 10**12),
    span=st.integers(0, 10**9),
    count=st.integers(1, 1000),
    histogram=st.lists(st.integers(-(10**12), 10**12), max_size=101),
)
def test_cut_points_always_rise_strictly_inside_the_range(
    low: int, span: int, count: int, histogram: list[int]
) -> None:
    high = low + span
    cuts = cut_points(low, high, count, histogram)
    assert cuts == sorted(set(cuts))
    assert all(low < cut <= high for cut in cuts)
    assert len(cuts) <= count - 1


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_cut_points_of_random_gappy_keys_give_ranges_of_about_equal_rows(seed: int) -> None:
    rng = random.Random(seed)
    keys = sorted(rng.sample(range(1, 10_000_000), 20_000))
    sample = sorted(rng.sample(keys, 3000))  # as ANALYZE samples the table
    histogram = [sample[round(i * (len(sample) - 1) / 100)] for i in range(101)]
    cuts = cut_points(keys[0], keys[-1], 8, histogram)
    edges = [keys[0], *cuts, keys[-1] + 1]
    counts = [sum(1 for k in keys if low <= k < high) for low, high in itertools.pairwise(edges)]
    assert len(counts) == 8 and sum(counts) == len(keys)
    assert max(counts) < 1.25 * len(keys) / 8, counts
