"""``sql_write``: the sink node (:mod:`.node`, its config :mod:`.config`, one delivery's
batches :mod:`.run`) and the SQL dialects it writes through (:mod:`.dialect` is the interface;
:mod:`.postgres` the PostgreSQL dialect)."""
