"""The store's schema, as versioned migrations applied in order by ``stores.db.migrate``."""

from __future__ import annotations

# Each entry migrates the schema from version N to N+1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE mailboxes(
        address TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        server TEXT NOT NULL,
        legacy_dn TEXT NOT NULL,
        home_mdb TEXT NOT NULL,
        home_mta TEXT NOT NULL,
        home_server_name TEXT NOT NULL,
        proxy_addresses TEXT NOT NULL,
        attributes TEXT NOT NULL
    );
    CREATE TABLE proxy_addresses(address TEXT PRIMARY KEY, mailbox TEXT NOT NULL);
    CREATE TABLE store_mailboxes(
        server TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        in_transit INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(server, mailbox)
    );
    CREATE TABLE messages(
        id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        subject TEXT NOT NULL,
        size INTEGER NOT NULL,
        raw BLOB NOT NULL,
        accepted_server TEXT NOT NULL,
        accepted_at REAL NOT NULL,
        accepted_real REAL NOT NULL
    );
    CREATE TABLE pairs(
        id INTEGER PRIMARY KEY,
        message TEXT NOT NULL REFERENCES messages(id),
        rcpt TEXT NOT NULL,
        mailbox TEXT,
        state TEXT NOT NULL,
        server TEXT NOT NULL,
        queue TEXT,
        queued_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL,
        last_error TEXT,
        first_refused_at REAL,
        hop_token TEXT,
        frozen INTEGER NOT NULL DEFAULT 0,
        UNIQUE(message, rcpt)
    );
    CREATE INDEX pairs_by_queue ON pairs(server, queue, next_attempt) WHERE queue IS NOT NULL;
    CREATE INDEX pairs_by_mailbox ON pairs(mailbox, state);
    CREATE INDEX pairs_by_hop ON pairs(hop_token) WHERE hop_token IS NOT NULL;
    CREATE TABLE items(
        id INTEGER PRIMARY KEY,
        server TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        folder TEXT NOT NULL,
        pair INTEGER UNIQUE REFERENCES pairs(id),
        message TEXT,
        size INTEGER NOT NULL,
        delivered_at REAL NOT NULL
    );
    CREATE INDEX items_by_mailbox ON items(mailbox, server);
    CREATE TABLE trace(
        id INTEGER PRIMARY KEY,
        message TEXT NOT NULL,
        rcpt TEXT,
        server TEXT NOT NULL,
        stage TEXT NOT NULL,
        detail TEXT NOT NULL,
        sim_time REAL NOT NULL,
        real_time REAL NOT NULL
    );
    CREATE INDEX trace_by_message ON trace(message);
    CREATE TABLE events(
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        level TEXT NOT NULL,
        server TEXT NOT NULL,
        text TEXT NOT NULL,
        sim_time REAL NOT NULL,
        real_time REAL NOT NULL
    );
    CREATE TABLE queue_state(
        server TEXT NOT NULL,
        queue TEXT NOT NULL,
        status TEXT NOT NULL,
        next_retry REAL,
        last_error TEXT,
        PRIMARY KEY(server, queue)
    );
    CREATE TABLE connectors(
        id INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        site_a TEXT NOT NULL,
        site_b TEXT NOT NULL,
        cost INTEGER NOT NULL,
        name TEXT NOT NULL
    );
    CREATE TABLE rpc(
        server_a TEXT NOT NULL,
        server_b TEXT NOT NULL,
        allowed INTEGER NOT NULL,
        PRIMARY KEY(server_a, server_b)
    );
    CREATE TABLE moves(
        id TEXT PRIMARY KEY,
        mailbox TEXT NOT NULL,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        engine TEXT NOT NULL,
        status TEXT NOT NULL,
        status_detail TEXT NOT NULL,
        hold INTEGER NOT NULL,
        percent_complete INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        start_at REAL NOT NULL,
        due_at REAL,
        finished_at REAL,
        options TEXT NOT NULL,
        history TEXT NOT NULL
    );
    CREATE INDEX moves_by_mailbox ON moves(mailbox, status);
    """,
    # 2: the MTA: message priority (its timeouts), event categories, services that can stop.
    """
    ALTER TABLE messages ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
    ALTER TABLE events ADD COLUMN category TEXT NOT NULL DEFAULT '';
    CREATE TABLE services(
        server TEXT NOT NULL,
        service TEXT NOT NULL,
        running INTEGER NOT NULL,
        PRIMARY KEY(server, service)
    );
    """,
    # 3: per-version move engines: batches, the engine's step, progress counters.
    """
    ALTER TABLE moves ADD COLUMN batch TEXT;
    ALTER TABLE moves ADD COLUMN step TEXT NOT NULL DEFAULT '';
    ALTER TABLE moves ADD COLUMN begun_at REAL;
    ALTER TABLE moves ADD COLUMN progress TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX moves_by_status ON moves(status, due_at);
    """,
    # 4: queue operations and DSNs: when a pair's delay notification went out, which
    # message a DSN reports on (and what it says), servers with outbound mail disabled,
    # and tracking by Message-ID header.
    """
    ALTER TABLE pairs ADD COLUMN delay_notified_at REAL;
    ALTER TABLE messages ADD COLUMN dsn_of TEXT;
    ALTER TABLE messages ADD COLUMN dsn_summary TEXT;
    CREATE TABLE outbound_disabled(server TEXT PRIMARY KEY, since REAL NOT NULL);
    CREATE INDEX messages_by_message_id ON messages(message_id);
    """,
    # 5: indexes that fit the scheduler's and the scrapes' scans, so that none of them reads
    # every queued pair: the arrival time of a pair's message kept on the pair (delay
    # notices and expiry are due by it), each queue's pairs in queued_at order (ages and
    # depth), and the queued pairs still awaiting their delay notice. Releases of parked
    # mail that go on in batches, with the last pair released of each.
    """
    ALTER TABLE pairs ADD COLUMN accepted_at REAL NOT NULL DEFAULT 0;
    UPDATE pairs SET accepted_at =
        (SELECT m.accepted_at FROM messages m WHERE m.id = pairs.message);
    CREATE INDEX pairs_by_age ON pairs(server, queue, queued_at) WHERE queue IS NOT NULL;
    CREATE INDEX pairs_by_arrival ON pairs(server, accepted_at) WHERE queue IS NOT NULL;
    CREATE INDEX pairs_awaiting_delay ON pairs(server, accepted_at)
        WHERE queue IS NOT NULL AND delay_notified_at IS NULL;
    CREATE TABLE releases(
        mailbox TEXT NOT NULL,
        queue TEXT NOT NULL,
        after_id INTEGER NOT NULL,
        PRIMARY KEY(mailbox, queue)
    );
    """,
    # 6: what each 250 after DATA acknowledged, written in the accept's own transaction, so
    # the audit can see an acknowledged message that was not stored: the queue id answered,
    # the endpoint that answered, its recipients (one per line), and for mail that came
    # over the SMTP hop its (verified) hop token and whether it was a resend of a hop
    # already taken. No index: one insert per message on the accept path, read by the audit.
    """
    CREATE TABLE acks(
        id INTEGER PRIMARY KEY,
        queue_id TEXT NOT NULL,
        server TEXT NOT NULL,
        rcpts TEXT NOT NULL,
        hop TEXT,
        duplicate INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 7 (issue 20): fault rules (mailflow.smtp.faults): the rule as JSON, how many more
    # injections it may make (NULL: no count) and how many it has made; the count is only
    # ever decremented by a guarded UPDATE, so concurrent sessions cannot over-inject.
    """
    CREATE TABLE faults(
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        remaining INTEGER,
        injected INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    """,
    # 8 (issue 19): DAG databases and their copies: the constraint and whether the database
    # is mounted; per copy its site, activation preference, whether it is the active one,
    # copy and replay queue lengths and whether replication to it is suspended.
    """
    CREATE TABLE dag_databases(
        name TEXT PRIMARY KEY,
        dag TEXT NOT NULL,
        replication_constraint TEXT NOT NULL,
        mounted INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE dag_copies(
        database TEXT NOT NULL,
        server TEXT NOT NULL,
        site TEXT NOT NULL,
        preference INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        copy_queue INTEGER NOT NULL DEFAULT 0,
        replay_queue INTEGER NOT NULL DEFAULT 0,
        suspended INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(database, server)
    );
    """,
    # 9 (issue 17): the Exchange 5.5 directory of each site beside AD (table mailboxes): one
    # row per site and DN, present or a stub, owned by the site its DN names; universal
    # distribution groups in AD and their 5.5 DLs; the ADC's connection agreements.
    """
    CREATE TABLE ds55(
        site TEXT NOT NULL,
        dn TEXT NOT NULL,
        owner TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'mailbox',
        state TEXT NOT NULL DEFAULT 'present',
        server TEXT,
        proxies TEXT NOT NULL DEFAULT '[]',
        member_of TEXT NOT NULL DEFAULT '[]',
        members TEXT NOT NULL DEFAULT '[]',
        version INTEGER NOT NULL DEFAULT 1,
        attributes TEXT NOT NULL DEFAULT '{}',
        edited INTEGER NOT NULL DEFAULT 0,
        edited_server TEXT,
        PRIMARY KEY(site, dn)
    );
    CREATE INDEX ds55_by_mailbox ON ds55(site, mailbox);
    CREATE TABLE udgs(
        address TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        members TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        replicated_version INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE adc_agreements(
        name TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        direction TEXT NOT NULL,
        schedule REAL,
        last_run REAL,
        next_run REAL
    );
    """,
    # 10 (issue 22, the migration benchmark): indexes for the scans the scheduler makes of
    # the moves at every due time, which read the whole table without them, so that a lab
    # that has run thousands of moves is as quick as a new one: the wizard's moves at a step
    # (``at_step``), the moves of a batch holding its threads (``count_in_batch``, once per
    # queued move) and the next time a move falls due (``next_due``). IF NOT EXISTS: a store
    # taken back to an older version by hand (tests/test_security_hop.py) keeps its indexes.
    """
    CREATE INDEX IF NOT EXISTS moves_by_step ON moves(step, engine);
    CREATE INDEX IF NOT EXISTS moves_by_batch ON moves(batch, step);
    CREATE INDEX IF NOT EXISTS moves_by_due ON moves(due_at);
    """,
    # 11 (issue 22, a lab in several processes on PostgreSQL, mailflow.runtime.cluster): the
    # live processes (their servers, API, heartbeat in real time, and the simulated time by
    # which each has done its due work) and where each server takes hop mail and clients'.
    """
    CREATE TABLE processes(
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        servers TEXT NOT NULL,
        api TEXT NOT NULL,
        leader INTEGER NOT NULL DEFAULT 0,
        heartbeat REAL NOT NULL,
        settled REAL NOT NULL
    );
    CREATE TABLE endpoints(
        server TEXT PRIMARY KEY,
        process TEXT NOT NULL,
        hop_host TEXT NOT NULL,
        hop_port INTEGER NOT NULL,
        smtp_host TEXT NOT NULL,
        smtp_port INTEGER NOT NULL
    );
    """,
]
