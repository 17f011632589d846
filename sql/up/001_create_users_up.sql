-- Users: one account per listener, artist or staff member.
CREATE TYPE user_role AS ENUM ('listener', 'artist', 'moderator', 'admin');

CREATE TABLE users (
    id                bigserial PRIMARY KEY,
    email             varchar(255) NOT NULL,
    username          varchar(50)  NOT NULL,
    display_name      varchar(100),
    password_hash     varchar(255) NOT NULL,
    role              user_role    NOT NULL DEFAULT 'listener',
    is_active         boolean      NOT NULL DEFAULT true,
    email_verified_at timestamptz,
    created_at        timestamptz  NOT NULL DEFAULT now(),
    updated_at        timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT users_username_format_check CHECK (username ~ '^[A-Za-z0-9_.-]{3,50}$'),
    CONSTRAINT users_email_format_check CHECK (position('@' IN email) > 1)
);

CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
