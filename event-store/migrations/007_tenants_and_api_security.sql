-- Tenants own tasks: every projection read is scoped by tenant (from TaskSubmitted).
ALTER TABLE task_status ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE task_status ADD COLUMN submitted_by text;
CREATE INDEX task_status_tenant_listing ON task_status (tenant, submitted_at DESC, task_id DESC);

-- Service accounts: API keys stored as SHA-256 of a 256-bit random secret, never in plain text.
CREATE TABLE api_keys (
    key_id       text        PRIMARY KEY,
    secret_hash  bytea       NOT NULL,
    tenant       text        NOT NULL,
    subject      text        NOT NULL,
    roles        text[]      NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Per-tenant request counters shared by every API replica (fixed windows).
CREATE TABLE api_rate_windows (
    tenant       text        NOT NULL,
    window_start bigint      NOT NULL,  -- epoch seconds, a multiple of the window length
    requests     integer     NOT NULL,
    PRIMARY KEY (tenant, window_start)
);
