"""Creates the database, one schema per service, and applies each schema's SQL migrations once.

A service's migrations are the platform's files (outbox, inbox, dead letters) followed by its own,
files named NNNN_description.sql applied in name order and recorded in <schema>.schema_migrations.
An advisory lock lets several processes run this at once safely.
"""
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
from psycopg2 import sql

PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
SCHEMAS = ("intake", "triage", "referral", "notify")
LOCK_KEY = 7_262_623  # any constant shared by all migrating processes


def migration_files(schema):
    own = SERVICES_DIR / schema / "migrations"
    platform = [("platform", f) for f in sorted(PLATFORM_MIGRATIONS.glob("*.sql"))]
    service = [(schema, f) for f in sorted(own.glob("*.sql"))]
    return platform + service


def ensure_database(database_url) -> bool:
    """Create the database named in the URL if it does not exist. Returns True when created."""
    parts = urlparse(database_url)
    name = parts.path.lstrip("/")
    maintenance = urlunparse(parts._replace(path="/postgres"))
    conn = psycopg2.connect(maintenance, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        conn.close()


def drop_database(database_url) -> None:
    parts = urlparse(database_url)
    name = parts.path.lstrip("/")
    conn = psycopg2.connect(urlunparse(parts._replace(path="/postgres")), connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def migrate(database_url, schemas=SCHEMAS) -> list:
    """Apply every pending migration; return the names applied, as "schema/origin/file"."""
    applied = []
    conn = psycopg2.connect(database_url, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            for schema in schemas:
                applied += _migrate_schema(cur, schema)
    finally:
        conn.close()
    return applied


def _migrate_schema(cur, schema):
    schema_id = sql.Identifier(schema)
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema_id))
    cur.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {}.schema_migrations "
        "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    ).format(schema_id))
    cur.execute(sql.SQL("SELECT name FROM {}.schema_migrations").format(schema_id))
    done = {row[0] for row in cur.fetchall()}
    applied = []
    for origin, path in migration_files(schema):
        name = f"{origin}/{path.name}"
        if name in done:
            continue
        cur.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(schema_id))
        cur.execute(path.read_text())
        cur.execute(sql.SQL("INSERT INTO {}.schema_migrations (name) VALUES (%s)").format(schema_id), (name,))
        applied.append(f"{schema}/{name}")
    return applied
