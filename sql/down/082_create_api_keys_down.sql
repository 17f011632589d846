-- Roll back 082: drop api_keys.
-- Dropping it would break every integration using a key and lose the key history, so refuse while any key exists.
-- vezamig:lock api_keys
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM api_keys)
DROP TABLE IF EXISTS api_keys;
