-- Denormalised follower/following counts on users, kept in step by a trigger on follows.
ALTER TABLE users
    ADD COLUMN followers_count integer NOT NULL DEFAULT 0,
    ADD COLUMN following_count integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT users_follow_counts_check CHECK (followers_count >= 0 AND following_count >= 0);

CREATE FUNCTION follows_update_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE users SET followers_count = followers_count + 1 WHERE id = NEW.followee_id;
        UPDATE users SET following_count = following_count + 1 WHERE id = NEW.follower_id;
        RETURN NEW;
    END IF;
    UPDATE users SET followers_count = GREATEST(followers_count - 1, 0) WHERE id = OLD.followee_id;
    UPDATE users SET following_count = GREATEST(following_count - 1, 0) WHERE id = OLD.follower_id;
    RETURN OLD;
END;
$$;

CREATE TRIGGER trg_follows_counts
    AFTER INSERT OR DELETE ON follows
    FOR EACH ROW EXECUTE FUNCTION follows_update_counts();

-- Backfill from the follows that already exist.
UPDATE users u SET followers_count = c.n
FROM (SELECT followee_id AS user_id, count(*)::integer AS n FROM follows GROUP BY followee_id) c
WHERE u.id = c.user_id;

UPDATE users u SET following_count = c.n
FROM (SELECT follower_id AS user_id, count(*)::integer AS n FROM follows GROUP BY follower_id) c
WHERE u.id = c.user_id;
