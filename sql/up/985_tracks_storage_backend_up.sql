-- Track storage backend: where a track's audio lives ('local' disk or 's3'), and its S3 object key.
ALTER TABLE tracks
    ADD COLUMN storage_backend VARCHAR(16) NOT NULL DEFAULT 'local',
    ADD COLUMN storage_key VARCHAR(512) NULL,
    ADD CONSTRAINT tracks_storage_backend_check CHECK (storage_backend IN ('local', 's3'));

-- No row is on s3 yet, so this partial index starts empty.
CREATE INDEX idx_tracks_storage_backend_s3 ON tracks (id) WHERE storage_backend = 's3';
