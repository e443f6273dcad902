-- NeoChat schema version 3: find the file offers (chat_type 'file') made to
-- an account, newest first, for the seed-000 accept and reject messages.

CREATE INDEX messages_by_recipient ON messages (rece_user, chat_type, id);
