-- User profiles: the public page of a user (bio, images, links).
CREATE TABLE user_profiles (
    user_id      bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    bio          text,
    avatar_url   varchar(512),
    banner_url   varchar(512),
    location     varchar(100),
    website_url  varchar(512),
    social_links jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_profiles_bio_length_check CHECK (char_length(bio) <= 2000),
    CONSTRAINT user_profiles_social_links_object_check CHECK (jsonb_typeof(social_links) = 'object')
);
