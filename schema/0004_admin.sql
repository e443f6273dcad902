-- NeoChat schema version 4: what neochatctl changes while the server runs.
-- settings: named values the server reads at start and an administrator
-- changes live (registration open or closed).  bans: accounts that may not
-- log in, and addresses (an IP or a CIDR network) that may not connect.

CREATE TABLE settings (
    name VARCHAR(100) NOT NULL PRIMARY KEY,
    value VARCHAR(255) NOT NULL
) {table_options};

CREATE TABLE bans (
    kind VARCHAR(8) NOT NULL,
    target VARCHAR(100) NOT NULL,
    reason VARCHAR(200) NOT NULL DEFAULT '',
    create_time BIGINT NOT NULL,
    PRIMARY KEY (kind, target),
    CONSTRAINT bans_kind CHECK (kind IN ('account', 'address'))
) {table_options};
