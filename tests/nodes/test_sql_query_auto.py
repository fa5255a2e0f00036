"""``sql_query``'s automatic partitioning against the real PostgreSQL and MariaDB: the
decision from the row estimate, and key ranges that give back every row of the query once."""

from __future__ import annotations

import random
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from nodes.builtin import sql_query_auto
from nodes.builtin.sql_query import SqlQueryNode
from nodes.sdk import ConnectionInfo, ExecutionContext
from nodes.sdk.capabilities import PartitionPolicy
from tests.mariadb import execute
from tests.mariadb import mariadb_url as mariadb_url

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: Partition from 1,000 estimated rows, in partitions of 300.
POLICY = PartitionPolicy(min_rows=1000, rows_per_partition=300, max_partitions=1000)


def context_for(url: str) -> ExecutionContext:
    return ExecutionContext(connection_lookup=lambda name: ConnectionInfo(name, url))


def node(query: str, **config: Any) -> SqlQueryNode:
    return SqlQueryNode({"connection": "warehouse", "query": query, **config})


def rows_of(batches: Any) -> list[tuple[Any, ...]]:
    return [tuple(record.values()) for batch in batches for record in batch]


def whole_and_sliced(
    url: str, query: str, rows_per_slice: int, **config: Any
) -> tuple[list[Any], list[Any], list[list[tuple[Any, ...]]]]:
    """The query read whole, its planned slices, and each slice read."""
    source = node(query, **config)
    context = context_for(url)
    whole = rows_of(source.execute(context, {}))
    planned = source.plan_slices(context, rows_per_slice)
    assert planned is not None, "no key ranges planned"
    slices = list(planned)
    return whole, slices, [rows_of(source.execute_slice(context, s)) for s in slices]


def assert_each_row_once(whole: list[Any], parts: list[list[Any]]) -> None:
    assert Counter(row for part in parts for row in part) == Counter(whole)


def assert_within_bounds(slices: list[dict[str, Any]], parts: list[list[Any]], key: int) -> None:
    for slice_, part in zip(slices, parts, strict=True):
        for row in part:
            if row[key] is None:
                assert slice_ is slices[-1]  # (rows without a key: the last range, open above)
                continue
            assert slice_["from"] is None or row[key] >= slice_["from"]
            assert slice_["to"] is None or row[key] < slice_["to"]


@pytest.fixture(autouse=True)
def _fresh_estimates() -> Iterator[None]:
    sql_query_auto.forget_estimates()
    yield
    sql_query_auto.forget_estimates()


# --- PostgreSQL --------------------------------------------------------------------------------
Keys = Callable[[random.Random], list[int]]

SHAPES: dict[str, Keys] = {
    "dense": lambda rng: list(range(1, 3001)),
    "gaps": lambda rng: rng.sample(range(1, 1_000_000), 3000),
    "two clusters": lambda rng: [*range(1, 1501), *range(10**12, 10**12 + 1500)],
    "negative": lambda rng: rng.sample(range(-5_000_000, 5_000_000), 2500),
}


@pytest.fixture
def pg_table() -> Iterator[Callable[..., str]]:
    """Makes tables in the source database (dropped afterwards)."""
    names: list[str] = []

    def make(
        columns: str, rows: list[tuple[Any, ...]], analyze: bool = True, index: str | None = None
    ) -> str:
        name = f"auto_{uuid.uuid4().hex[:10]}"
        names.append(name)
        table = sql.Identifier(name)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("create table {} ({})").format(table, sql.SQL(columns)))
            if index:
                conn.execute(sql.SQL(index).format(table))
            with conn.cursor() as cur, cur.copy(sql.SQL("copy {} from stdin").format(table)) as cp:
                for row in rows:
                    cp.write_row(row)
            if analyze:
                conn.execute(sql.SQL("analyze {}").format(table))
        return name

    yield make
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_key_ranges_give_every_row_of_the_query_once(
    pg_table: Callable[..., str], shape: str, seed: int
) -> None:
    rng = random.Random(seed)
    keys = SHAPES[shape](rng)
    rows = [(key, rng.choice(["paid", "pending"]), rng.randint(-5, 500)) for key in keys]
    table = pg_table("id bigint primary key, status text, amount int", rows)
    query = (
        f"select id, status, amount from {table} where amount > %(least)s and status like 'p%%'"
        " order by id desc"
    )
    whole, slices, parts = whole_and_sliced(PG_URL, query, 400, params={"least": 0})
    assert len(slices) > 2 and len(whole) > 1000
    assert {s["column"] for s in slices} == {"id"}
    assert_each_row_once(whole, parts)
    assert_within_bounds(slices, parts, key=0)
    # About the rows asked (the planner's estimate and histogram are samples).
    assert max(len(part) for part in parts) < 3 * 400
    for part in parts:  # within a range, the query's own order
        assert [row[0] for row in part] == sorted((row[0] for row in part), reverse=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_nullable_unique_key_and_no_statistics(pg_table: Callable[..., str], seed: int) -> None:
    rng = random.Random(seed)
    keys: list[int | None] = [*rng.sample(range(1, 100_000), 2000), None, None, None]
    rows = [(f"row {i}", key) for i, key in enumerate(keys)]
    table = pg_table(
        "name text primary key, seq int",
        rows,
        analyze=False,
        index="create unique index on {} (seq)",
    )
    whole, slices, parts = whole_and_sliced(PG_URL, f"select * from {table}", 300)
    assert {s["column"] for s in slices} == {"seq"}  # the text primary key is no range key
    assert len(slices) > 1
    assert_each_row_once(whole, parts)
    assert_within_bounds(slices, parts, key=1)
    assert sum(row[1] is None for row in parts[-1]) == 3


def test_an_empty_table_is_one_range(pg_table: Callable[..., str]) -> None:
    table = pg_table("id int primary key, name text", [])
    whole, slices, parts = whole_and_sliced(PG_URL, f"select id, name from {table}", 100)
    assert whole == [] and parts == [[]]
    assert slices == [{"column": "id", "from": None, "to": None}]


@pytest.mark.parametrize(
    "query",
    [
        "select code, name from {t}",  # a text key: no integer range
        "select name from {t}",  # the key is not in the output
        "select code, name from {t} order by code limit 10",
        "select a.code, b.name from {t} a join {t} b using (code)",
    ],
)
def test_no_key_ranges_when_there_is_no_integer_key_or_no_plain_select(
    pg_table: Callable[..., str], query: str
) -> None:
    table = pg_table("code text primary key, name text", [(f"c{i}", f"n{i}") for i in range(50)])
    source = node(query.format(t=table))
    assert source.plan_slices(context_for(PG_URL), 10) is None  # read once, cut by rows


def test_the_decision_follows_the_row_estimate(pg_table: Callable[..., str]) -> None:
    big = pg_table("id int primary key", [(i,) for i in range(1, 5001)])
    small = pg_table("id int primary key", [(i,) for i in range(1, 101)])
    context = context_for(PG_URL)
    assert node(f"select id from {big}").partition_rows_for_run(context, POLICY) == 300
    assert node(f"select id from {small}").partition_rows_for_run(context, POLICY) is None
    # the query's own parameters, bound: few rows above 4,900
    narrow = node(f"select id from {big} where id > %(least)s", params={"least": 4900})
    assert narrow.partition_rows_for_run(context, POLICY) is None
    # at most max_partitions: larger partitions
    capped = PartitionPolicy(min_rows=10, rows_per_partition=10, max_partitions=5)
    assert node(f"select id from {big}").partition_rows_for_run(context, capped) == 1000
    never = PartitionPolicy(min_rows=0, rows_per_partition=10, max_partitions=5)
    assert node(f"select id from {big}").partition_rows_for_run(context, never) is None


def test_a_failing_estimate_reads_the_query_whole(pg_table: Callable[..., str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = context_for(f"postgresql://postgres@127.0.0.1:{port}/test")
    assert node("select 1 as id").partition_rows_for_run(down, POLICY) is None
    broken = node("select id from no_such_table_anywhere")
    assert broken.partition_rows_for_run(context_for(PG_URL), POLICY) is None
    missing_param = node("select 1 as id where 1 = %(nope)s")
    assert missing_param.partition_rows_for_run(context_for(PG_URL), POLICY) is None


def test_sqlite_is_never_partitioned_on_its_own(tmp_path: Any) -> None:
    assert (
        node("select 1 as id").partition_rows_for_run(
            context_for(f"sqlite:///{tmp_path}/x.sqlite3"), POLICY
        )
        is None
    )


def test_partition_rows_null_turns_it_off_and_a_number_is_the_experts() -> None:
    assert SqlQueryNode.partitions_by_default({"query": "select 1"})
    assert SqlQueryNode.partitions_by_default({"query": "select 1", "partition_rows": "auto"})
    assert not SqlQueryNode.partitions_by_default({"query": "select 1", "partition_rows": None})
    assert not SqlQueryNode.partitions_by_default({"query": "select 1", "partition_rows": 500})
    explicit = node("select 1 as id", partition_rows=500)
    assert explicit.plan_slices(context_for(PG_URL), 500) is None  # cut by rows, as before
    schema = SqlQueryNode.Config.model_json_schema()["properties"]["partition_rows"]
    assert schema["default"] == "auto"
    assert "null: never partitioned" in schema["description"]


# --- an expert's partition_column ---------------------------------------------------------------
#: Keys of a non-unique indexed column: (keys, whether partitions stay near the size asked).
EXPERT_KEYS: dict[str, Callable[[random.Random], tuple[list[int | None], bool]]] = {
    "dense": lambda rng: (list(range(1, 3001)), True),
    "gaps": lambda rng: (rng.sample(range(-(10**9), 10**9), 3000), True),
    "duplicates": lambda rng: ([rng.randrange(0, 900) for _ in range(3000)], True),
    "skew and nulls": lambda rng: (
        [
            None if d < 0.03 else 42 if d < 0.33 else rng.randrange(0, 10**6)
            for d in (rng.random() for _ in range(3000))
        ],
        False,  # a third of the rows share one key: its range holds them all
    ),
    "two clusters": lambda rng: (
        [*rng.sample(range(1, 10**4), 1500), *rng.sample(range(10**12, 10**12 + 10**6), 1500)],
        True,
    ),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shape", list(EXPERT_KEYS))
def test_an_experts_indexed_integer_column_is_cut_by_its_statistics(
    pg_table: Callable[..., str], shape: str, seed: int
) -> None:
    """``partition_column`` on an integer column leading an index of an analyzed table: key
    ranges from the statistics (no row counted), every row of the query once."""
    rng = random.Random(seed)
    keys, even = EXPERT_KEYS[shape](rng)
    rows = [
        (i, key, rng.choice(["paid", "pending"]), rng.randint(-5, 500))
        for i, key in enumerate(keys)
    ]
    table = pg_table(
        "id int primary key, k bigint, status text, amount int",
        rows,
        index="create index on {} (k)",
    )
    query = (
        f"select id, k, status, amount from {table} where amount > %(least)s and status like"
        " 'p%%' order by k"
    )
    config = {"params": {"least": 0}, "partition_rows": 400, "partition_column": "k"}
    whole, slices, parts = whole_and_sliced(PG_URL, query, 400, **config)
    assert {s["column"] for s in slices} == {"k"}  # ranges of the statistics
    assert_each_row_once(whole, parts)
    assert_within_bounds(slices, parts, key=1)
    asked = len(whole) / 400
    assert asked / 2 <= len(slices) <= asked * 2 + 1
    if even:
        assert max(len(part) for part in parts) < 3 * 400
    for part in parts:  # within a range, the query's own order
        ordered = [row[1] for row in part if row[1] is not None]
        assert ordered == sorted(ordered)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(
    "case", ["never analyzed", "no index", "not an integer", "not a plain select"]
)
def test_an_experts_column_is_counted_when_statistics_cannot_cut_it(
    pg_table: Callable[..., str], case: str, seed: int
) -> None:
    """Elsewhere the rows are counted (``row_number()``): ranges of exactly the rows asked."""
    rng = random.Random(seed)
    keys = [None, *rng.sample(range(1, 10**6), 1200), None]
    rows = [(i, key, f"t{key:07d}" if key is not None else None) for i, key in enumerate(keys)]
    column = "t" if case == "not an integer" else "k"
    table = pg_table(
        "id int primary key, k int, t text",
        rows,
        analyze=case != "never analyzed",
        index=None if case == "no index" else f"create index on {{}} ({column})",
    )
    query = f"select id, k, t from {table}"
    if case == "not a plain select":
        query = f"select a.id, a.k, a.t from {table} a join {table} b on b.id = a.id"
    whole, slices, parts = whole_and_sliced(
        PG_URL, query, 250, partition_rows=250, partition_column=column
    )
    assert all("column" not in s for s in slices)  # counted ranges
    assert_each_row_once(whole, parts)
    assert [len(part) for part in parts] == [250, 250, 250, 250, 202]  # NULLs in the last


def test_an_experts_column_near_the_partition_limit_is_counted(
    pg_table: Callable[..., str],
) -> None:
    """More ranges than the limit of partitions by the estimate: the exact count decides (the
    engine refuses an output of more than 1,000 partitions)."""
    table = pg_table("id int primary key", [(i,) for i in range(1, 2201)])
    source = node(f"select id from {table}", partition_rows=2, partition_column="id")
    planned = list(source.plan_slices(context_for(PG_URL), 2) or [])
    assert len(planned) == 1100 and all("column" not in s for s in planned)
    few = list(source.plan_slices(context_for(PG_URL), 20) or [])
    assert 50 <= len(few) <= 220 and all(s["column"] == "id" for s in few)


# --- MariaDB -----------------------------------------------------------------------------------
@pytest.fixture
def maria_table(mariadb_url: str) -> Iterator[str]:
    name = f"auto_{uuid.uuid4().hex[:10]}"
    yield name
    execute(f"DROP TABLE IF EXISTS {name}")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shape", ["dense", "gaps", "negative"])
def test_mariadb_key_ranges_give_every_row_of_the_query_once(
    mariadb_url: str, maria_table: str, shape: str, seed: int
) -> None:
    rng = random.Random(seed)
    keys = SHAPES[shape](rng)
    execute(f"CREATE TABLE {maria_table} (id BIGINT PRIMARY KEY, status VARCHAR(10), amount INT)")
    values = ", ".join(
        f"({key}, '{rng.choice(['paid', 'pending'])}', {rng.randint(-5, 500)})" for key in keys
    )
    execute(f"INSERT INTO {maria_table} VALUES {values}")
    execute(f"ANALYZE TABLE {maria_table}")
    query = (
        f"SELECT id, status, amount FROM {maria_table} WHERE amount > %(least)s"
        " AND status LIKE 'p%%' ORDER BY id"
    )
    whole, slices, parts = whole_and_sliced(mariadb_url, query, 400, params={"least": 0})
    assert len(slices) > 2 and len(whole) > 1000
    assert_each_row_once(whole, parts)
    assert_within_bounds(slices, parts, key=0)


def test_mariadb_decision_empty_table_and_text_key(mariadb_url: str, maria_table: str) -> None:
    execute(f"CREATE TABLE {maria_table} (id INT PRIMARY KEY, code VARCHAR(10) UNIQUE)")
    context = context_for(mariadb_url)
    empty = node(f"SELECT id, code FROM {maria_table}")
    assert empty.partition_rows_for_run(context, POLICY) is None
    assert list(empty.plan_slices(context, 10) or []) == [
        {"column": "id", "from": None, "to": None}
    ]
    execute(f"INSERT INTO {maria_table} SELECT seq, CONCAT('c', seq) FROM seq_1_to_5000")
    execute(f"ANALYZE TABLE {maria_table}")
    sql_query_auto.forget_estimates()
    assert empty.partition_rows_for_run(context, POLICY) == 300
    # InnoDB caps a range's estimate at half the table: read at the cap, the whole table counts
    above = PartitionPolicy(min_rows=4000, rows_per_partition=300, max_partitions=1000)
    ranged = node(f"SELECT id, code FROM {maria_table} WHERE id > %(least)s", params={"least": 0})
    assert ranged.partition_rows_for_run(context, above) == 300
    # only the text column in the output: no key range, read once and cut
    assert node(f"SELECT code FROM {maria_table}").plan_slices(context, 300) is None
