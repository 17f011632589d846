-- Tags: free-form labels on tracks, many-to-many.
CREATE TABLE tags (
    id   bigserial PRIMARY KEY,
    name varchar(50) NOT NULL,
    CONSTRAINT tags_name_lowercase_check CHECK (name = lower(name))
);

CREATE UNIQUE INDEX tags_name_key ON tags (name);

CREATE TABLE track_tags (
    track_id bigint NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    tag_id   bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (track_id, tag_id)
);
