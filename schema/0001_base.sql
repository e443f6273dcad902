-- NeoChat schema version 1: the tables of seed 002, with keys.
-- {auto_id}, {text} and {table_options} are filled in per database engine.
-- Times are INTEGER milliseconds since the epoch.

CREATE TABLE users (
    user_account VARCHAR(100) NOT NULL PRIMARY KEY,
    password_hash VARCHAR(255) NOT NULL,
    user_name VARCHAR(100) NOT NULL DEFAULT '',
    user_phone VARCHAR(100) NOT NULL DEFAULT '',
    sex VARCHAR(8) NOT NULL DEFAULT 'neutral',
    birthday VARCHAR(10) NULL,
    registration_time BIGINT NOT NULL,
    address VARCHAR(200) NOT NULL DEFAULT '',
    CONSTRAINT users_sex CHECK (sex IN ('male', 'female', 'neutral'))
) {table_options};

CREATE TABLE friendships (
    user_account VARCHAR(100) NOT NULL,
    friend_account VARCHAR(100) NOT NULL,
    is_relationship SMALLINT NOT NULL DEFAULT 0,
    bind_time BIGINT NOT NULL,
    PRIMARY KEY (user_account, friend_account),
    FOREIGN KEY (user_account) REFERENCES users (user_account) ON DELETE CASCADE,
    FOREIGN KEY (friend_account) REFERENCES users (user_account) ON DELETE CASCADE
) {table_options};

CREATE INDEX friendships_by_friend ON friendships (friend_account);

CREATE TABLE chat_groups (
    group_id VARCHAR(100) NOT NULL PRIMARY KEY,
    founder VARCHAR(100) NOT NULL,
    introduction VARCHAR(200) NOT NULL DEFAULT '',
    create_time BIGINT NOT NULL,
    FOREIGN KEY (founder) REFERENCES users (user_account) ON DELETE CASCADE
) {table_options};

CREATE TABLE group_users (
    group_id VARCHAR(100) NOT NULL,
    user_account VARCHAR(100) NOT NULL,
    join_time BIGINT NOT NULL,
    permissions VARCHAR(8) NOT NULL DEFAULT 'member',
    PRIMARY KEY (group_id, user_account),
    FOREIGN KEY (group_id) REFERENCES chat_groups (group_id) ON DELETE CASCADE,
    FOREIGN KEY (user_account) REFERENCES users (user_account) ON DELETE CASCADE,
    CONSTRAINT group_users_permissions CHECK (permissions IN ('creator', 'admin', 'member'))
) {table_options};

CREATE INDEX group_users_by_user ON group_users (user_account);

-- One table for every chat record: private (rece_user set), group (group_id
-- set) and lobby (neither).  conversation names the thread a message belongs
-- to ('p:<a> <b>' with the accounts sorted, 'g:<group>', 'lobby') so that a
-- page of history is one index range.
CREATE TABLE messages (
    id {auto_id},
    client_id VARCHAR(64) NOT NULL,
    author VARCHAR(100) NOT NULL,
    rece_user VARCHAR(100) NULL,
    group_id VARCHAR(100) NULL,
    chat_type VARCHAR(16) NOT NULL,
    conversation VARCHAR(210) NOT NULL,
    message {text} NOT NULL,
    create_time BIGINT NOT NULL,
    CONSTRAINT messages_client_id UNIQUE (author, client_id),
    FOREIGN KEY (author) REFERENCES users (user_account) ON DELETE CASCADE,
    FOREIGN KEY (rece_user) REFERENCES users (user_account) ON DELETE CASCADE,
    FOREIGN KEY (group_id) REFERENCES chat_groups (group_id) ON DELETE CASCADE
) {table_options};

CREATE INDEX messages_by_conversation ON messages (conversation, id);

-- Messages a user has not yet received (or, for clients that acknowledge,
-- not yet acknowledged), in id order.
CREATE TABLE pending (
    user_account VARCHAR(100) NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (user_account, message_id),
    FOREIGN KEY (user_account) REFERENCES users (user_account) ON DELETE CASCADE,
    FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE
) {table_options};
