-- Roll back 985: only safe while every track is still stored locally.
-- vezamig:lock tracks
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM tracks WHERE storage_backend <> 'local')
DROP INDEX IF EXISTS idx_tracks_storage_backend_s3;
ALTER TABLE tracks DROP CONSTRAINT IF EXISTS tracks_storage_backend_check;
ALTER TABLE tracks DROP COLUMN IF EXISTS storage_key, DROP COLUMN IF EXISTS storage_backend;
