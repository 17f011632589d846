-- New notification defaults for v0.10.5: marketing e-mail becomes opt-in, new-release pushes opt-out.
-- Only the defaults for new rows change; existing users keep what they have.
ALTER TABLE notification_preferences
    ALTER COLUMN email_marketing SET DEFAULT false,
    ALTER COLUMN push_new_release SET DEFAULT true;
