-- NeoChat schema version 2: the file server's metadata.
-- A file is stored flat under <data_dir>/files/ by its stored name,
-- e.g. %2B86101_10012312312311_a.png.  Who may read it: its owner, the
-- accounts in file_readers (recipients of a private message that referenced
-- it), and whoever is a member of a group in file_group_readers at the time
-- of reading (so later members of the group may read it too).

CREATE TABLE files (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    owner VARCHAR(100) NOT NULL,
    original_name VARCHAR(255) NOT NULL,
    size BIGINT NOT NULL,
    sha256 CHAR(64) NOT NULL,
    create_time BIGINT NOT NULL,
    FOREIGN KEY (owner) REFERENCES users (user_account) ON DELETE CASCADE
) {table_options};

CREATE INDEX files_by_owner ON files (owner);
CREATE INDEX files_by_time ON files (create_time);

CREATE TABLE file_readers (
    file_name VARCHAR(255) NOT NULL,
    user_account VARCHAR(100) NOT NULL,
    PRIMARY KEY (file_name, user_account),
    FOREIGN KEY (file_name) REFERENCES files (name) ON DELETE CASCADE,
    FOREIGN KEY (user_account) REFERENCES users (user_account) ON DELETE CASCADE
) {table_options};

CREATE INDEX file_readers_by_user ON file_readers (user_account);

CREATE TABLE file_group_readers (
    file_name VARCHAR(255) NOT NULL,
    group_id VARCHAR(100) NOT NULL,
    PRIMARY KEY (file_name, group_id),
    FOREIGN KEY (file_name) REFERENCES files (name) ON DELETE CASCADE,
    FOREIGN KEY (group_id) REFERENCES chat_groups (group_id) ON DELETE CASCADE
) {table_options};

CREATE INDEX file_group_readers_by_group ON file_group_readers (group_id);
