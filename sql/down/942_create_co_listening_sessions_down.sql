-- Roll back 942: drop the co-listening tables.
-- Dropping them would end running sessions under their listeners and erase session history,
-- so refuse while any session exists (participants cannot exist without one).
-- vezamig:lock co_listening_sessions, co_listening_participants
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM co_listening_sessions)
DROP TABLE IF EXISTS co_listening_participants;
DROP TABLE IF EXISTS co_listening_sessions;
