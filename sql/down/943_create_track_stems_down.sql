-- Roll back 943: drop track_stems.
-- Each row is the only pointer to an uploaded stem file; dropping the table orphans those files,
-- so refuse while any stem exists.
-- vezamig:lock track_stems
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM track_stems)
DROP TABLE IF EXISTS track_stems;
