-- Last login time on users, shown in the admin console.
ALTER TABLE users ADD COLUMN last_login_at timestamptz;
