"""PostgreSQL DDL for the audit trail. Table names are qualified with the configured schema
(validated as a plain identifier by AuditSettings.pg_schema, so interpolation is safe)."""

from __future__ import annotations

from pep.audit.records import GENESIS


# The auditor workspace's filter indexes (name suffix, columns): newest first by seq.
WORKSPACE_INDEXES = (("person", "subject, seq, event"), ("email", "email, subject"),
                     ("event", "event, seq"), ("decision", "decision, seq"),
                     ("model", "model_requested, seq"), ("served", "model_served, seq"))
# Every index the DDL creates: a store missing one is not current (the DDL runs again).
INDEX_NAMES = ("audit_records_user", "audit_records_request", "audit_records_time",
               *(f"audit_records_{name}" for name, _ in WORKSPACE_INDEXES))


def ddl(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE IF NOT EXISTS {s}.audit_records (
            seq BIGINT PRIMARY KEY,
            hash TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            user_key TEXT,
            user_prev TEXT,
            time TEXT NOT NULL,
            event TEXT NOT NULL,
            request_id TEXT NOT NULL,
            decision_id TEXT,
            subject TEXT,
            issuer TEXT,
            email TEXT,
            teams TEXT NOT NULL,
            model_requested TEXT,
            model_served TEXT,
            decision TEXT NOT NULL,
            status INTEGER,
            tokens_in BIGINT,
            tokens_out BIGINT,
            cost_usd DOUBLE PRECISION,
            body TEXT NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS audit_records_user ON {s}.audit_records (user_key, seq)",
        f"CREATE INDEX IF NOT EXISTS audit_records_request ON {s}.audit_records (request_id)",
        f"CREATE INDEX IF NOT EXISTS audit_records_time ON {s}.audit_records (time)",
        # The auditor workspace's filters (newest first by seq); run on every start, so an
        # existing store gains them on upgrade.
        # (subject, seq, event) replaces (subject, seq): a person's page and total from the index.
        f"DROP INDEX IF EXISTS {s}.audit_records_subject",
        *(f"CREATE INDEX IF NOT EXISTS audit_records_{name} ON {s}.audit_records ({cols})"
          for name, cols in WORKSPACE_INDEXES),
        f"""CREATE TABLE IF NOT EXISTS {s}.audit_checkpoints (
            id BIGSERIAL PRIMARY KEY,
            seq BIGINT NOT NULL,
            time TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            signature TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        # The single chain head all replicas share; its row lock serialises appends.
        f"""CREATE TABLE IF NOT EXISTS {s}.audit_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq BIGINT NOT NULL,
            hash TEXT NOT NULL,
            since_checkpoint BIGINT NOT NULL,
            last_checkpoint TEXT
        )""",
        f"""CREATE TABLE IF NOT EXISTS {s}.audit_user_heads (
            user_key TEXT PRIMARY KEY,
            hash TEXT NOT NULL
        )""",
        f"INSERT INTO {s}.audit_head VALUES (1, 0, '{GENESIS}', 0, NULL) ON CONFLICT DO NOTHING",
        # Orphan intents up to this seq have been closed (request.aborted) by a lone replica.
        f"ALTER TABLE {s}.audit_head ADD COLUMN IF NOT EXISTS recovered_seq BIGINT NOT NULL DEFAULT 0",
    ]
