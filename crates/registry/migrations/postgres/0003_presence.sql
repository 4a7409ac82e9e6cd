-- Where streams are live (crates/registry/src/presence.rs): one row per stream per
-- origin where it is live, replaced by each origin's writes and ignored past
-- expires_at. No trigger: presence is not part of the entries' change feed.
CREATE TABLE longhaul_presence (
    stream       text        NOT NULL,
    origin       text        NOT NULL,
    entry_id     text        NOT NULL,
    region       text        NOT NULL,
    rtmp_url     text,
    http_flv_url text,
    updated_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (stream, origin)
);
CREATE INDEX longhaul_presence_origin ON longhaul_presence (origin);
