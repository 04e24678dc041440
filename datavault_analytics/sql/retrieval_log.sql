-- DataVault's audit log of Retrieve calls: append-only, one row per call. The demo's second table: a bigint
-- key, no binary column, no updated_at, a jsonb, a boolean and nullable columns. Idempotent.
create table if not exists public.retrieval_log (
    id bigint generated always as identity primary key,
    record_id uuid not null,
    requested_by text not null,
    found boolean not null,
    client jsonb not null,
    error_code text,
    latency_ms double precision,
    retrieved_at timestamptz not null default now()
);

create index if not exists retrieval_log_retrieved_at_idx on public.retrieval_log (retrieved_at);
