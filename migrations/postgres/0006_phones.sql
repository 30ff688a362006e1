-- Phone accounts: the user names and secrets callers outside [sip] trusted_networks
-- authenticate with (SIP Digest). `secret` holds H(user:realm:password) by SHA-256 and MD5,
-- sealed with a key derived from the pepper; never the password.
CREATE TABLE phones (
    username   TEXT    NOT NULL PRIMARY KEY,
    realm      TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
