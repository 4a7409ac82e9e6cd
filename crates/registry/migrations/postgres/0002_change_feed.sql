-- The change feed: every committed change to an entry, whoever makes it (an origin's
-- API, another origin, an operator's SQL), is announced on channel `longhaul_entries`
-- with the entry's id as payload; a TRUNCATE says '*' (read everything again).
-- NOTIFY is transactional: listeners hear it once the change is committed.
CREATE FUNCTION longhaul_entries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('longhaul_entries', OLD.id);
    ELSE
        IF TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id THEN
            PERFORM pg_notify('longhaul_entries', OLD.id);
        END IF;
        PERFORM pg_notify('longhaul_entries', NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER longhaul_entries_notify
    AFTER INSERT OR UPDATE OR DELETE ON longhaul_entries
    FOR EACH ROW EXECUTE FUNCTION longhaul_entries_notify();

CREATE FUNCTION longhaul_entries_notify_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('longhaul_entries', '*');
    RETURN NULL;
END
$$;

CREATE TRIGGER longhaul_entries_truncated
    AFTER TRUNCATE ON longhaul_entries
    FOR EACH STATEMENT EXECUTE FUNCTION longhaul_entries_notify_all();

-- A token changed without a new generation (a hand-written UPDATE) gets one, so it
-- revokes live publishes of the old token as a regeneration through the API does:
-- revocation goes by generation.
CREATE FUNCTION longhaul_entries_token_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.token IS DISTINCT FROM OLD.token
       AND NEW.token_generation <= OLD.token_generation THEN
        NEW.token_generation := OLD.token_generation + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER longhaul_entries_token_generation
    BEFORE UPDATE OF token ON longhaul_entries
    FOR EACH ROW EXECUTE FUNCTION longhaul_entries_token_generation();
