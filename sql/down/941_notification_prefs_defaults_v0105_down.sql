-- Roll back 941: restore the previous column defaults.
-- No guard: rows were never rewritten, so nothing is lost.
ALTER TABLE notification_preferences
    ALTER COLUMN email_marketing SET DEFAULT true,
    ALTER COLUMN push_new_release SET DEFAULT false;
