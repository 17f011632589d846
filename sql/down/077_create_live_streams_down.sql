-- Roll back 077: drop live_streams and its status type.
-- Scheduled and past streams are artists' content (and link recordings), so refuse while any exist.
-- vezamig:lock live_streams
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM live_streams)
DROP TABLE IF EXISTS live_streams;
DROP TYPE IF EXISTS live_stream_status;
