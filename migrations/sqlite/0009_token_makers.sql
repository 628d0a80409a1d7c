-- The token that made each API token (NULL: made at start-up, or before this column): revoking
-- a token revokes every token it made, so a stolen token's successors die with it.
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;
