-- DataVault's encrypted records: the pipeline's source table. Idempotent, so the local stack and the
-- tests can apply it on every start.
create table if not exists public.records (
    id uuid primary key,
    owner_id bigint not null,
    key text not null,
    ciphertext bytea not null,
    nonce bytea not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz
);

-- The day's extract reads a created_at range; the drift scan counts each day and takes its latest
-- updated_at from this index alone (an index-only scan), never touching the table's rows.
create index if not exists records_created_at_updated_at_idx on public.records (created_at) include (updated_at);
drop index if exists public.records_created_at_idx;
