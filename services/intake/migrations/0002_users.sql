-- Hotline staff accounts. Passwords are argon2id hashes; sessions and the login limit arrive with the UI.
CREATE TABLE users (
    id             uuid PRIMARY KEY,
    username       text        NOT NULL UNIQUE,
    display_name   text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('operator', 'counsellor', 'supervisor', 'admin')),
    password_hash  text        NOT NULL,
    active         boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);
