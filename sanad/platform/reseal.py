"""`sanad keys reseal`: stored sealed values moved onto their ring's primary key after a rotation, so the
keys before it can be retired (docs/operations.md, "Rotate keys"), and personal values an earlier version
kept in the clear sealed. Each service that stores sealed values offers reseal(pool, ring) in its handlers
module, built on reseal_rows."""
import json
import uuid

BATCH = 200
FIRST_UUID = uuid.UUID(int=0)


def reseal_rows(pool, ring, select, update, contexts, key="id", start=FIRST_UUID, batch=BATCH,
                in_the_clear=None) -> int:
    """Re-encrypt under `ring`'s primary key the sealed columns of every row `select` pages through, a batch
    per transaction. `select` takes %(after)s and %(limit)s and returns the rows after `after` in the order
    of their `key` column, locked FOR UPDATE (so a purge blanking a value meanwhile is never undone), with
    each column of `contexts` (column -> the context a row's value is sealed under). `update` takes %(id)s
    and the columns. Returns how many rows changed; a value already under the primary key, or None, is left
    alone, so it is safe to run again.

    `in_the_clear` maps a sealed column to the plain column in which an earlier version of the service kept
    its value: a row whose sealed column is empty and whose plain one is not has the plain value's JSON text
    sealed into it (what the service seals: a JSON object, or a number's digits), and `update` empties the
    plain column."""
    in_the_clear = in_the_clear or {}

    def sealed(column, row):
        context = contexts[column](row)
        clear = row[in_the_clear[column]] if row[column] is None and column in in_the_clear else None
        return ring.resealed(row[column], context) if clear is None else ring.seal(json.dumps(clear), context)

    changed, after = 0, start
    while True:
        with pool.transaction() as cur:
            cur.execute(select, {"after": after, "limit": batch})
            rows = cur.fetchall()
            for row in rows:
                values = {column: sealed(column, row) for column in contexts}
                if any(values[column] != row[column] for column in contexts):
                    cur.execute(update, {"id": row[key], **values})
                    changed += 1
        if len(rows) < batch:
            return changed
        after = rows[-1][key]
