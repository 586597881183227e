"""The schema, as numbered migrations that only ever add (docs/operations.md, "Upgrades").

The engine's schema version (SQLite ``PRAGMA user_version``, PostgreSQL ``schema_version``)
says how many have run. The SQL is portable: INTEGER, TEXT and BLOB columns, which PostgreSQL
gets as BIGINT, TEXT, BYTEA (:mod:`issuer.store.engine`). A migration that was released is never edited:
its text is fixed by a test (tests/store/test_migrations.py), and a change to the schema is a
new migration appended at the end. Schema 4 is the first released one.
"""

from __future__ import annotations

#: Migration N is ``MIGRATIONS[N - 1]``.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        idx INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        type TEXT NOT NULL,
        actor TEXT NOT NULL,
        channel TEXT NOT NULL,
        subject TEXT NOT NULL,
        data TEXT NOT NULL
    );
    -- (type, idx), not (type, subject): a statement's subject is its random jti, and an index
    -- on it would cost a random insert per mint. Lookups by subject scan one type's rows.
    CREATE INDEX events_type ON events (type, idx);
    CREATE TABLE statements (
        jti TEXT PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        iss TEXT NOT NULL,
        kid TEXT NOT NULL,
        alg TEXT NOT NULL,
        template TEXT NOT NULL,
        template_digest TEXT NOT NULL,
        software_id TEXT,
        software_version TEXT,
        iat INTEGER NOT NULL,
        exp INTEGER NOT NULL,
        principal TEXT NOT NULL,
        channel TEXT NOT NULL,
        log_index INTEGER NOT NULL UNIQUE,
        revoked_at INTEGER,
        revocation_reason TEXT,
        status_list TEXT,
        status_idx INTEGER,
        status INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX statements_template ON statements (template, log_index);
    CREATE INDEX statements_software_id ON statements (software_id, log_index);
    CREATE INDEX statements_iat ON statements (iat);
    CREATE INDEX statements_kid ON statements (kid, exp);
    CREATE TABLE template_versions (
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        content TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        log_index INTEGER NOT NULL UNIQUE
    );
    CREATE INDEX template_versions_name ON template_versions (name, log_index);
    """,
    # 2: API tokens of the HTTP service; only a hash of each secret is kept.
    """
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        token_id TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        templates TEXT NOT NULL,
        rate_limit TEXT,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at INTEGER
    );
    """,
    # 3: the transparency log over the events (docs/transparency-log.md): hashes of complete
    # subtrees, and a signed checkpoint after every transaction that appended.
    """
    CREATE TABLE log_nodes (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;
    CREATE TABLE log_checkpoints (
        tree_size INTEGER PRIMARY KEY,
        root_hash BLOB NOT NULL,
        note TEXT NOT NULL,
        time INTEGER NOT NULL
    );
    """,
    # 4: Token Status Lists (docs/revocation.md): one row per list; each statement's entry and
    # status are columns of its row (statements.status_list, status_idx, status).
    """
    CREATE TABLE status_lists (
        id TEXT PRIMARY KEY,
        bits INTEGER NOT NULL,
        size INTEGER NOT NULL,
        prp_key BLOB NOT NULL,
        next_counter INTEGER NOT NULL,
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX statements_status_changed ON statements (status_list) WHERE status != 0;
    CREATE INDEX statements_revoked ON statements (revoked_at) WHERE revoked_at IS NOT NULL;
    """,
    # 5: trusted publishing (docs/pipelines.md): statements minted through a CI publisher,
    # tokens that expire and say when they were last used, CI token ids accepted once, and
    # the Idempotency-Key of HTTP mints.
    """
    ALTER TABLE statements ADD COLUMN publisher TEXT;
    ALTER TABLE statements ADD COLUMN repository TEXT;
    CREATE INDEX statements_publisher ON statements (publisher, log_index)
        WHERE publisher IS NOT NULL;
    CREATE INDEX statements_repository ON statements (repository, log_index)
        WHERE repository IS NOT NULL;
    ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
    ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
    ALTER TABLE api_tokens ADD COLUMN rotated_at INTEGER;
    ALTER TABLE api_tokens ADD COLUMN publisher TEXT;
    ALTER TABLE api_tokens ADD COLUMN origin TEXT;
    CREATE TABLE ci_token_ids (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        exp INTEGER NOT NULL,
        PRIMARY KEY (issuer, jti)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_digest TEXT NOT NULL,
        jti TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    """,
    # 6: a status list entry belongs to one statement: a rewound allocation counter makes the
    # mint fail instead of handing out an index twice (docs/audit.md).
    """
    CREATE UNIQUE INDEX statements_status_entry ON statements (status_list, status_idx);
    """,
    # 7: several replicas on one database (docs/operations.md): the row every write transaction
    # locks first and that numbers the log's entries; rate limit state shared by the replicas.
    """
    CREATE TABLE log_sequencer (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        next_idx INTEGER NOT NULL
    );
    INSERT INTO log_sequencer (id, next_idx) SELECT 0, COALESCE(MAX(idx) + 1, 0) FROM events;
    CREATE TABLE rate_limits (
        key TEXT PRIMARY KEY,
        tat_ms INTEGER NOT NULL
    );
    """,
)

#: The first released schema (older ones never left development and are refused).
FIRST_RELEASED_VERSION = 4
#: The first schema whose every state change is logged (the upgrade to it logs the API tokens
#: and status lists it finds) and whose log's high-water mark is kept beside the log key.
STATE_LOGGED_VERSION = 6
