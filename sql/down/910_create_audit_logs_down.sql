-- Roll back 910: drop audit_logs and its append-only trigger.
-- The audit trail is a compliance record with no other copy, so refuse while it holds any row
-- (export it and empty it deliberately first).
-- vezamig:lock audit_logs
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM audit_logs)
DROP TABLE IF EXISTS audit_logs;
DROP FUNCTION IF EXISTS audit_logs_forbid_change();
