-- Editorial playlists: staff-curated playlists with a position on the discover page.
ALTER TABLE playlists
    ADD COLUMN is_editorial boolean NOT NULL DEFAULT false,
    ADD COLUMN editorial_position integer,
    ADD COLUMN editorial_curator_id bigint
        CONSTRAINT playlists_editorial_curator_id_fkey REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN featured_until timestamptz,
    ADD CONSTRAINT playlists_editorial_position_check
        CHECK (editorial_position IS NULL OR (is_editorial AND editorial_position > 0));
