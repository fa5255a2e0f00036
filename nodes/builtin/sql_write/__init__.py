"""``sql_write``: the sink node (:mod:`.node`) and the SQL dialects it writes through
(:mod:`.dialect` is the interface; :mod:`.postgres` the PostgreSQL dialect)."""
