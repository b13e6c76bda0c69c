"""SQLite DDL and statements for the audit trail (columns: see pep.audit.records)."""

from __future__ import annotations

from pep.audit.records import ALL_COLUMNS

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER PRIMARY KEY,
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
    tokens_in INTEGER,
    tokens_out INTEGER,
    cost_usd REAL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_user ON audit_records (user_key, seq);
CREATE INDEX IF NOT EXISTS audit_records_request ON audit_records (request_id);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time);
-- The auditor workspace's filters (newest first by seq); created on start, so an existing
-- store is upgraded the next time the gateway opens it.
-- (subject, seq, event): a person's records newest first and their total, auditors' reads
-- left out, from the index alone. Replaces (subject, seq).
DROP INDEX IF EXISTS audit_records_subject;
CREATE INDEX IF NOT EXISTS audit_records_person ON audit_records (subject, seq, event);
CREATE INDEX IF NOT EXISTS audit_records_email ON audit_records (email, subject);
CREATE INDEX IF NOT EXISTS audit_records_event ON audit_records (event, seq);
CREATE INDEX IF NOT EXISTS audit_records_decision ON audit_records (decision, seq);
CREATE INDEX IF NOT EXISTS audit_records_model ON audit_records (model_requested, seq);
CREATE INDEX IF NOT EXISTS audit_records_served ON audit_records (model_served, seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    signature TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""


# request.intent records after seq ? that no later record of the same request closes.
ORPHANS_SQL = (
    "SELECT i.seq, i.body FROM audit_records i WHERE i.seq > ? AND i.event = 'request.intent' "
    "AND NOT EXISTS (SELECT 1 FROM audit_records t WHERE t.request_id = i.request_id "
    "AND t.seq > i.seq) ORDER BY i.seq"
)


def insert_record_sql() -> str:
    cols = ", ".join(ALL_COLUMNS)
    marks = ", ".join("?" for _ in ALL_COLUMNS)
    return f"INSERT INTO audit_records ({cols}) VALUES ({marks})"


def insert_checkpoint_sql() -> str:
    return (
        "INSERT INTO audit_checkpoints (seq, time, kind, payload, signature, hash) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
