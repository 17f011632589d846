-- Notification preferences: one row per user, which channels they accept.
CREATE TABLE notification_preferences (
    user_id            bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email_enabled      boolean     NOT NULL DEFAULT true,
    push_enabled       boolean     NOT NULL DEFAULT true,
    email_new_follower boolean     NOT NULL DEFAULT true,
    email_comments     boolean     NOT NULL DEFAULT true,
    email_marketing    boolean     NOT NULL DEFAULT true,
    push_new_release   boolean     NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
