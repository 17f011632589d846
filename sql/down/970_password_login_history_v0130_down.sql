-- Roll back 970: drop password_history and login_history.
-- password_history is what stops users reusing old passwords, login_history is the security
-- record investigators rely on; neither can be rebuilt, so refuse while either holds a row.
-- vezamig:lock password_history, login_history
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM password_history)
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM login_history)
DROP TABLE IF EXISTS login_history;
DROP TABLE IF EXISTS password_history;
