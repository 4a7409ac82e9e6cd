-- Entries and their publish tokens. Times are Unix seconds, as in the SQLite store.
CREATE TABLE longhaul_entries (
    id               text    PRIMARY KEY,
    name             text    NOT NULL,
    token            text    NOT NULL,
    created_at       bigint  NOT NULL,
    token_generation integer NOT NULL CHECK (token_generation >= 1)
);
