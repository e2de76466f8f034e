-- Identity and teams.
--
-- A user is identified by the (issuer, subject) pair of their token. A row whose subject is
-- NULL is a placeholder created when an admin adds someone by email before they have ever
-- signed in; the first sign-in with that (verified) email claims it.

CREATE TABLE users (
    id           uuid PRIMARY KEY,
    issuer       text,
    subject      text,
    email        text CHECK (email IS NULL OR (email = lower(email) AND length(email) BETWEEN 3 AND 254)),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz,
    CONSTRAINT users_identity_complete CHECK ((issuer IS NULL) = (subject IS NULL)),
    CONSTRAINT users_placeholder_has_email CHECK (subject IS NOT NULL OR email IS NOT NULL)
);

CREATE UNIQUE INDEX users_issuer_subject_key ON users (issuer, subject);
CREATE UNIQUE INDEX users_placeholder_email_key ON users (email) WHERE subject IS NULL;
CREATE INDEX users_email_idx ON users (email);

CREATE TABLE teams (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    slug       text NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 64),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    settings   jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT teams_slug_key UNIQUE (slug)
);

CREATE TABLE team_members (
    team_id    uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);

-- "my teams", newest first, is read through this index.
CREATE INDEX team_members_user_idx ON team_members (user_id, team_id);
