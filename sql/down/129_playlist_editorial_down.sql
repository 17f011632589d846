-- Roll back 129: drop the editorial columns from playlists.
-- The editors' curation (which playlists, in what order, by whom, until when) lives only
-- in these columns, so refuse while any playlist carries editorial data.
-- vezamig:lock playlists
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM playlists WHERE is_editorial OR editorial_position IS NOT NULL OR editorial_curator_id IS NOT NULL OR featured_until IS NOT NULL)
ALTER TABLE playlists
    DROP CONSTRAINT IF EXISTS playlists_editorial_position_check,
    DROP CONSTRAINT IF EXISTS playlists_editorial_curator_id_fkey,
    DROP COLUMN IF EXISTS is_editorial,
    DROP COLUMN IF EXISTS editorial_position,
    DROP COLUMN IF EXISTS editorial_curator_id,
    DROP COLUMN IF EXISTS featured_until;
