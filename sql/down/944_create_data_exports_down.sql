-- Roll back 944: drop data_exports.
-- Export requests are a legal record with a deadline; a pending one must not silently vanish,
-- so refuse while any request exists.
-- vezamig:lock data_exports
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM data_exports)
DROP TABLE IF EXISTS data_exports;
