-- Roll back 984: drop hyperswitch_webhook_log.
-- The log is what makes webhook handling idempotent: without it a replayed event would be
-- processed (and money moved) twice. Refuse while it holds any event.
-- vezamig:lock hyperswitch_webhook_log
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM hyperswitch_webhook_log)
DROP TABLE IF EXISTS hyperswitch_webhook_log;
