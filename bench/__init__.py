"""The benchmark of issue 8: how long a critical case takes from intake's 201 to a partner's verified
webhook, alone and behind a flood of normal cases; how many cases per second the whole pipeline carries;
and the same figures for a bare kombu-and-psycopg2 pipeline on the same broker and database, the floor
every figure is divided by. `make bench` runs it; docs/performance.md records what it measured."""
