-- Roll back 971: drop two-factor, recovery codes, trusted devices and lockout state.
-- Dropping them would silently switch off two-factor for users who enabled it and unlock
-- accounts locked under attack, so refuse while any of that exists.
-- (failed_login_count is a transient counter and is not guarded.)
-- vezamig:lock users, user_recovery_codes, trusted_devices
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM users WHERE mfa_enabled OR mfa_secret_encrypted IS NOT NULL OR locked_until > now())
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM user_recovery_codes)
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM trusted_devices)
DROP TABLE IF EXISTS trusted_devices;
DROP TABLE IF EXISTS user_recovery_codes;
ALTER TABLE users
    DROP CONSTRAINT IF EXISTS users_failed_login_count_check,
    DROP CONSTRAINT IF EXISTS users_mfa_secret_check,
    DROP COLUMN IF EXISTS mfa_enabled,
    DROP COLUMN IF EXISTS mfa_secret_encrypted,
    DROP COLUMN IF EXISTS mfa_enabled_at,
    DROP COLUMN IF EXISTS failed_login_count,
    DROP COLUMN IF EXISTS locked_until;
