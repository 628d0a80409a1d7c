-- What a receiver requires of a sender beyond its URL (JSON, store/rows.rs): a static secret's
-- hash, or a sealed HMAC key. NULL: nothing more.
ALTER TABLE receivers ADD COLUMN verify TEXT;
