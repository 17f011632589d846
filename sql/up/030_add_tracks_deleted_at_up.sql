-- Soft delete for tracks: removed tracks stay for 30 days so they can be restored.
ALTER TABLE tracks ADD COLUMN deleted_at timestamptz;
